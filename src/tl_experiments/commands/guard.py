"""The error handling every command shares: a user's mistake as one sentence (``Error:
...``, exit code 2), a failed sweep job recorded in its ``error.json`` so the sweep goes on.

The Hydra entry points (``train.py``, ``eval.py``, ``tl-advise``) go through :func:`guarded`;
the commands that need no config file (predict, export, compare) take ``key=value`` or
positional arguments (``commands/args.py``) and go through :func:`run_command`, which prints
errors the same way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from tl_experiments.commands.preflight import missing_key, missing_message
from tl_experiments.errors import UserError
from tl_experiments.run.outputs import write_json_atomic

__all__ = ["guarded", "run_command"]


def guarded(task: Callable[[DictConfig], dict], cfg: DictConfig) -> dict | None:
    """Run ``task(cfg)``; a failure prints one line and exits non-zero, or, in a multirun,
    is recorded in the job's ``error.json`` so the other jobs of the sweep go on."""
    try:
        missing = missing_key(cfg)
        if missing:
            raise UserError(missing_message(missing))
        return task(cfg)
    except KeyboardInterrupt as e:  # Ctrl-C: one line that says what is kept, no traceback
        message = str(e) or "Interrupted; run the command again (ckpt_path=last resumes)."
        print(f"\nStopped: {message}", file=sys.stderr, flush=True)
        sys.exit(130)  # the shell's code for a SIGINT
    except Exception as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        _record_failure(cfg, e, message)
        print(f"Error: {message}", file=sys.stderr, flush=True)
        if not isinstance(e, UserError):
            print("Set HYDRA_FULL_ERROR=1 for the full traceback.", file=sys.stderr)
        from tl_experiments.commands.hydra_job import multirun  # Hydra: not for --help

        if multirun():
            return None
        sys.exit(2 if isinstance(e, UserError) else 1)


def _record_failure(cfg: DictConfig, e: BaseException, message: str) -> None:
    try:
        out = Path(cfg.paths.output_dir)
        if out.is_dir():
            write_json_atomic(
                {"status": "failed", "error": message, "type": type(e).__name__}, out / "error.json"
            )
    except Exception:  # the output folder itself may be the problem
        pass


def run_command(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run ``main(argv)``; a :class:`UserError` prints one line and returns exit code 2."""
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr, flush=True)
        return 2
