"""``feast-parity`` command line (click, Feast's own CLI idiom); commands in ``commands/``.

Exit codes: 0 no finding has severity fail; 1 one has; 2 usage or configuration error, printed
as one line without a traceback; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import logging
import sys

import click

from feast_parity import __version__
from feast_parity.commands import COMMANDS
from feast_parity.commands.options import USAGE_ERROR

INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="feast-parity")
def cli() -> None:
    """Training/serving parity for Feast: compare what serving returned with the offline store."""


for _command in COMMANDS:
    cli.add_command(_command)


def _one_line(text: str) -> str:
    from feast_parity.render.text import printable

    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return printable(first)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    from feast_parity.plugin.errors import ParityError
    from feast_parity.store.engine import StoreError, describe_error

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        result = cli.main(args=argv, prog_name="feast-parity", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, --version
        return int(exc.exit_code)
    except click.Abort:
        print("feast-parity: interrupted", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print("feast-parity: interrupted", file=sys.stderr)
        return INTERRUPTED
    except click.ClickException as exc:
        print(f"feast-parity: error: {_one_line(exc.format_message())}", file=sys.stderr)
        return USAGE_ERROR
    except (ParityError, StoreError, OSError) as exc:
        print(f"feast-parity: error: {_one_line(str(exc))}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as exc:
        import sqlalchemy as sa

        if isinstance(exc, sa.exc.SQLAlchemyError):
            print(f"feast-parity: error: parity store: {describe_error(exc)}", file=sys.stderr)
            return USAGE_ERROR
        raise
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
