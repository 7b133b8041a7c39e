"""The dataset check eval runs before training (`mdrbench.builders.manifest.check_dataset`:
sizes and sha256 of every file against the manifest, no unlisted file), timed at Amazon-6
scale: cold (every file hashed, the first check of a build) and warm (files unchanged since
their last check: stat only, the cached fast path every later run takes).

    python benchmarks/check_speed.py --work /tmp/mdrbench-bench

The dataset is train_scale.py's synthetic one with Amazon-6's id space (reused when built).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_scale import AMAZON6_ITEMS, AMAZON6_TRAIN_ROWS, AMAZON6_USERS, scale_dataset  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mdrbench-bench"))
    ap.add_argument("--train-rows", type=int, default=AMAZON6_TRAIN_ROWS, help="Table I")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    folder = scale_dataset(args.work, AMAZON6_USERS, AMAZON6_ITEMS, args.train_rows, 0)
    os.environ["MDRBENCH_CACHE"] = str(args.work / "check-cache")
    from mdrbench.builders.manifest import _cache_file, check_dataset, load_manifest

    _cache_file().unlink(missing_ok=True)
    files = load_manifest(folder)["files"]
    size = sum(f["bytes"] for f in files.values())
    rows = sum(f.get("rows", 0) for f in files.values())
    t0 = time.perf_counter()
    check_dataset(folder)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        check_dataset(folder)
        warm.append(time.perf_counter() - t0)
    print(f"{folder}: {len(files)} files, {size / 2**20:.1f} MiB, {rows:,} rows")
    print(f"cold (hash every file): {cold:.3f} s")
    print(f"warm (cached, stat only): best {min(warm) * 1000:.1f} ms, "
          f"worst {max(warm) * 1000:.1f} ms over {args.repeat}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
