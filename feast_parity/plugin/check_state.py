"""What a check run knows and what its engine fills: the window, the repo's objects, the
comparison settings, and the mergeable comparison state per feature and view.

The engines (:mod:`feast_parity.plugin.local_engine`, :mod:`feast_parity.plugin.spark_check`)
are two implementations of :class:`CheckEngine`: each gets one :class:`CheckContext`, decides
which rows to compare in which partitions, and leaves compared chunks (local) or merged
partition states (Spark) in ``context.features`` and ``context.views``. Neither knows the
other or the check that runs it; :mod:`feast_parity.plugin.check` turns the filled context
into the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from feast_parity.parity.chunk import ComparisonSettings
from feast_parity.parity.feature import FeatureComparison
from feast_parity.parity.samplelog.v2 import Skipped
from feast_parity.parity.served import ServedRows
from feast_parity.parity.transformation import TransformationParity
from feast_parity.parity.view import ViewComparison
from feast_parity.parity.window import Window
from feast_parity.plugin.registry import ViewCatalog, ViewInfo, udf_fingerprint


class CheckContext:
    """One run's inputs (read by engines) and comparison state (filled by engines)."""

    def __init__(
        self,
        *,
        store: Any,
        config: Any,
        window: Window,
        sample_log: Any,
        catalog: ViewCatalog,
        reader: Any,
        settings: ComparisonSettings,
        chunk_rows: int,
        progress: Callable[[int, int], None] | None,
        labeler: Any,
        trained_udf: dict[str, str],
        notes: list[str],
    ) -> None:
        self.store, self.config = store, config
        self.window = window
        self.since, self.until = window.start, window.end
        self.sample_log = sample_log
        self.catalog = catalog
        self.reader = reader  # plugin/offline.OfflineReader
        self.settings = settings
        self.chunk_rows = chunk_rows
        self.progress = progress
        self.labeler = labeler  # plugin/cohort_labels.CohortLabeler, or None
        self.trained_udf = trained_udf  # on-demand view -> fingerprint trained on
        self.notes = notes
        self.scope: Any = None  # plugin/check_scope.CheckScope: only some features, or None
        # filled by the engine
        self.features: dict[str, FeatureComparison] = {}
        self.views: dict[str, ViewComparison] = {}
        self.transformations: dict[str, TransformationParity] = {}
        self.unfit_request: dict[str, dict[str, int]] = {}  # on-demand view -> field -> values
        self.missing_registry: dict[str, set[str]] = {}
        self.missing_offline: dict[str, set[str]] = {}
        self.deleted_views: dict[str, int] = {}
        self.skipped = Skipped()
        self.samples = 0
        self.timings = {"read_seconds": 0.0, "offline_seconds": 0.0, "compare_seconds": 0.0}

    def reads(self, view_name: str) -> bool:
        """Whether the engine reads this view's samples: every view, unless the check has a
        scope (then its views and those its on-demand views are computed from)."""
        return self.scope is None or self.scope.reads(view_name, self.catalog)

    def note_once(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def comparison(self, info: ViewInfo, name: str, rows: ServedRows) -> FeatureComparison:
        """The comparison state of ``view:name``, made on first use."""
        ref = f"{info.name}:{name}"
        comparison = self.features.get(ref)
        if comparison is None:
            declared = info.declared.get(name) or rows.features[name].declared
            comparison = self.features[ref] = self.settings.new(ref, declared, info.on_demand)
        return comparison

    def transformation(self, info: ViewInfo) -> TransformationParity:
        """The transformation tallies of an on-demand view, made on first use."""
        parity = self.transformations.get(info.name)
        if parity is None:
            parity = self.transformations[info.name] = TransformationParity(
                info.name,
                registry_fingerprint=udf_fingerprint(info.view),
                training_fingerprint=self.trained_udf.get(info.name),
            )
        return parity

    def served_elsewhere(self, view_name: str, features: set[str], missing: set[str]) -> None:
        """Record features a view served that the registry or the offline store lacks."""
        info = self.catalog.get(view_name)
        gone = features - set(info.declared if info is not None else ())
        if gone:
            self.missing_registry.setdefault(view_name, set()).update(gone)
        if missing:
            self.missing_offline.setdefault(view_name, set()).update(missing)
            self.note_once(
                f"the offline store returned no column for {', '.join(sorted(missing))} "
                f"of {view_name}: schema divergence"
            )


class CheckEngine(Protocol):
    """Where the comparison runs. ``compare`` reads the window's sample log and leaves the
    comparison state of every view and feature in ``context``; it raises ``CheckError`` (one
    line) when the window cannot be checked."""

    name: str

    def compare(self, context: CheckContext) -> None: ...
