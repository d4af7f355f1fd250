"""Change-point detectors over a stream of floats.

Feature values served online should keep the distribution they had when a
model was trained; these detectors flag the moment a monitored statistic
(a feature value, a parity error, a null rate...) moves. They follow the
parameters and update semantics of the detectors in ``river.drift`` so that
thresholds tuned there carry over, but are written from scratch on the
standard library only (this package must not depend on river or on Feast).

Shared conventions, all mirroring river:

* ``update(x)`` consumes one value; ``drift_detected`` is True right after the
  update that detected a change and False otherwise.
* The detector state is reset lazily, at the start of the update *following* a
  detection, so ``drift_detected`` can be read after the call and the detector
  can then detect the next change.
* No detection is attempted before ``min_instances`` values have been seen
  since the last reset; the count includes the current value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

__all__ = [
    "CUSUM",
    "EWMA",
    "DriftDetector",
    "PageHinkley",
    "detect_changes",
]

_VALID_MODES = ("up", "down", "both")


class DriftDetector(Protocol):
    """What :func:`detect_changes` needs from a detector."""

    @property
    def drift_detected(self) -> bool: ...

    def update(self, x: float) -> None: ...


def _check_mode(mode: str) -> str:
    if mode not in _VALID_MODES:
        raise ValueError(f"mode must be one of {_VALID_MODES}, got {mode!r}")
    return mode


def _check_min_instances(min_instances: int) -> int:
    if isinstance(min_instances, bool) or not isinstance(min_instances, int):
        raise ValueError(f"min_instances must be an int, got {min_instances!r}")
    if min_instances < 1:
        raise ValueError(f"min_instances must be at least 1, got {min_instances!r}")
    return min_instances


def _check_positive(name: str, value: float) -> float:
    # Written as "not >" so that NaN is rejected too.
    if not value > 0:
        raise ValueError(f"{name} must be greater than 0, got {value!r}")
    return float(value)


def _check_non_negative(name: str, value: float) -> float:
    if not value >= 0:
        raise ValueError(f"{name} must be greater than or equal to 0, got {value!r}")
    return float(value)


def _check_unit_interval(name: str, value: float) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def _exceeds(mode: str, up: float, down: float, limit: float) -> bool:
    """Return whether the statistic(s) watched by ``mode`` are above ``limit``."""
    if mode == "up":
        return up > limit
    if mode == "down":
        return down > limit
    return up > limit or down > limit


class PageHinkley:
    """Page-Hinkley test on a fading cumulative deviation from the running mean.

    Why: it reacts to a sustained shift in the mean while the forgetting factor
    ``alpha`` keeps old history from masking recent movement, and it needs no
    knowledge of the data's scale beyond ``threshold``.

    Each value updates the running mean ``m`` and two fading sums
    ``U = alpha * U + (x - m) - delta`` and ``L = alpha * L + (x - m) + delta``.
    An increase is reported when ``U - min(U)`` exceeds ``threshold``, a
    decrease when ``max(L) - L`` does; ``mode`` selects which are watched.

    Example, on river's reference stream:

    >>> import random
    >>> rng = random.Random(12345)
    >>> data = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
    >>> detect_changes(PageHinkley(), data)[0]
    1006
    """

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "both",
    ) -> None:
        self.min_instances = _check_min_instances(min_instances)
        self.delta = _check_non_negative("delta", delta)
        self.threshold = _check_positive("threshold", threshold)
        self.alpha = _check_unit_interval("alpha", alpha)
        self.mode = _check_mode(mode)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.drift_detected: bool = False
        self.n: int = 0
        self.mean: float = 0.0
        self._sum_increase = 0.0
        self._sum_decrease = 0.0
        self._min_increase = math.inf
        self._max_decrease = -math.inf

    def update(self, x: float) -> None:
        """Feed one value; sets ``drift_detected``."""
        if self.drift_detected:
            self.reset()

        self.n += 1
        self.mean += (x - self.mean) / self.n
        dev = x - self.mean

        self._sum_increase = self.alpha * self._sum_increase + dev - self.delta
        self._sum_decrease = self.alpha * self._sum_decrease + dev + self.delta
        self._min_increase = min(self._min_increase, self._sum_increase)
        self._max_decrease = max(self._max_decrease, self._sum_decrease)

        if self.n >= self.min_instances:
            self.drift_detected = _exceeds(
                self.mode,
                self._sum_increase - self._min_increase,
                self._max_decrease - self._sum_decrease,
                self.threshold,
            )


class CUSUM:
    """Tabular CUSUM chart against a reference frozen after the warm-up.

    Why: accumulating only the part of each deviation beyond a slack ``k``
    means a single outlier cannot raise an alarm, only a run of values on the
    same side; freezing the reference stops it from chasing the very shift it
    should detect. ``slack`` and ``threshold`` are multiples of the warm-up
    standard deviation, so the detector is scale-free.

    The mean and sample standard deviation (``ddof=1``) of the first
    ``min_instances`` values (including the last of them) become the reference
    ``mu, sigma``; from that value on, with ``d = x - mu``::

        S+ = max(0, S+ + d - slack * sigma)
        S- = max(0, S- - d - slack * sigma)

    and a change is reported when the watched sum exceeds
    ``threshold * sigma``. Detection resets the reference, which is then
    re-estimated on the next ``min_instances`` values.

    Example, on river's reference stream:

    >>> import random
    >>> rng = random.Random(12345)
    >>> stable = [rng.gauss(0, 1) for _ in range(200)]
    >>> shifted = [rng.gauss(3, 1) for _ in range(200)]
    >>> detect_changes(CUSUM(), stable + shifted)
    [201, 251]
    """

    def __init__(
        self,
        min_instances: int = 30,
        slack: float = 0.5,
        threshold: float = 5.0,
        mode: str = "both",
    ) -> None:
        self.min_instances = _check_min_instances(min_instances)
        self.slack = _check_non_negative("slack", slack)
        self.threshold = _check_positive("threshold", threshold)
        self.mode = _check_mode(mode)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far, including the reference."""
        self.drift_detected: bool = False
        self.n: int = 0
        self._mean = 0.0
        self._m2 = 0.0  # Welford sum of squared deviations.
        self.reference: float | None = None
        self.sigma: float = 0.0
        self.sum_increase: float = 0.0
        self.sum_decrease: float = 0.0

    def update(self, x: float) -> None:
        """Feed one value; sets ``drift_detected``."""
        if self.drift_detected:
            self.reset()

        self.n += 1
        # Welford's running mean/variance. Only the warm-up values matter for
        # the frozen reference, but updating always keeps ``n`` honest.
        delta = x - self._mean
        self._mean += delta / self.n
        self._m2 += delta * (x - self._mean)

        if self.n < self.min_instances:
            return

        if self.reference is None:
            variance = self._m2 / (self.n - 1) if self.n > 1 else 0.0
            self.reference = self._mean
            self.sigma = math.sqrt(max(variance, 0.0))

        k = self.slack * self.sigma
        deviation = x - self.reference
        self.sum_increase = max(0.0, self.sum_increase + deviation - k)
        self.sum_decrease = max(0.0, self.sum_decrease - deviation - k)
        self.drift_detected = _exceeds(
            self.mode, self.sum_increase, self.sum_decrease, self.threshold * self.sigma
        )


