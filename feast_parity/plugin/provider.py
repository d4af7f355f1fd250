"""``ParityProvider``: Feast's passthrough provider with a sampling hook on online reads.

Registered with ``provider: feast_parity.ParityProvider`` in ``feature_store.yaml``. Like Feast's
own passthrough provider, it only delegates: online reads go to Feast and then to the serving
hook (:mod:`feast_parity.plugin.hook`), which samples rows and queues snapshots for the writer
thread (:mod:`feast_parity.store.writer` with :mod:`feast_parity.plugin.collect`); historical
retrievals go to Feast and then to training lineage (:mod:`feast_parity.plugin.lineage`).
Costs and their limits: docs/performance.md.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from feast.feature_service import FeatureService
from feast.infra.passthrough_provider import PassthroughProvider
from feast.online_response import OnlineResponse
from feast.repo_config import RepoConfig

from feast_parity.parity.sampling import Sampler
from feast_parity.plugin.collect import BatchCollector
from feast_parity.plugin.config import ParityConfig, base_directory
from feast_parity.plugin.hook import ServingHook, capture_dropped_inputs, install_capture
from feast_parity.store.writer import SampleWriter, install_sigterm_flush

logger = logging.getLogger("feast_parity")

_IDLE_STATS = {
    "sampled_rows": 0,
    "written_rows": 0,
    "written_log_rows": 0,
    "dropped_rows": 0,
    "dropped_queue_full": 0,
    "dropped_store_error": 0,
    "hook_errors": 0,
    "store_errors": 0,
    "queue_depth": 0,
}


class ParityProvider(PassthroughProvider):
    """PassthroughProvider that logs deterministic samples of what it serves."""

    def __init__(self, config: RepoConfig):
        super().__init__(config)
        self.parity_config = ParityConfig.from_repo_config(config)
        cfg = self.parity_config
        self.sampler = Sampler(cfg.sample_rate, cfg.seed)
        self.hook = ServingHook(self.sampler, lambda: self.writer)
        self._writer: SampleWriter | None = None
        self._writer_lock = threading.Lock()
        self._sampling = cfg.enabled and self.sampler.threshold > 0
        # where relative store paths resolve: the repo, else beside a local registry file
        self.base_dir = base_directory(config)
        if self._sampling and self.base_dir is None and cfg.needs_base_directory():
            self._sampling = False
            logger.warning(
                "feast-parity: sampling is off: this FeatureStore has no repo path and no local "
                "registry file to put the sample store %s beside; set parity.store to an "
                "absolute path or a database URL to turn it on",
                cfg.sample_log or cfg.store,
            )
        if self._sampling:
            # SIGTERM flushes the queue first (main thread, default or Python handler only).
            install_sigterm_flush()
            install_capture()  # on-demand inputs Feast drops from responses (plugin/hook.py)

    # -- the sample log writer, created on first use --

    @property
    def writer(self) -> SampleWriter:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    cfg = self.parity_config
                    collector = BatchCollector(
                        sample_rate=cfg.sample_rate,
                        seed=cfg.seed,
                        redact=cfg.redact,
                        redact_key=cfg.redaction_key(),
                    )
                    self._writer = SampleWriter(
                        cfg.sample_sink(self.base_dir, collector.writer),
                        collector,
                        queue_size=cfg.queue_size,
                        batch_rows=cfg.batch_size,
                        flush_interval=cfg.flush_interval_seconds,
                    )
                    # a FeatureStore dropped without teardown stops its writer (without waiting)
                    weakref.finalize(self, self._writer.stop_soon)
                    try:
                        from feast_parity.plugin.metrics import install as install_metrics

                        install_metrics()
                    except Exception as exc:  # metrics must never break serving
                        logger.warning("feast-parity: Prometheus metrics not installed: %r", exc)
        return self._writer

    def parity_stats(self) -> dict[str, int]:
        """Counters of the hook: sampled, written and dropped rows, hook errors, queue depth."""
        return dict(_IDLE_STATS) if self._writer is None else self._writer.counters()

    def flush_samples(self, timeout: float = 30.0) -> bool:
        """Block until queued samples are written (for tests, jobs and shutdown hooks)."""
        return True if self._writer is None else self._writer.flush(timeout)

    def close_samples(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the writer thread (a later sampled request starts a
        new one). Waits at most about ``timeout`` + 2 s."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close(timeout)

    def teardown_infra(self, project: str, tables: Any, entities: Any) -> None:
        """``FeatureStore.teardown()``: Feast's teardown, then the writer is flushed and
        stopped."""
        try:
            super().teardown_infra(project, tables, entities)
        finally:
            self.close_samples()

    # -- online retrieval hooks --

    def get_online_features(  # type: ignore[override]
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: Any,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        **kwargs: Any,
    ) -> OnlineResponse:
        request_time = time.time()
        decision = (
            self.hook.decide(features, entity_rows, registry, project, full_feature_names)
            if self._sampling
            else None
        )
        with capture_dropped_inputs(decision):
            response = super().get_online_features(
                config=config,
                features=features,
                entity_rows=entity_rows,
                registry=registry,
                project=project,
                full_feature_names=full_feature_names,
                **kwargs,
            )
        if decision is not None:
            self.hook.observe(decision, entity_rows, response, request_time)
        return response

    async def get_online_features_async(  # type: ignore[override]
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: Any,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        **kwargs: Any,
    ) -> OnlineResponse:
        request_time = time.time()
        decision = (
            self.hook.decide(features, entity_rows, registry, project, full_feature_names)
            if self._sampling
            else None
        )
        with capture_dropped_inputs(decision):
            response = await super().get_online_features_async(
                config=config,
                features=features,
                entity_rows=entity_rows,
                registry=registry,
                project=project,
                full_feature_names=full_feature_names,
                **kwargs,
            )
        if decision is not None:
            self.hook.observe(decision, entity_rows, response, request_time)
        return response

    async def close(self) -> None:
        """Feast's feature server awaits this at shutdown, after in-flight requests finished:
        flush what they sampled (the SIGTERM handler alone would run before them)."""
        try:
            await super().close()
        finally:
            if self._writer is not None:
                import asyncio

                await asyncio.get_running_loop().run_in_executor(None, self.close_samples, 10.0)

    # -- offline retrieval hook: training lineage --

    def parity_engine(self) -> Any:
        """SQLAlchemy engine of the parity store (created once; used off the serving path)."""
        engine = getattr(self, "_parity_engine", None)
        if engine is None:
            from feast_parity.store.engine import open_store

            url = self.parity_config.store_url(self.base_dir)
            if self.base_dir is None and self.parity_config.store_is_relative():
                raise RuntimeError(
                    f"parity.store {url} is relative and this FeatureStore has no repo path or "
                    "local registry file to resolve it against"
                )
            engine = open_store(url)
            self._parity_engine = engine
        return engine

    def get_historical_features(  # type: ignore[override]
        self,
        config: RepoConfig,
        feature_views: list[Any],
        feature_refs: list[str],
        entity_df: Any,
        registry: Any,
        project: str,
        full_feature_names: bool,
        **kwargs: Any,
    ) -> Any:
        job = super().get_historical_features(
            config,
            feature_views,
            feature_refs,
            entity_df,
            registry,
            project,
            full_feature_names,
            **kwargs,
        )
        from feast_parity.plugin.lineage import record_training_retrieval

        return record_training_retrieval(
            self, job, feature_views, feature_refs, registry, project, full_feature_names
        )
