"""A check of some features only (``check --model URI``, ``run_check(features=...)``).

The check reads the samples of the scope's views and of the views their on-demand views are
computed from (an on-demand output is recomputed from what serving fed it), and reports only the
scope's features, their views and the findings about them. Its run id is the window's and the
features': a check of some features never replaces the window's full run in the parity store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import xxhash

from feast_parity.plugin.errors import CheckError


@dataclass
class CheckScope:
    """The feature refs to check (registry names ``view:feature``) and what named them."""

    features: frozenset[str]
    about: dict[str, Any] = field(default_factory=dict)  # the model, its feature service

    @classmethod
    def of(
        cls,
        features: Sequence[str] | None,
        catalog: Any,
        about: Mapping[str, Any] | None = None,
    ) -> CheckScope | None:
        """None without a feature list; each ref must be a feature of a registry view."""
        if features is None:
            return None
        refs = frozenset(features)
        if not refs:
            raise CheckError("no features to check: the feature list is empty")
        for ref in sorted(refs):
            view_name, _, name = ref.partition(":")
            info = catalog.get(view_name)
            if info is None or name not in info.declared:
                raise CheckError(
                    f"unknown feature ref {ref!r}: not a feature of a view in project "
                    f"{catalog.project!r}"
                )
        return cls(refs, dict(about or {}))

    @property
    def views(self) -> set[str]:
        """The views whose features are checked."""
        return {ref.split(":", 1)[0] for ref in self.features}

    def reads(self, view_name: str, catalog: Any) -> bool:
        """Whether the check reads this view's samples: a view of the scope, or one an
        on-demand view of the scope is computed from."""
        if view_name in self.views:
            return True
        from feast_parity.plugin.transform import sources_of

        for name in self.views:
            info = catalog.get(name)
            if info is not None and info.on_demand:
                sources, _ = sources_of(info.view, catalog)
                if any(source.info.name == view_name for source in sources):
                    return True
        return False

    def keeps_feature(self, ref: str) -> bool:
        return ref in self.features

    def keeps_view(self, view_name: str) -> bool:
        return view_name in self.views

    def finish(self, report: dict[str, Any]) -> dict[str, Any]:
        """Add ``scope`` and a note on features without samples; give the run its own id."""
        checked = {row["feature"] for row in report["features"]}
        unchecked = sorted(self.features - checked)
        if unchecked:
            report.setdefault("notes", []).append(
                f"{len(unchecked)} of the {len(self.features)} features to check had no samples "
                f"in the window: {', '.join(unchecked)}"
            )
        report["scope"] = {**self.about, "features": sorted(self.features)}
        key = f"{report['run_id']}|{','.join(sorted(self.features))}".encode()
        report["run_id"] = f"{xxhash.xxh3_64_intdigest(key):016x}"
        return report
