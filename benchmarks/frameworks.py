"""Learning frameworks: quality, cost and scale (run by hand; figures go to docs/results.md).

    python benchmarks/frameworks.py [--work DIR] [--parts quality,cost,scale]
        [--seeds 0,1,2] [--epochs 20] [--size small] [--threads 1]

1. quality: every registered framework with MLP (the paper's sizes) on a synthetic
   taobao-30 (`synthesize("taobao", size=--size)` then `build_dataset("taobao-30")`, the
   Python API of `mdrbench synth` + `mdrbench build`), one run per seed, early stopping on
   the average validation AUC (patience 3) with at most --epochs epochs per stage. Table:
   average test AUC mean ± std over seeds and RANK, from mdrbench.results (the functions
   `mdrbench table` and the leaderboard use). Result JSONs are kept under WORK/results
   and reused by a rerun, so an interrupted run resumes.
2. cost: one training epoch of each framework on the same data, --rounds rounds with the
   frameworks interleaved (other jobs share the cores: the minimum over rounds is the
   figure), relative to `alternate`, next to the paper's complexity and the passes over
   the training rows each epoch makes (rows processed / training rows).
3. scale: one MAMDR epoch (k = 5, the paper's MLP) on synthetic data with 10, 100 and
   1,000 domains of the same size each, each in its own process: epoch time (it must grow
   linearly in the number of domains n) and peak RSS over the process's RSS before
   training (it must grow linearly in n x the specific parameters: MAMDR keeps theta_d
   per domain, and the trainer keeps a copy of the best epoch's state).

Everything runs with torch threads = --threads (default 1: on 2 shared cores two threads
were sometimes 20x slower than one). Nothing here is tuned toward the paper's numbers:
each framework runs with its defaults (the paper's hyperparameters where it gives them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/bench_common.py
from bench_common import status_mib  # noqa: E402

ORDER = [
    "alternate",
    "finetune",
    "joint",
    "separate",
    "weighted_loss",
    "pcgrad",
    "maml",
    "reptile",
    "mldg",
    "dn",
    "dr",
    "mamdr",
]
# What the paper states (Sec. IV-C/D, V-G); "-" where it states nothing.
PAPER_COMPLEXITY = {
    "pcgrad": "O(n^2)",
    "dn": "O(n)",
    "dr": "O((k+1) n)",
    "mamdr": "O((k+1) n)",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def taobao30(work: Path, size: str) -> Path:
    """Synthetic taobao-30 (cached in WORK)."""
    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.synth import synthesize

    out = work / f"data-{size}"
    folder = out / "taobao-30"
    if (folder / "manifest.json").is_file():
        return folder
    raw = synthesize("taobao", work / f"raw-{size}", size=size, seed=0)
    return build_dataset("taobao-30", raw_dir=raw, out=out)


def frameworks(selected: str | None) -> list[str]:
    from mdrbench.frameworks import FRAMEWORKS

    names = [n for n in ORDER if n in FRAMEWORKS] + [n for n in FRAMEWORKS if n not in ORDER]
    if selected:
        want = [s.strip() for s in selected.split(",") if s.strip()]
        unknown = [w for w in want if w not in FRAMEWORKS]
        if unknown:
            raise SystemExit(f"unknown framework(s) {unknown}; registered: {names}")
        names = [n for n in names if n in want]
    return names


# ----------------------------------------------------------------------------- 1. quality


def part_quality(args, work: Path) -> str:
    from mdrbench.data import load_dataset
    from mdrbench.results import aggregate, load_results, render, table_v
    from mdrbench.trainer import result_filename, train

    folder = taobao30(work, args.size)
    data = load_dataset(folder)
    label = args.label
    res_dir = work / (f"results-{label}" if label else "results")
    res_dir.mkdir(parents=True, exist_ok=True)
    names = frameworks(args.frameworks)
    shown = {n: f"{n}[{label}]" if label else n for n in names}  # method as the table shows it
    overrides = {"epochs": args.epochs, "threads": args.threads, **args.sets}
    for seed in args.seeds:
        for name in names:
            stem = f"{data.info.name}__mlp__{shown[name]}__seed{seed}"
            if (res_dir / f"{stem}.json").is_file():
                continue
            t0 = time.perf_counter()
            res = train(data, "mlp", name, seed=seed, overrides=overrides)
            rec = res.record
            rec["method"] = shown[name]
            assert result_filename(rec) == f"{stem}.json"
            (res_dir / f"{stem}.history.json").write_text(json.dumps(res.history, indent=1))
            (res_dir / f"{stem}.json").write_text(json.dumps(rec, indent=1))
            log(
                f"{shown[name]:14s} seed {seed}: test auc "
                f"{rec['metrics']['test']['auc_mean']:.4f} best epoch {rec['best_epoch']} / "
                f"{len(res.history)} epochs, {time.perf_counter() - t0:.0f}s"
            )
    results = [r for r in load_results(res_dir) if r["method"] in shown.values()]
    # a framework with more than one stage (the finetune stage): its first stage's best
    # state too, as "<method> (no finetune)" (the same run: the stage before finetuning)
    before = [
        {**r, "method": f"{r['method']} (no finetune)", "metrics": r["stages"][0]["metrics"]}
        for r in results
        if len(r.get("stages", [])) > 1 and r["stages"][-1]["name"] == "finetune"
        and r["method"] != "finetune"
    ]
    rows = aggregate(results + before, "test")
    order = {shown[n]: i for i, n in enumerate(names)}
    rows.sort(key=lambda r: (order[r["method"].split(" ")[0]], r["method"]))
    table = render(table_v(rows), "md")

    # epochs: best epoch per seed and epochs run (did the cap end training?)
    lines = [
        "| Method | best epoch per seed | epochs run per seed (per stage) | stopped by | "
        "train rows / epoch |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        best, ran, rows_ep, stops = [], [], [], []
        for seed in args.seeds:
            stem = f"{data.info.name}__mlp__{shown[name]}__seed{seed}"
            rec = json.loads((res_dir / f"{stem}.json").read_text())
            hist = json.loads((res_dir / f"{stem}.history.json").read_text())
            best.append(str(rec["best_epoch"]))
            stages = rec.get("stages", [])
            ran.append(
                f"{len(hist)} ({' + '.join(str(st['epochs']) for st in stages)})"
                if len(stages) > 1
                else str(len(hist))
            )
            stops.append("/".join(st["stopped_by"] for st in stages) or "?")
            rows_ep.append(hist[0]["samples"])
        lines.append(
            f"| {shown[name]} | {', '.join(best)} | {', '.join(ran)} | "
            f"{', '.join(dict.fromkeys(stops))} | {rows_ep[0] / data.train.offsets[-1]:.1f}x |"
        )
    head = (
        f"Dataset: synthetic taobao-30 (`synth taobao --size {args.size}`, seed 0; "
        f"{data.train.offsets[-1]:,} training rows, manifest sha256 "
        f"{data.info.manifest_sha256[:12]}), model mlp, seeds {args.seeds}, "
        + (f"at most {args.epochs} epochs per stage" if args.epochs else "no epoch cap")
        + ", patience 3, the paper profile (baselines/paper_configs.json)"
        + (f"; overrides {args.sets}" if args.sets else "")
        + ".\n"
    )
    return head + "\n" + table + "\n\n" + "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- 2. cost


def part_cost(args, work: Path) -> str:
    from mdrbench.data import load_dataset
    from mdrbench.trainer import train

    data = load_dataset(taobao30(work, args.size))
    n_train = data.train.offsets[-1]
    names = frameworks(args.frameworks)
    if "alternate" not in names:
        names = ["alternate", *names]
    times: dict[tuple[str, str], list[float]] = {}
    rows: dict[tuple[str, str], int] = {}
    for r in range(args.rounds):
        for name in names:
            res = train(data, "mlp", name, overrides={"epochs": 1, "threads": args.threads})
            for h in res.history:
                key = (name, h["stage"])
                times.setdefault(key, []).append(h["seconds"])
                rows[key] = h["samples"]
            log(f"cost round {r + 1}: {name} {[round(h['seconds'], 2) for h in res.history]}")
    base = min(times[("alternate", "train")])
    lines = [
        f"One epoch on synthetic taobao-30 ({n_train:,} training rows), mlp, "
        f"threads {args.threads}; minimum over {args.rounds} interleaved rounds.",
        "",
        "| Framework (stage) | paper's complexity | passes over the training rows | "
        "epoch seconds | x alternate |",
        "|---|---|---|---|---|",
    ]
    for (name, stage), ts in times.items():
        label = name if stage in ("train", name) else f"{name} ({stage} stage)"
        lines.append(
            f"| {label} | {PAPER_COMPLEXITY.get(name, '-')} | {rows[(name, stage)] / n_train:.1f} | "
            f"{min(ts):.2f} | {min(ts) / base:.2f} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- 3. scale


def scale_data(n_domains: int, rows: int, n_users: int = 2000, n_items: int = 1000, seed: int = 0):
    """An in-memory built dataset (the docs/format.md columns) with n_domains domains of
    `rows` training rows each (and rows // 3 validation and test rows), planted labels."""
    import numpy as np
    import torch

    from mdrbench.data import DatasetInfo, MDRData, Split

    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(n_users, 4)), rng.normal(size=(n_items, 4))
    sizes = {"train": rows, "val": rows // 3, "test": rows // 3}
    per = sum(sizes.values())
    users = rng.integers(0, n_users, (n_domains, per))
    items = rng.integers(0, n_items, (n_domains, per))
    shift = rng.normal(size=(n_domains, 1, 4))
    score = (u[users] * (v[items] + 0.5 * shift)).sum(-1) + rng.normal(
        scale=0.5, size=(n_domains, per)
    )
    label = (score > np.quantile(score, 0.7, axis=1, keepdims=True)).astype(np.float32)
    splits, at = {}, 0
    for name, k in sizes.items():
        sl = slice(at, at + k)
        at += k
        dom = np.repeat(np.arange(n_domains), k)
        splits[name] = Split(
            torch.from_numpy(users[:, sl].reshape(-1).copy()),
            torch.from_numpy(items[:, sl].reshape(-1).copy()),
            torch.from_numpy(dom),
            torch.from_numpy(label[:, sl].reshape(-1).copy()),
            [d * k for d in range(n_domains + 1)],
        )
    names = tuple(f"d{d}" for d in range(n_domains))
    info = DatasetInfo(f"scale-{n_domains}", "amazon", n_users, n_items, n_domains, names)
    return MDRData(info=info, splits=splits)


def scale_one(n: int, rows: int, threads: int, method: str) -> dict:
    """One MAMDR epoch on n domains, in this (fresh) process."""
    import torch

    from mdrbench.frameworks import specific_param_names
    from mdrbench.models import MODELS
    from mdrbench.trainer import resolve_config, train

    torch.set_num_threads(threads)
    data = scale_data(n, rows)
    run = resolve_config("mlp", method, {"epochs": 1, "threads": threads})
    torch.manual_seed(0)
    net = MODELS.get("mlp")(data.info, run.model)
    spec = sum(dict(net.named_parameters())[p].numel() for p in specific_param_names(net, "dense"))
    before = status_mib("VmRSS")
    t0 = time.perf_counter()
    res = train(data, net, method, run=run)
    wall = time.perf_counter() - t0
    peak = status_mib("VmHWM")
    h = res.history[0]
    return {
        "n_domains": n,
        "method": method,
        "train_rows": data.train.offsets[-1],
        "epoch_seconds": h["seconds"],
        "samples": h["samples"],
        "run_seconds": wall,
        "rss_before_mib": before,
        "peak_rss_mib": peak,
        "specific_params": spec,
        "n_parameters": res.record["n_parameters"],
    }


def part_scale(args, work: Path) -> str:
    out = []
    for n in args.scale_domains:
        cmd = [
            sys.executable,
            __file__,
            "--scale-one",
            str(n),
            "--scale-rows",
            str(args.scale_rows),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append(r)
        log(f"scale n={n}: {r}")
    (work / "scale.json").write_text(json.dumps(out, indent=1))
    first = out[0]
    lines = [
        f"MAMDR (k = 5), mlp (paper sizes: {first['specific_params']:,} specific parameters "
        f"per domain = the dense ones), {args.scale_rows} training rows per domain, one "
        f"epoch, threads {args.threads}; each n in its own process.",
        "",
        "| domains n | training rows | epoch s | ms per domain | rows / epoch | "
        "peak RSS MiB | over start MiB | theta_d MiB (n x specific x 4 B) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in out:
        offsets = r["n_domains"] * r["specific_params"] * 4 / 2**20
        lines.append(
            f"| {r['n_domains']:,} | {r['train_rows']:,} | {r['epoch_seconds']:.2f} | "
            f"{1000 * r['epoch_seconds'] / r['n_domains']:.1f} | {r['samples']:,} | "
            f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] - r['rss_before_mib']:.0f} | "
            f"{offsets:.0f} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("bench-frameworks"))
    ap.add_argument("--parts", default="quality,cost,scale")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--epochs", type=int, default=0, help="most epochs per stage (0: no cap, early stopping)"
    )
    ap.add_argument("--size", default="small", help="synth taobao size preset or positives")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frameworks", default=None, help="comma list (default: all registered)")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="quality: hyperparameter override for every framework (repeatable)",
    )
    ap.add_argument("--label", default="", help="quality: tag for a variant run (own results)")
    ap.add_argument("--rounds", type=int, default=3, help="cost: interleaved rounds")
    ap.add_argument("--scale-domains", default="10,100,1000")
    ap.add_argument("--scale-rows", type=int, default=120)
    ap.add_argument("--scale-one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--scale-method", default="mamdr", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scale_one is not None:
        print(
            json.dumps(scale_one(args.scale_one, args.scale_rows, args.threads, args.scale_method))
        )
        return
    args.sets = dict(x.split("=", 1) for x in args.sets)
    if args.label and not all(c.isalnum() or c in "=._-" for c in args.label):
        raise SystemExit("--label: letters, digits and = . _ - only")
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.scale_domains = [int(s) for s in args.scale_domains.split(",") if s.strip()]
    size = args.size
    args.size = int(size) if size.isdigit() else size
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    report = []
    for part in parts:
        t0 = time.perf_counter()
        fn = {"quality": part_quality, "cost": part_cost, "scale": part_scale}[part]
        text = fn(args, work)
        report.append(f"## {part}\n\n{text}\n({time.perf_counter() - t0:.0f} s)\n")
        (work / f"{part}.md").write_text(report[-1])
        print(report[-1], flush=True)


if __name__ == "__main__":
    main()
