"""Fill values: a value served in place of real offline values (0, -1, "", a default vector).

Per feature, :class:`FillTallies` counts, for the values served most often (at most
:data:`TALLY_CAP` candidates, plus every configured fill value), how often each was served, how
often offline held it at request time, and on how many rows it *replaced* a different real
offline value. Values are identified by their canonical hash, so the rule works for every type,
lists and maps included, and for redacted features.

The rule (docs/checks.md "Fill values", with a worked example): a value ``v`` is a fill value
of a feature when it is configured in ``parity.fill_values`` and replaced a real offline value at
least once, or when all of

* ``replaced(v) >= max(fill_value_min_rows, fill_value_min_share * offline_rows)``: it stands in
  for real values on a noticeable share of the rows that have a real offline value;
* ``served(v) >= fill_value_ratio * max(offline_count(v), 1)``: it is far more frequent online
  than offline on the same rows, so it is not simply a common real value;
* it replaced at least :data:`MIN_DISTINCT_REPLACED` different offline values: a default stands
  in for many values, while one entity served a skewed value replaces that entity's one value
  (a value mismatch, not a default).

>>> t = FillTallies()
>>> online = np.array([7, 7, 7, 1, 2], dtype=np.uint64)
>>> offline = np.array([3, 4, 5, 1, 2], dtype=np.uint64)
>>> t.update(online, np.ones(5, bool), offline, np.ones(5, bool), np.zeros(5, bool),
...          values=lambda i: int(online[i]))
>>> [f.value for f in t.found(offline_rows=5, min_share=0.2, min_rows=2, ratio=3.0)]
[7]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TALLY_CAP = 64  # candidate fill values tracked per feature
MIN_DISTINCT_REPLACED = 2  # a found fill value stands in for at least 2 different real values


@dataclass
class FillTally:
    """Counts of one candidate value (identified by ``hash``; ``value`` is for display)."""

    hash: int
    value: Any
    served: int = 0  # rows (with a real offline value) that were served this value
    offline: int = 0  # rows whose offline value at request time is this value
    replaced: int = 0  # rows where it replaced a different real offline value
    replaced_mismatch: int = 0  # of those, rows that also count as value mismatches
    replaced_values: set[int] = field(default_factory=set)  # hashes, at most 2 kept

    def merge(self, other: FillTally) -> None:
        self.served += other.served
        self.offline += other.offline
        self.replaced += other.replaced
        self.replaced_mismatch += other.replaced_mismatch
        self._remember(other.replaced_values)

    def _remember(self, hashes: Iterable[int]) -> None:
        for h in hashes:
            if len(self.replaced_values) >= MIN_DISTINCT_REPLACED:
                return
            self.replaced_values.add(int(h))


@dataclass
class FillTallies:
    """Mergeable candidate fill values of one feature."""

    configured: frozenset[int] = frozenset()  # hashes of parity.fill_values for this type
    tallies: dict[int, FillTally] = field(default_factory=dict)

    def update(
        self,
        online: np.ndarray,
        online_valid: np.ndarray,
        offline: np.ndarray,
        offline_real: np.ndarray,
        mismatch: np.ndarray,
        *,
        values: Callable[[int], Any],
    ) -> None:
        """One chunk: uint64 hashes of the served and offline-at-request values per row, which
        rows have a real served value / a real offline value, and which mismatch."""
        rows = online_valid & offline_real
        if not rows.any():
            return
        served = online[rows]
        uniq, first, counts = np.unique(served, return_index=True, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:TALLY_CAP]
        candidates = set(uniq[order].tolist()) | (self.configured & set(uniq.tolist()))
        cand = np.asarray(sorted(candidates), dtype=np.uint64)
        index = np.flatnonzero(rows)
        off = offline[rows]
        mis = mismatch[rows]
        at_served = np.searchsorted(cand, served)
        at_served[at_served >= len(cand)] = 0
        hit = cand[at_served] == served
        at_off = np.searchsorted(cand, off)
        at_off[at_off >= len(cand)] = 0
        off_hit = cand[at_off] == off
        k = len(cand)
        served_counts = np.bincount(at_served[hit], minlength=k)
        offline_counts = np.bincount(at_off[off_hit], minlength=k)
        replaced = hit & (served != off)
        replaced_counts = np.bincount(at_served[replaced], minlength=k)
        replaced_mis = np.bincount(at_served[replaced & mis], minlength=k)
        first_row = {int(h): int(index[f]) for h, f in zip(uniq.tolist(), first.tolist())}
        for j, h in enumerate(cand.tolist()):
            tally = self.tallies.get(h)
            if tally is None:
                tally = self.tallies[h] = FillTally(h, values(first_row[h]))
            tally.served += int(served_counts[j])
            tally.offline += int(offline_counts[j])
            tally.replaced += int(replaced_counts[j])
            tally.replaced_mismatch += int(replaced_mis[j])
            if replaced_counts[j] and len(tally.replaced_values) < MIN_DISTINCT_REPLACED:
                tally._remember(
                    np.unique(off[replaced & (at_served == j)])[:MIN_DISTINCT_REPLACED].tolist()
                )
        if len(self.tallies) > 2 * TALLY_CAP:
            self._prune()

    def _prune(self) -> None:
        keep = sorted(
            self.tallies.values(), key=lambda t: (t.hash not in self.configured, -t.served)
        )[:TALLY_CAP]
        self.tallies = {t.hash: t for t in keep}

    def merge(self, other: FillTallies) -> None:
        for h, tally in other.tallies.items():
            mine = self.tallies.get(h)
            if mine is None:
                self.tallies[h] = FillTally(h, tally.value)
                mine = self.tallies[h]
            mine.merge(tally)
        if len(self.tallies) > 2 * TALLY_CAP:
            self._prune()

    def found(
        self, *, offline_rows: int, min_share: float, min_rows: int, ratio: float
    ) -> list[FillTally]:
        """The fill values by the rule of the module docstring, most replacements first."""
        needed = max(min_rows, min_share * offline_rows)
        out = []
        for tally in self.tallies.values():
            if tally.replaced == 0:
                continue
            configured = tally.hash in self.configured
            frequent = tally.served >= ratio * max(tally.offline, 1)
            several = len(tally.replaced_values) >= MIN_DISTINCT_REPLACED
            if configured or (tally.replaced >= needed and frequent and several):
                out.append(tally)
        return sorted(out, key=lambda t: (-t.replaced, t.hash))


def configured_hashes(hashes: Iterable[int]) -> frozenset[int]:
    return frozenset(int(h) for h in hashes)
