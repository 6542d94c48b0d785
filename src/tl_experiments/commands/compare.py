"""Compare the runs of a sweep: ``tl-compare SWEEP_DIR [--out DIR]``.

Writes report.md, report.csv and PNG plots into the sweep folder (or --out) and
prints the comparison table. The studies the docs cite are subcommands that print a table
(``report/studies.py``):

    tl-compare paired SWEEP_A SWEEP_B         # the same jobs in two sweeps, paired by seed
    tl-compare wise-ft SWEEP                  # WiSE-FT's gain at each alpha, paired by seed
    tl-compare advisor-hits SWEEP [SWEEP ...] # the advisor's pick against each winner
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from tl_experiments.commands.guard import run_command

if TYPE_CHECKING:  # pandas and matplotlib are imported when a report is made: --help is quick
    from tl_experiments.report import Report

__all__ = ["main", "print_report"]

# subcommand -> (what it prints, its positional arguments: name -> help)
STUDIES = {
    "paired": (
        "the same jobs in two sweeps, paired by (strategy, seed)",
        {"sweep_a": "the first sweep (A)", "sweep_b": "the second sweep (B)"},
    ),
    "wise-ft": (
        "WiSE-FT: accuracy at each alpha minus at alpha = 1, paired over seeds",
        {"sweep": "a sweep whose runs have WiSE-FT results"},
    ),
    "advisor-hits": (
        "the advisor's pick (advice.json) against each winner; the hit rate",
        {"sweeps": "sweeps, each with an advice.json (others are skipped)"},
    ),
}


def _parser() -> argparse.ArgumentParser:
    studies = "\n".join(f"  tl-compare {name:<13} {about}" for name, (about, _) in STUDIES.items())
    parser = argparse.ArgumentParser(
        prog="tl-compare",
        description="Aggregate a sweep's run folders over seeds into a table and plots.",
        epilog=f"Studies (a table each; tl-compare NAME --help):\n{studies}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep_dir", help="multirun folder, e.g. logs/multirun/<date>/<time>")
    parser.add_argument("--out", default=None, help="output folder (default: SWEEP_DIR)")
    return parser


def _study_parser(name: str) -> argparse.ArgumentParser:
    about, arguments = STUDIES[name]
    parser = argparse.ArgumentParser(prog=f"tl-compare {name}", description=about)
    for arg, help_text in arguments.items():
        parser.add_argument(arg, nargs="+" if arg == "sweeps" else None, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the compare command; returns the exit code (0 ok, 2 missing folder or no runs:
    one sentence, through the error handling every command shares, ``guard.run_command``)."""
    return run_command(_main, argv)


def _main(argv: list[str]) -> int:
    if argv and argv[0] in STUDIES:
        return _study(argv[0], _study_parser(argv[0]).parse_args(argv[1:]))
    args = _parser().parse_args(argv)
    from tl_experiments.report import write_report

    report = write_report(args.sweep_dir, args.out)
    print_report(report)
    print(f"\nWrote {', '.join(str(f) for f in report.files)}", file=sys.stderr)
    return 0


def _study(name: str, args: argparse.Namespace) -> int:
    """Print the table of one study (``report/studies.py``)."""
    from pathlib import Path

    from tl_experiments.report import studies

    if name == "paired":
        print(studies.paired_sweeps_table(Path(args.sweep_a), Path(args.sweep_b)))
    elif name == "wise-ft":
        print(studies.wise_ft_paired_table(Path(args.sweep)))
    else:
        print(studies.advisor_hits_table([Path(s) for s in args.sweeps]))
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