class EWMA:
    """EWMA control chart: exponentially weighted mean vs the running mean.

    Why: the chart statistic ``z = alpha * x + (1 - alpha) * z`` smooths noise
    so that small persistent shifts stand out, and the exact (warm-up
    corrected) standard error of ``z`` keeps early samples from over-firing.

    ``z`` starts at the first value. The reference is the running mean of all
    values since the last reset and ``sigma`` the exponentially weighted
    standard deviation (fading factor ``alpha``). Once ``n >= min_instances``
    a change is reported when ``z`` is further from the mean than::

        threshold * sigma * sqrt(alpha / (2 - alpha) * (1 - (1 - alpha) ** (2 * n)))

    above it for ``mode="up"``, below it for ``"down"``, either for ``"both"``.

    Example, on river's reference stream:

    >>> import random
    >>> rng = random.Random(12345)
    >>> data = [rng.gauss(0, 1) if i < 1000 else rng.gauss(3, 1) for i in range(2000)]
    >>> detect_changes(EWMA(alpha=0.1, threshold=4, min_instances=50), data)
    [1010]
    """

    def __init__(
        self,
        alpha: float = 0.1,
        threshold: float = 4.0,
        min_instances: int = 30,
        mode: str = "both",
    ) -> None:
        self.alpha = _check_unit_interval("alpha", alpha)
        self.threshold = _check_positive("threshold", threshold)
        self.min_instances = _check_min_instances(min_instances)
        self.mode = _check_mode(mode)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.drift_detected: bool = False
        self.n: int = 0
        self.z: float = 0.0
        self.mean: float = 0.0
        self.limit: float = 0.0  # control limit of the last test (0.0 in warm-up)
        self._ew_mean = 0.0
        self._ew_sq_mean = 0.0

    @property
    def variance(self) -> float:
        """Exponentially weighted variance, ``E[x^2] - E[x]^2`` (never negative)."""
        return max(self._ew_sq_mean - self._ew_mean**2, 0.0)

    def update(self, x: float) -> None:
        """Feed one value; sets ``drift_detected``."""
        if self.drift_detected:
            self.reset()

        self.n += 1
        a = self.alpha
        if self.n == 1:
            # Seed every exponentially weighted statistic with the first value.
            # (river's EWMean re-seeds whenever its mean is exactly 0.0; seeding
            # on the first value only is the intended behaviour and coincides
            # with river's except on streams whose weighted mean hits 0.0.)
            self.z = x
            self._ew_mean = x
            self._ew_sq_mean = x * x
        else:
            # ``s += a * (x - s)`` is ``s = a * x + (1 - a) * s`` rearranged so
            # that a constant stream leaves every statistic exactly unchanged;
            # the textbook form drifts by rounding error, which a zero-variance
            # (zero-width) control limit would report as a change.
            self.z += a * (x - self.z)
            self._ew_mean += a * (x - self._ew_mean)
            self._ew_sq_mean += a * (x * x - self._ew_sq_mean)
        self.mean += (x - self.mean) / self.n

        if self.n < self.min_instances:
            self.drift_detected = False
            return

        factor = (a / (2 - a)) * (1 - (1 - a) ** (2 * self.n))
        self.limit = self.threshold * math.sqrt(self.variance * factor)
        dev = self.z - self.mean
        self.drift_detected = _exceeds(self.mode, dev, -dev, self.limit)


def detect_changes(detector: DriftDetector, values: Iterable[float]) -> list[int]:
    """Feed ``values`` to ``detector``; return the indices where it detected drift.

    The detector is used as is (not reset first), so state carries over
    between calls.

    >>> detect_changes(CUSUM(min_instances=5), [0.0, 1.0] * 10 + [10.0] * 3)
    [20]
    """
    indices = []
    for i, x in enumerate(values):
        detector.update(x)
        if detector.drift_detected:
            indices.append(i)
    return indices
