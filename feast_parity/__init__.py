"""feast-parity: training/serving parity and freshness monitoring for Feast.

Register ``provider: feast_parity.ParityProvider`` and a ``parity:`` block in
``feature_store.yaml``; see the README.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ParityProvider",
    "TrainingGateError",
    "lineage",
    "read_samples",
    "training_gate",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from feast_parity.plugin.provider import ParityProvider


def __getattr__(name: str) -> Any:
    # Lazy so that `import feast_parity.parity` never pulls Feast in.
    if name == "ParityProvider":
        from feast_parity.plugin.provider import ParityProvider

        return ParityProvider
    if name in ("lineage", "training_gate", "TrainingGateError"):
        from feast_parity.plugin import lineage as lineage_module

        return getattr(lineage_module, name)
    if name == "LineageError":
        from feast_parity.plugin.errors import LineageError

        return LineageError
    if name == "read_samples":
        from feast_parity.store.samples import read_samples

        return read_samples
    raise AttributeError(f"module 'feast_parity' has no attribute {name!r}")
