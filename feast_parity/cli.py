"""``feast-parity`` command line; the subcommands live in ``feast_parity.commands``.

Exit codes: 0 no finding has severity fail; 1 one has; 2 usage or configuration error, printed
as one line without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from feast_parity import __version__
from feast_parity.commands import COMMANDS

USAGE_ERROR = 2


class UsageError(Exception):
    """Raised by a subcommand for bad input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors exit 2 too, in one line
        self.exit(USAGE_ERROR, f"feast-parity: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="feast-parity", description="Training/serving parity for Feast.")
    parser.add_argument("--version", action="version", version=f"feast-parity {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"feast_parity.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from feast_parity.plugin.check import CheckError
    from feast_parity.plugin.config import ParityConfigError

    try:
        return int(args.handler(args))
    except (UsageError, CheckError, ParityConfigError, OSError) as exc:
        print(f"feast-parity: error: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
