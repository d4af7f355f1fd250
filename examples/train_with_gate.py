"""A training script that asks feast-parity before it learns, then records what it read.

    python examples/train_with_gate.py --repo feast_repo

1. ``training_gate`` refuses features with an open ``fail`` parity finding, a view over its
   freshness SLO, or a definition changed since the last clean parity check.
2. ``get_historical_features(...).to_df()`` goes through ``ParityProvider``, which records the
   training dataset (refs, rows, fingerprints, a histogram profile) when the frame is built.
3. The dataset id is what a model registry entry should carry.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
from feast import FeatureStore

from feast_parity import TrainingGateError, training_gate

FEATURES = [
    "user_engagement:click_through_rate",
    "user_engagement:watch_minutes",
    "user_engagement:country",
    "video_stats:popularity",
    "video_stats:category",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default="feast_repo")
    parser.add_argument("--warn-only", action="store_true", help="warn instead of refusing")
    args = parser.parse_args()

    store = FeatureStore(repo_path=args.repo)
    try:
        records = training_gate(store, FEATURES, on_fail="warn" if args.warn_only else "raise")
    except TrainingGateError as refused:
        print(refused, file=sys.stderr)
        return 1
    for record in records:
        trained = record["last_trained"]
        print(
            f"ok  {record['feature']:40} definition {record['definition_fingerprint']}"
            f"  last trained {trained['created_at'] if trained else 'never'}"
        )

    rng = np.random.default_rng(0)
    now = datetime.now(timezone.utc)
    labels = pd.DataFrame(
        {
            "user_id": rng.integers(1001, 2001, size=500),
            "video_id": rng.integers(50001, 50301, size=500),
            "event_timestamp": [now - timedelta(hours=int(h)) for h in rng.integers(1, 48, 500)],
            "clicked": rng.integers(0, 2, size=500),
        }
    )
    job = store.get_historical_features(entity_df=labels, features=FEATURES)
    training_frame = job.to_df()
    print(f"training on {len(training_frame)} rows; dataset id {job.parity_dataset_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
