"""A uniform random sample of a stream, of bounded size, deterministic for a seed.

Used for exact KS tests on up to ``size`` values per side, lag percentiles and skew magnitude,
whatever the number of rows or chunks.

>>> r = Reservoir(size=3, seed=1)
>>> r.add([1.0, 2.0]); r.add([3.0, 4.0, 5.0]); len(r), r.seen
(3, 5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

RESERVOIR_SIZE = 20_000  # values per side kept for the exact KS test


@dataclass
class Reservoir:
    """A uniform random sample (without replacement) of up to ``size`` values of a stream.

    Algorithm R, vectorised per batch: the value at 1-based stream position ``t > size`` is
    kept with probability ``size / t`` and replaces a uniformly chosen slot; when several values
    of one batch pick the same slot the latest wins, exactly as in the sequential algorithm. So
    after any sequence of batches every value seen so far is in the sample with the same
    probability ``size / seen``, whatever the batch sizes. Deterministic for a given ``seed``,
    ``salt`` and batch sequence.
    """

    size: int = RESERVOIR_SIZE
    seed: int = 0
    salt: int = 0  # tells apart reservoirs that share a seed (online/offline side, stale lags)
    seen: int = 0
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))

    def add(self, batch: Any) -> None:
        batch = np.asarray(batch, dtype=np.float64).reshape(-1)
        if batch.size == 0:
            return
        room = self.size - self.values.size
        if room > 0:
            head = batch[:room]
            self.values = np.concatenate([self.values, head])
            self.seen += head.size
            batch = batch[room:]
            if batch.size == 0:
                return
        rng = np.random.default_rng([abs(int(self.seed)), int(self.salt), self.seen])
        positions = self.seen + np.arange(1, batch.size + 1, dtype=np.float64)
        kept = np.flatnonzero(rng.random(batch.size) * positions < self.size)
        slots = rng.integers(0, self.size, kept.size)
        # the last value (in stream order) that picked a slot is the one left in it
        unique_slots, first_from_end = np.unique(slots[::-1], return_index=True)
        self.values[unique_slots] = batch[kept[kept.size - 1 - first_from_end]]
        self.seen += batch.size

    def tolist(self) -> list[float]:
        return self.values.tolist()

    def __len__(self) -> int:
        return int(self.values.size)

    def merge(self, other: Reservoir) -> None:
        """Add another reservoir's stream (another chunk set, partition or process): afterwards
        every value of either stream is in the sample with probability ``size / seen``.

        How many slots come from each side is drawn from the hypergeometric distribution of a
        uniform sample of the concatenated streams; the values of each side are then a uniform
        sample of its own reservoir, which itself is uniform over its stream.
        """
        if other.seen == 0:
            return
        if self.seen == 0:
            self.values, self.seen = other.values.copy(), other.seen
            return
        total = self.seen + other.seen
        keep = min(self.size, total)
        rng = np.random.default_rng([abs(int(self.seed)), int(self.salt), self.seen, other.seen])
        mine = int(rng.hypergeometric(self.seen, other.seen, keep))
        mine = min(mine, len(self.values))
        theirs = min(keep - mine, len(other.values))
        mine = keep - theirs if len(self.values) >= keep - theirs else mine
        picked_mine = rng.choice(len(self.values), size=mine, replace=False)
        picked_theirs = rng.choice(len(other.values), size=theirs, replace=False)
        self.values = np.concatenate([self.values[picked_mine], other.values[picked_theirs]])
        self.seen = total
