"""Subcommands of ``feast-parity``: one module each, with ``register(subparsers)``.

``register`` adds the subcommand's parser and sets ``handler`` (``args -> exit code``) as its
default. ``feast_parity.cli`` imports the modules listed in ``COMMANDS``.
"""

COMMANDS = ["check", "freshness", "lineage", "alerts", "export"]
