"""The commands: every entry point and what only entry points do.

Each command's ``main`` (``tl-compare``, ``tl-advise``, ``tl-predict``, ``tl-export``; the
repository's ``train.py`` and ``eval.py`` call in here too), the Hydra callback of a sweep
(``sweep_progress``), and what the doors share: the config resolvers (``resolvers``), the
checks before Hydra starts (``preflight``), the error handling (``guard``), the ``key=value``
parsers (``args``) and a job's facts from Hydra, read once and passed on (``hydra_job``).
Only this folder reads ``HydraConfig``; the libraries beside it take plain arguments.

Nothing is imported here: ``--help`` of each command stays quick (no torch).
"""
