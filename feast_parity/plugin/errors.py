"""Errors that end a command with one line and exit code 2 (bad input or configuration).

Every message is one line, names what is wrong (the flag, the key, the store with its password
masked) and never carries a traceback or a driver's "Background on this error" link.
"""

from __future__ import annotations


class ParityError(Exception):
    """Base of the one-line usage and configuration errors of feast-parity."""


class CheckError(ParityError):
    """A usage or configuration error of the check (bad window, repo, store, view)."""


class LineageError(ParityError, ValueError):
    """Bad input to lineage or the gate (an unknown feature ref)."""
