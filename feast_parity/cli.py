"""``feast-parity`` command line: ``check`` (and more subcommands as they land).

Exit codes: 0 no finding has severity fail; 1 one has; 2 usage or configuration error, printed
as one line without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from feast_parity import __version__

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors exit 2 too, in one line
        self.exit(USAGE_ERROR, f"feast-parity: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="feast-parity", description="Training/serving parity for Feast.")
    parser.add_argument("--version", action="version", version=f"feast-parity {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    check = commands.add_parser("check", help="compare sampled served rows with offline values")
    check.add_argument("--repo", required=True, type=Path, help="the Feast repo directory")
    check.add_argument("--since", help="window start, ISO 8601 (default: --until minus 24h)")
    check.add_argument("--until", help="window end, ISO 8601 (default: now)")
    check.add_argument("--json", type=Path, help="write the JSON report here")
    check.add_argument("--html", type=Path, help="write the self-contained HTML report here")
    check.add_argument("--chunk-rows", type=int, default=50_000, help=argparse.SUPPRESS)
    check.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _check(args: argparse.Namespace) -> int:
    from feast_parity.parity.report import exit_code, render_html, render_text, to_json
    from feast_parity.plugin.check import progress_bar, run_check

    progress = None if args.no_progress or not sys.stderr.isatty() else progress_bar()
    report = run_check(
        args.repo, args.since, args.until, chunk_rows=args.chunk_rows, progress=progress
    )
    print(render_text(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(to_json(report))
        print(f"JSON report: {args.json}")
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(render_html(report))
        print(f"HTML report: {args.html}")
    return exit_code(report)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from feast_parity.plugin.check import CheckError
    from feast_parity.plugin.config import ParityConfigError

    try:
        if args.command == "check":
            return _check(args)
    except (CheckError, ParityConfigError) as exc:
        print(f"feast-parity: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as exc:
        print(f"feast-parity: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
