"""Build speed and memory (run by hand; figures go to docs/benchmarks.md).

    python benchmarks/build_speed.py [--reviews 1000000] [--work DIR] [--baseline-reviews 30000]

1. Synthesizes Amazon-6-format raw files of N reviews (`mdrbench synth amazon --domains 6`).
2. Times `mdrbench build amazon-6` as its own process: wall time and peak RSS.
3. The floor, in the same run: a process that reads the same raw files with polars
   (`pl.read_ndjson`) and writes one Parquet of as many rows as the build wrote.
4. The authors' sampling, written straightforwardly with pandas (groupby user, then for each
   user `[pid for pid in pool if pid not in user_items]` and `random.sample`), single
   process, on a subset small enough to finish, against mdrbench's vectorized sampler on
   the same subset.
Goals: build <= 3x the floor, peak memory <= 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = r"""
import sys, polars as pl, glob, numpy as np
raw, out, n_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
schema = {"reviewerID": pl.String, "asin": pl.String, "overall": pl.Float64}
df = pl.concat([pl.read_ndjson(p, schema=schema) for p in sorted(glob.glob(raw + "/*_5.json.gz"))])
df = df.select(pl.col("reviewerID").cast(pl.Categorical).to_physical().cast(pl.Int64).alias("user_id"),
               pl.col("asin").cast(pl.Categorical).to_physical().cast(pl.Int64).alias("item_id"))
idx = np.arange(n_rows) % df.height
df.select(pl.all().gather(idx)).write_parquet(out)
"""


def run_measured(cmd: list[str], env=None) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, rusage.ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def authors_sampling_pandas(df, ratio: float, seed: int):
    """Straightforward per-user Python, as the authors' split.py does (one process)."""
    import pandas as pd

    random.seed(seed)
    pool = df["pid"].unique().tolist()
    rows = []
    for uid, g in df.groupby("uid"):
        user_items = set(g["pid"])
        cand = [pid for pid in pool if pid not in user_items]
        n_neg = min(int(len(g) / ratio), len(cand))
        for pid in random.sample(cand, n_neg):
            rows.append((uid, pid, 0))
    return pd.DataFrame(rows, columns=["uid", "pid", "label"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reviews", type=int, default=1_000_000)
    ap.add_argument("--baseline-reviews", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mdrbench-bench-"))
    raw, out = work / "raw", work / "out"
    mdr = [sys.executable, "-m", "mdrbench.cli"]

    if not list(raw.glob("*_5.json.gz")):
        t = time.perf_counter()
        subprocess.run([*mdr, "synth", "amazon", "--out", str(raw), "--domains", "6",
                        "--size", str(args.reviews)], check=True)  # fmt: skip
        print(f"synth: {time.perf_counter() - t:.1f} s")
    n_lines = 0
    import gzip

    for p in raw.glob("*_5.json.gz"):
        with gzip.open(p, "rb") as f:
            n_lines += sum(1 for _ in f)
    raw_mb = sum(p.stat().st_size for p in raw.glob("*_5.json.gz")) / 2**20

    build_wall, build_rss = run_measured(
        [
            *mdr,
            "build",
            "amazon-6",
            "--raw-dir",
            str(raw),
            "--out",
            str(out),
            "--offline",
            "--force",
            "-q",
        ]
    )
    manifest = json.loads((out / "amazon-6" / "manifest.json").read_text())
    n_rows = manifest["totals"]["n_samples"]
    floor_wall, floor_rss = run_measured(
        [sys.executable, "-c", FLOOR, str(raw), str(work / "floor.parquet"), str(n_rows)]
    )

    # Authors' per-user sampling vs ours, one domain-sized subset of the same raw data.
    import numpy as np
    import polars as pl

    from mdrbench.builders.process import sample_negatives

    schema = {"reviewerID": pl.String, "asin": pl.String}
    largest = max(raw.glob("*_5.json.gz"), key=lambda p: p.stat().st_size)
    sub = pl.read_ndjson(largest, schema=schema).head(args.baseline_reviews)
    sub = sub.select(
        pl.col("reviewerID").cast(pl.Categorical).to_physical().cast(pl.Int64).alias("uid"),
        pl.col("asin").cast(pl.Categorical).to_physical().cast(pl.Int64).alias("pid"),
    )
    t = time.perf_counter()
    neg_pd = authors_sampling_pandas(sub.to_pandas(), 0.22, 0)
    pandas_s = time.perf_counter() - t
    t = time.perf_counter()
    nu, _ = sample_negatives(
        sub["uid"].to_numpy(), sub["pid"].to_numpy(), 0.22, np.random.default_rng(0)
    )
    ours_s = time.perf_counter() - t
    assert len(nu) == len(neg_pd), (len(nu), len(neg_pd))  # same rule, same counts

    report = {
        "reviews": n_lines,
        "raw_MiB": round(raw_mb, 1),
        "samples_written": n_rows,
        "build_s": round(build_wall, 2),
        "build_peak_GiB": round(build_rss, 2),
        "floor_s": round(floor_wall, 2),
        "floor_peak_GiB": round(floor_rss, 2),
        "build_over_floor": round(build_wall / floor_wall, 2),
        "baseline_subset_reviews": sub.height,
        "baseline_negatives": len(neg_pd),
        "pandas_per_user_s": round(pandas_s, 2),
        "mdrbench_vectorized_s": round(ours_s, 4),
        "speedup": round(pandas_s / ours_s, 1),
        "polars_threads": os.environ.get("POLARS_MAX_THREADS", "default"),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
