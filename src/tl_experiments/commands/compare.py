"""Compare the runs of a sweep: `tl-compare SWEEP_DIR [--out DIR]`.

Writes report.md, report.csv and PNG plots into the sweep folder (or --out) and
prints the comparison table.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from tl_experiments.commands.guard import run_command

if TYPE_CHECKING:  # pandas and matplotlib are imported when a report is made: --help is quick
    from tl_experiments.report import Report

__all__ = ["main", "print_report"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tl-compare",
        description="Aggregate a sweep's run folders over seeds into a table and plots.",
    )
    parser.add_argument("sweep_dir", help="multirun folder, e.g. logs/multirun/<date>/<time>")
    parser.add_argument("--out", default=None, help="output folder (default: SWEEP_DIR)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the compare command; returns the exit code (0 ok, 2 missing folder or no runs:
    one sentence, through the error handling every command shares, ``guard.run_command``)."""
    return run_command(_main, argv)


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from tl_experiments.report import write_report

    report = write_report(args.sweep_dir, args.out)
    print_report(report)
    print(f"\nWrote {', '.join(str(f) for f in report.files)}", file=sys.stderr)
    return 0


def print_report(report: Report) -> None:
    """The comparison as the console shows it: tuned or fixed recipe, the table, failures."""
    from tl_experiments.report import render_selection, render_table
    from tl_experiments.report.caveats import render_caveats

    if report.comparison.empty:
        print("No finished runs; see the failed runs in report.md.")
    else:
        print(render_selection(report.comparison) + "\n")
        print(render_table(report.comparison))
        caveats = render_caveats(report.comparison, report.frame)  # what the intervals cannot say
        print(f"\n{caveats}" if caveats else "", end="")
    n_failed = sum(not r.ok for r in report.runs)
    if n_failed:
        print(f"\n{n_failed} failed run(s), listed in report.md.")
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
