"""`mdrbench sweep`: wall time of an 8-run sweep at --jobs 1 and 2, and seconds per epoch of
each model and each framework (run by hand; figures go to docs/sweep.md).

    python benchmarks/sweep_scaling.py [--work DIR] [--parts scaling,costs] [--epochs 3]
        [--size small]

Data: `synthesize("taobao", size=--size)` + `build_dataset("taobao-10")` (the Python API of
`mdrbench synth` + `mdrbench build`, as `mdrbench quickstart` does): synthetic taobao-10 of
the quickstart's size, kept in WORK/data and reused.

1. scaling: the same 8 runs (models mlp,wdl x methods alternate,joint x seeds 0,1, at most
   --epochs epochs, the paper's model sizes) as one `mdrbench sweep` process each time,
   into a fresh folder: --jobs 1 and --jobs 2 (one torch thread per run, the default), and
   --jobs 1 with two threads. Wall time of the whole command, and the load
   average before and, sampled every 5 s, during each (the machine may be shared: the
   figures are only comparable under the same load). Checks that all three gave the same
   numbers (seeded, deterministic on CPU).
2. costs: one epoch (`--epochs 1`, one thread, --jobs 1) of every model with `alternate`
   and of MLP with every framework, through `mdrbench sweep`; prints each run's
   train_seconds (training + the epoch's validation) from its result file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

GRID = ["--model", "mlp,wdl", "--method", "alternate,joint", "--seeds", "0,1"]


def dataset(work: Path, size: str) -> Path:
    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.synth import synthesize

    folder = work / "data" / "taobao-10"
    if not (folder / "manifest.json").is_file():
        synthesize("taobao", work / "raw", n_domains=10, size=size, seed=0)
        build_dataset("taobao-10", raw_dir=work / "raw", out=work / "data", seed=0, force=True)
    return folder


def timed_sweep(args: list[str]) -> tuple[float, list[float]]:
    """Wall seconds of `mdrbench sweep ARGS` and the 1-minute load averages sampled every 5 s."""
    loads = [os.getloadavg()[0]]
    done = threading.Event()

    def sample():
        while not done.wait(5.0):
            loads.append(os.getloadavg()[0])

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mdrbench", "sweep", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - t0
    done.set()
    return wall, loads


def results(out: Path) -> dict:
    got = {}
    for f in sorted(out.rglob("*.json")):
        r = json.loads(f.read_text())
        got[f.name] = (r["metrics"], r["best_epoch"])
    return got


def scaling(data: Path, work: Path, epochs: int, which: list[str]) -> None:
    print(f"cores: {len(os.sched_getaffinity(0))}; data {data}")
    rows = []
    ref = None
    settings = {
        "jobs1": ("--jobs 1", ["--jobs", "1"]),
        "jobs2": ("--jobs 2", ["--jobs", "2"]),
        "threads2": ("--jobs 1 --set threads=2", ["--jobs", "1", "--set", "threads=2"]),
    }
    for label, extra in (settings[k] for k in which):
        out = work / "scaling" / label.replace(" ", "").replace("--", "_")
        shutil.rmtree(out, ignore_errors=True)
        args = ["--dataset", str(data), *GRID, "--epochs", str(epochs), "--out", str(out), *extra]
        wall, loads = timed_sweep(args)
        got = results(out)
        assert len(got) == 8, f"{label}: {len(got)} results"
        same = ref is None or got == ref
        ref = ref or got
        rows.append((label, wall, loads, same))
        print(f"{label}: {wall:.1f} s; load {loads[0]:.2f} before, "
              f"{min(loads):.2f}-{max(loads):.2f} during; same numbers: {same}", flush=True)  # fmt: skip
    print("\n| sweep of 8 runs | wall s | x --jobs 1 | load average before / during |")
    print("|---|---:|---:|---|")
    for label, wall, loads, _ in rows:
        print(f"| `{label}` | {wall:.1f} | {rows[0][1] / wall:.2f} | {loads[0]:.2f} / "
              f"{min(loads):.2f}-{max(loads):.2f} |")  # fmt: skip


def costs(data: Path, work: Path) -> None:
    from mdrbench.frameworks import FRAMEWORKS
    from mdrbench.models import MODELS

    for what, models, methods in (
        ("model", ",".join(MODELS.names()), "alternate"),
        ("method", "mlp", ",".join(FRAMEWORKS.names())),
    ):
        out = work / "costs"
        args = ["--dataset", str(data), "--model", models, "--method", methods, "--seeds", "0",
                "--epochs", "1", "--set", "threads=1", "--jobs", "1", "--out", str(out)]  # fmt: skip
        wall, loads = timed_sweep(args)
        print(f"\n{what}s, one epoch each (1 thread): sweep {wall:.0f} s, load "
              f"{loads[0]:.2f} before, {min(loads):.2f}-{max(loads):.2f} during")  # fmt: skip
        print(f"| {what} | train_seconds (1 epoch + its validation) | samples/s |")
        print("|---|---:|---:|")
        for name in (models if what == "model" else methods).split(","):
            m, f = (name, "alternate") if what == "model" else ("mlp", name)
            r = json.loads((out / f"taobao-10__{m}__{f}__seed0.json").read_text())
            print(f"| {name} | {r['train_seconds']:.2f} | {r['samples_per_second']:,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mdrbench-sweep-bench"))
    ap.add_argument("--parts", default="scaling,costs")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", default="small")
    ap.add_argument("--settings", default="jobs1,jobs2,threads2", help="scaling's sweeps")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    data = dataset(a.work, a.size)
    parts = a.parts.split(",")
    if "scaling" in parts:
        scaling(data, a.work, a.epochs, a.settings.split(","))
    if "costs" in parts:
        costs(data, a.work)


if __name__ == "__main__":
    main()
