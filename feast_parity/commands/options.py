"""Options shared by every command, so they are spelled and documented once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

USAGE_ERROR = 2


class UsageError(click.ClickException):
    """Raised by a command for bad input: printed as one line, exit code 2."""

    exit_code = USAGE_ERROR


repo_option = click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The Feast repo directory (holds feature_store.yaml).",
)

json_option = click.option(
    "--json",
    "json_out",
    is_flag=False,
    flag_value="-",
    default=None,
    metavar="[FILE]",
    help="Write JSON: to stdout without a value, to FILE with one.",
)


def write_json(destination: str | None, payload: Any) -> bool:
    """Write ``payload`` as JSON to stdout (``-``) or a file; True when written to stdout."""
    from feast_parity.render.json_report import jsonable

    if destination is None:
        return False
    text = json.dumps(jsonable(payload), indent=2, allow_nan=False)
    if destination == "-":
        click.echo(text)
        return True
    path = Path(destination)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return False
