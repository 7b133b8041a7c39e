"""AUC of 10M rows: mdrbench's exact AUC (mdrbench/evaluate.py) vs scikit-learn's
`roc_auc_score`, same values, wall time of each (best of --repeat). Run by hand:

    python benchmarks/auc_speed.py --rows 10000000 --repeat 3

Results in docs/benchmarks.md ("AUC: ours vs scikit-learn").
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def best_time(fn, repeat: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return min(times), value


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from mdrbench.evaluate import auc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    labels = (rng.random(args.rows) < 0.25).astype(np.int8)
    for kind in ("float32 scores (ties)", "float64 scores"):
        scores = rng.random(args.rows)
        scores = 0.3 * labels + scores
        if kind.startswith("float32"):
            scores = scores.astype(np.float32)  # a model's probabilities: many ties
        t_ours, a_ours = best_time(lambda s=scores: auc(labels, s), args.repeat)
        t_sk, a_sk = best_time(lambda s=scores: roc_auc_score(labels, s), args.repeat)
        print(
            f"{args.rows:,} rows, {kind}: mdrbench {t_ours:.2f} s, sklearn {t_sk:.2f} s "
            f"(x{t_sk / t_ours:.2f}); |diff| {abs(a_ours - a_sk):.1e}"
        )


if __name__ == "__main__":
    main()
