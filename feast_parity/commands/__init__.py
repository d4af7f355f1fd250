"""Subcommands of ``feast-parity``: one click command per module.

``--repo PATH`` and ``--json [FILE]`` mean the same in every command: the Feast repo directory,
and JSON to stdout without a value or to FILE with one.
"""

from __future__ import annotations

from feast_parity.commands.alerts import alerts
from feast_parity.commands.check import check
from feast_parity.commands.export import export
from feast_parity.commands.freshness import freshness
from feast_parity.commands.gate import gate
from feast_parity.commands.lineage import lineage

COMMANDS = [check, gate, freshness, lineage, alerts, export]
