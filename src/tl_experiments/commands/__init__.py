"""The commands: every entry point and what only entry points do.

Each command's ``main`` (``tl-compare``, ``tl-advise``, ``tl-predict``, ``tl-export``; the
repository's ``train.py`` and ``eval.py`` call in here too), the Hydra callback of a sweep
(``sweep_progress``), and what the doors share: the config resolvers (``resolvers``), the
checks before Hydra starts (``preflight``), the error handling (``guard``), the ``key=value``
parsers (``args``) and the one place that reads Hydra's runtime state (``hydra_job``).
Only this folder reads ``HydraConfig``; the libraries beside it take plain arguments.

Nothing is imported here: ``--help`` of each command stays quick (no torch).
"""
