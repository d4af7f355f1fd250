"""The sample writer: a bounded queue and one daemon thread, off the serving path.

Serving hands a snapshot to :meth:`SampleWriter.submit`, which only appends to a bounded queue
(never blocks, never raises). The writer thread feeds snapshots to a *collector* (the plugin's
batch builder: it decodes the response and gathers typed columns) and, by size or age, hands the
collected batches to a sink (:mod:`feast_parity.store.sinks`) in one write. When the queue is
full or the sink fails, rows are dropped and counted in :class:`WriterStats`. While the sink is
down, :attr:`SampleWriter.store_down` is set: the hook then drops sampled rows before copying
anything, and queued snapshots are dropped before any decoding, so a down store costs serving
nothing; the thread probes the sink every ``retry_seconds`` and logging resumes by itself.

Queued samples are flushed on SIGTERM (:func:`install_sigterm_flush`), on ``close`` and at
interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from feast_parity.store.sinks import SampleLogLocationError, SampleSink

logger = logging.getLogger("feast_parity")


class Collector(Protocol):
    def add(self, payload: Any) -> int:
        """Gather one snapshot; return the number of log rows it added."""
        ...

    def take(self) -> list[Any]:
        """The gathered batches, emptying the collector."""
        ...

    def discard(self) -> None:
        """Forget what was gathered (its rows were counted as dropped)."""
        ...


@dataclass
class WriterStats:
    """Counters of the hook and the writer; exported to Prometheus by the plugin."""

    sampled_rows: int = 0  # entity rows chosen by the sampler
    written_rows: int = 0  # of those, rows whose log entries reached the store
    written_log_rows: int = 0  # log rows (one per entity row and feature view)
    dropped_queue_full: int = 0
    dropped_store_error: int = 0
    hook_errors: int = 0
    store_errors: int = 0
    # Reentrant: a SIGTERM handler may flush on a thread that was inside submit().
    _lock: Any = field(default_factory=threading.RLock, repr=False)

    @property
    def dropped_rows(self) -> int:
        return self.dropped_queue_full + self.dropped_store_error

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "sampled_rows": self.sampled_rows,
                "written_rows": self.written_rows,
                "written_log_rows": self.written_log_rows,
                "dropped_rows": self.dropped_rows,
                "dropped_queue_full": self.dropped_queue_full,
                "dropped_store_error": self.dropped_store_error,
                "hook_errors": self.hook_errors,
                "store_errors": self.store_errors,
            }


@dataclass
class Snapshot:
    """What the request thread hands over: opaque payload plus how many rows it will become."""

    rows: int
    payload: Any


_YIELD_SECONDS = 0.0001
_MAX_SLEEP_SECONDS = 60.0  # the writer looks at its queue at least this often


@dataclass
class _Gathered:
    """What the writer thread has gathered in the collector and not yet written."""

    snapshots: int = 0
    rows: int = 0  # log rows
    entity_rows: int = 0  # sampled entity rows
    started: float = 0.0  # when the first gathered snapshot was taken from the queue

    def clear(self) -> None:
        self.snapshots = self.rows = self.entity_rows = 0


# Snapshots queued before a submit wakes the writer. Fewer wake-ups mean fewer hand-offs of the
# GIL between the writer and the serving threads; the writer also wakes on its own each
# ``flush_interval`` and on flush(), so a queued snapshot waits at most that long.
WAKE_SNAPSHOTS = 64
_live_writers: weakref.WeakSet[SampleWriter] = weakref.WeakSet()


class SampleWriter:
    """Bounded queue plus one daemon thread that writes collected batches to a sink."""

    def __init__(
        self,
        sink: SampleSink,
        collector: Collector,
        *,
        queue_size: int = 10_000,
        batch_rows: int = 5_000,
        flush_interval: float = 1.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self.sink = sink
        self.collector = collector
        self.batch_rows = batch_rows
        self.flush_interval = flush_interval
        self.retry_seconds = retry_seconds
        self.stats = WriterStats()
        self._lock = self.stats._lock  # one lock: counters, queue bound, pending count
        self._queue: deque[Snapshot] = deque()
        self._queue_size = queue_size
        self.store_down = False  # read by the hook without a lock (a plain bool is atomic)
        self._outage = False  # from a failed write until the next write that succeeds
        self._stopped: BaseException | None = None  # why the writer thread died, if it did
        self._next_probe = 0.0
        self._hook_error_logged = False
        self._paused = threading.Event()
        # A plain lock as a wake-up signal: released = "look at the queue". Cheaper than an
        # Event (a Python-level Condition) on the serving thread, and the wait is one C call.
        self._signal = threading.Lock()
        self._signal.acquire()
        self._flush_requested = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # snapshots submitted and not yet written or dropped
        self._wake_at = max(1, min(WAKE_SNAPSHOTS, queue_size // 2))
        self._closed = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="feast-parity-writer", daemon=True)
        self._thread.start()
        _live_writers.add(self)

    # -- serving side: never blocks, never raises --

    def submit(self, snapshot: Snapshot) -> bool:
        """Queue a snapshot; on a full queue drop it and count its rows."""
        rows = snapshot.rows
        q = self._queue
        with self._lock:
            self.stats.sampled_rows += rows
            if self._stopped is not None:  # the writer thread died: nothing will write it
                self.stats.dropped_store_error += rows
                return False
            if self._closed or len(q) >= self._queue_size:
                self.stats.dropped_queue_full += rows
                return False
            self._pending += 1
            q.append(snapshot)
            wake = len(q) == self._wake_at
        if wake:  # a backlog builds: wake the writer (it picks up the rest while busy)
            self._wake()
        return True

    def drop_sampled(self, rows: int) -> None:
        """Count rows the hook sampled but did not copy because the store is down."""
        with self._lock:
            self.stats.sampled_rows += rows
            self.stats.dropped_store_error += rows

    def _wake(self) -> None:
        try:
            self._signal.release()
        except RuntimeError:  # already released: a wake-up is pending
            pass

    def record_hook_error(self, exc: BaseException) -> None:
        """Count an exception of the hook; log the first one only."""
        self.stats.add("hook_errors")
        if not self._hook_error_logged:
            self._hook_error_logged = True
            logger.warning("feast-parity: sampling hook failed (logged once): %r", exc)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def queue_capacity(self) -> int:
        return self._queue_size

    def counters(self) -> dict[str, int]:
        """The counters and the queue depth, read together (consistent with each other)."""
        with self._lock:
            return {**self.stats.as_dict(), "queue_depth": len(self._queue)}

    # -- control --

    def pause(self) -> None:
        """Stall the writer thread (used by tests and maintenance): submissions keep queueing."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()
        self._wake()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted snapshot is written or dropped; True when drained."""
        deadline = time.monotonic() + timeout
        self._flush_requested.set()
        self._wake()
        try:
            with self._idle:
                while self._pending > 0:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._thread.is_alive():
                        return False
                    self._idle.wait(min(remaining, 0.1))
            return True
        finally:
            self._flush_requested.clear()

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then stop the thread (waits at most about ``timeout`` + 2 s;
        rows the thread could not write by then are written as it stops, or counted)."""
        if self._closed:
            return
        self._paused.clear()
        self.flush(timeout)
        self.stop_soon()
        self._thread.join(timeout=2.0)

    def stop_soon(self) -> None:
        """Refuse new snapshots, and let the thread write what is queued, close the sink and
        end. Never waits: a FeatureStore's garbage collection calls it on whatever thread
        collects (plugin/provider.py)."""
        with self._lock:
            self._closed = True
        self._stopping = True
        self._paused.clear()
        self._wake()

    @property
    def running(self) -> bool:
        """The writer thread is alive."""
        return self._thread.is_alive()

    # -- writer thread --

    def _store_usable(self) -> bool:
        """False while the sink is down and not yet due for another probe."""
        if not self.store_down:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        try:
            self.sink.probe()
        except Exception:
            self._next_probe = now + self.retry_seconds
            return False
        # the next write is tried; the outage ends (and is logged as over) when one succeeds
        self.store_down = False
        return True

    def _run(self) -> None:
        """The thread's body: the loop, and if it ever raises, account for every row it held."""
        state = _Gathered()
        try:
            self._loop(state)
        except BaseException as exc:  # never die silently: count what is lost, and say why
            self._die(exc, state)
            return
        _live_writers.discard(self)
        try:
            self.sink.close()
        except Exception:  # the process goes on; nothing is left to write
            pass

    def _die(self, exc: BaseException, state: _Gathered) -> None:
        with self._lock:
            self._stopped = exc
            self.store_down = True  # the hook now drops sampled rows before copying them
            lost = state.entity_rows + sum(item.rows for item in self._queue)
            snapshots = state.snapshots + len(self._queue)
            self._queue.clear()
            self.stats.dropped_store_error += lost
        try:
            self.collector.discard()
        except Exception:
            pass
        with self._idle:
            self._pending -= snapshots
            self._idle.notify_all()
        logger.error(
            "feast-parity: the sample writer thread stopped (%r); %d sampled row(s) dropped, "
            "and every row sampled from now on is dropped and counted",
            exc,
            lost,
        )

    @property
    def stopped(self) -> BaseException | None:
        """Why the writer thread died (None while it runs or after a normal close)."""
        return self._stopped

    def _loop(self, state: _Gathered) -> None:
        q = self._queue
        while True:
            if self._paused.is_set():
                self._signal.acquire(timeout=0.01)
                continue
            with self._lock:  # so counters() sees a snapshot either queued or taken
                item = q.popleft() if q else None
            if item is not None:
                if not self._store_usable():
                    self._finish(0, item.rows, dropped=True)
                    continue
                if not state.snapshots:
                    state.started = time.monotonic()
                try:
                    state.rows += self.collector.add(item.payload)
                    state.entity_rows += item.rows
                except Exception as exc:  # a bug in the collector must not kill the thread
                    self.record_hook_error(exc)
                    self.stats.add("dropped_store_error", item.rows)
                    self._finish(1, 0)
                else:
                    state.snapshots += 1
                if q:
                    # A backlog: hand the GIL over between snapshots. A serving thread waiting
                    # for it would otherwise wait for CPython's switch interval (5 ms).
                    time.sleep(_YIELD_SECONDS)
            # Write by size or age, not whenever the queue runs dry: at normal traffic that
            # would make every snapshot its own transaction. flush() asks for an early write.
            now = time.monotonic()
            if state.snapshots and (
                state.rows >= self.batch_rows
                or now - state.started >= self.flush_interval
                or (not q and (self._flush_requested.is_set() or self._stopping))
            ):
                self._write(state.snapshots, state.entity_rows, state.rows)
                state.clear()
            if q:
                continue
            if self._stopping:
                return
            if self.store_down:
                # the hook queues nothing while the store is down: probe it from here, so
                # logging resumes by itself when the store returns
                self._store_usable()
            # Nothing queued: sleep until a backlog, a flush, the batch's age limit, the next
            # look at the queue or the next probe. A wake-up that came after the check above
            # left the signal released: none is lost.
            timeout = self.flush_interval
            if state.snapshots:
                timeout = state.started + self.flush_interval - time.monotonic()
            if self.store_down:
                timeout = min(timeout, self._next_probe - time.monotonic())
            # bounded: a lock wait longer than TIMEOUT_MAX raises OverflowError
            self._signal.acquire(timeout=min(max(0.001, timeout), _MAX_SLEEP_SECONDS))

    def _finish(self, snapshots: int, dropped_rows: int, *, dropped: bool = False) -> None:
        with self._idle:
            if dropped:
                self.stats.dropped_store_error += dropped_rows
                snapshots = 1
            self._pending -= snapshots
            self._idle.notify_all()

    def _write(self, snapshots: int, entity_rows: int, log_rows: int) -> None:
        """Write what the collector gathered; counters are in sampled entity rows."""
        try:
            batches = self.collector.take()
            if batches:
                self.sink.write(batches)
            self.stats.add("written_log_rows", log_rows)
            # rows whose response held no feature column are accounted as written
            self.stats.add("written_rows", entity_rows)
            if self._outage:  # one line when an outage starts, one when it ends
                self._outage = False
                logger.warning("feast-parity: sample store %s is back", self.sink.describe())
        except Exception as exc:
            self.collector.discard()
            with self._lock:
                self.stats.store_errors += 1
                self.stats.dropped_store_error += entity_rows
            if not self._outage:
                self._outage = True
                logger.warning(
                    "feast-parity: sample store %s failed, dropping rows until it returns: %s",
                    self.sink.describe(),
                    # a sample-log location error is one line of our own (no bucket, refused
                    # keys, no endpoint); others are named by type (a driver's text may hold a URL)
                    str(exc) if isinstance(exc, SampleLogLocationError) else type(exc).__name__,
                )
            self.store_down = True
            self._next_probe = time.monotonic() + self.retry_seconds
        finally:
            with self._idle:
                self._pending -= snapshots
                self._idle.notify_all()


