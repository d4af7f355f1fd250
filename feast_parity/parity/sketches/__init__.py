"""Mergeable, fixed-size per-feature sketches for parity and drift statistics.

Why sketches: the parity job sees feature values in batches (online reads,
offline retrievals, streaming windows).  Keeping every value would make memory
grow with the number of rows; a histogram over *fixed* bins is tiny, can be
updated batch by batch, merged across workers, and stored as JSON next to a
training reference profile.  PSI and an approximate KS statistic are then
computed from the bin counts alone (see :mod:`feast_parity.parity.stats`).

Conventions shared by both sketches:

* ``counts`` holds one ``int64`` count per bin; missing values never land in
  a bin.
* ``null_count`` counts *nulls*: ``None`` in object input, Arrow nulls, and
  entries flagged by the optional ``mask`` argument (``True`` = null).
* ``nan_count`` counts float ``NaN`` values that were not already null.
* ``total`` is the number of binned (non-missing) values and
  ``n_rows = total + null_count + nan_count``.
* ``merge`` returns a new sketch and leaves both inputs untouched.

This module only depends on numpy and pyarrow.
"""

from feast_parity.parity.sketches.categorical import CategoricalHistogram
from feast_parity.parity.sketches.common import valid_numeric
from feast_parity.parity.sketches.numeric import NumericHistogram, quantile_edges

__all__ = ["CategoricalHistogram", "NumericHistogram", "quantile_edges", "valid_numeric"]