def flush_all_writers(timeout: float = 10.0) -> bool:
    """Flush every live writer of this process (shared deadline); True when all drained."""
    deadline = time.monotonic() + timeout
    drained = True
    for writer in list(_live_writers):
        try:
            drained = writer.flush(max(0.0, deadline - time.monotonic())) and drained
        except Exception:
            drained = False
    return drained


def live_writers() -> list[SampleWriter]:
    """The writers of this process (for the Prometheus collector)."""
    return list(_live_writers)


@atexit.register
def _close_all_writers() -> None:
    for writer in list(_live_writers):
        try:
            writer.close(timeout=10.0)
        except Exception:  # interpreter is exiting: never raise here
            pass


# --- SIGTERM: flush, then terminate as before ----------------------------------------------------

_sigterm_lock = threading.Lock()
_sigterm_installed = False
SIGTERM_FLUSH_SECONDS = 10.0


def install_sigterm_flush(flush: Callable[[float], bool] = flush_all_writers) -> bool:
    """Make SIGTERM flush the sample writers before the process goes on to terminate.

    Installed at most once per process, and only from the main thread (Python allows signal
    handlers nowhere else) when SIGTERM has Python's default disposition or a Python handler:

    * default disposition: the handler flushes (at most ``SIGTERM_FLUSH_SECONDS``), restores
      the default and sends SIGTERM to the process again, which then dies of SIGTERM exactly
      as it would have (same exit status for the supervisor);
    * a Python handler (a server's graceful shutdown, say): the handler flushes, then calls it.

    An ignored SIGTERM (``SIG_IGN``) or a handler installed outside Python is left alone.
    Returns whether our handler is installed (now or before).
    """
    global _sigterm_installed
    import signal

    with _sigterm_lock:
        if _sigterm_installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        try:
            previous = signal.getsignal(signal.SIGTERM)
        except (AttributeError, ValueError):  # no SIGTERM on this platform
            return False
        if previous is signal.SIG_IGN or previous is None:
            return False
        chained = previous if callable(previous) else None

        def _on_sigterm(signum: int, frame: Any) -> None:
            try:
                flush(SIGTERM_FLUSH_SECONDS)
            except Exception:  # never let a flush problem stop the shutdown
                pass
            if chained is not None:
                chained(signum, frame)
                return
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        try:
            signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):  # not the main interpreter, or an embedded runtime
            return False
        _sigterm_installed = True
        return True
