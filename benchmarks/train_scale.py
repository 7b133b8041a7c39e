"""Amazon-scale training on CPU: mdrbench's MLP with `alternate` and `mamdr` against
DeepCTR-Torch 0.3.0, on one synthetic dataset with Amazon-6's id space (run by hand, not a
test; figures in docs/benchmarks.md).

Data: a dataset built by the builder's own code (negatives per CTR ratio, the authors' split,
Parquet, manifest), from positives generated here with Amazon-6's id space: 445,789 users
and 172,653 items over Amazon-6's 6 categories, with domain sizes in Table II's proportions
and its CTR ratios; every user and item appears. Items belong to one category and are drawn
with a Zipf-like popularity, users have a home category and a Zipf-like activity. It is
sized for throughput only (about 2.1M training rows by default) and has no planted
preference structure: its AUCs mean nothing. It is cached under `--work`.

Systems, each in its own fresh process (so its peak memory, VmHWM, is its own), or with
`--in-process` one after the other in this process (the same process and moment for
all: on a machine other jobs share, the fairest comparison of speed; no per-system peak
memory then); `--rounds N` runs the list N times over and reports each system's median:

- `deepctr`: DeepCTR-Torch WDL with no linear features and no L2 (= the MLP), dense Adam
  over the whole tables, `fit()` on a seeded random subset of `--deepctr-batches` batches
  (at ~1,700 samples/s a full epoch would take an hour); samples/s of that fit;
- `deepctr-paper`: the same with DeepCTR's L2 on the tables (`l2_reg_embedding` 1e-5,
  its default and the authors'), as the paper profile trains: DeepCTR-Torch adds
  lambda * sum(w^2) of each whole table to the loss at every step;
- `dense`: mdrbench `alternate` with `sparse_embeddings=false` (dense Adam), on such a
  subset too: the effect of sparse updates on speed at this scale;
- `paper`: mdrbench `alternate` under the paper profile's optimisation (dense Adam over
  whole tables and `emb_l2` 1e-5: the L2 fused into Adam as weight decay), on such a
  subset; compared with `deepctr-paper` (issue 19's goal: at least 3x);
- `alternate`: mdrbench `alternate`, one full epoch through `mdrbench.trainer.train`
  (sparse embedding updates: SparseAdam on tables, Adam on dense layers);
- `mamdr`: mdrbench `mamdr` with k = 3 (the paper's for Amazon-6), one full epoch;
- any other framework by name (`dn`, `dr`, `reptile`, `maml`, `mldg`, ...), one full epoch.

A framework with the finetune stage (mamdr, dn, dr, maml, reptile by default) runs one
epoch of it too: the epoch figures are the first stage's, the peak memory covers both.
`--set NAME=VALUE` gives every system that has the option a value (e.g. MAMDR as it was
before issue 11: `--set specific_params=dense --set theta_d_init=zero --set finetune=false`).

For every framework the time in DN and in DR and the cost of the snapshots (taking,
recording copy-on-write rows, differencing, restoring) are measured by wrapping those
methods, and the embedding-table rows the snapshots copied are counted.

The MLP is the paper's (embeddings 128, hidden [256, 128, 64], dropout 0.5), batch 1024,
Adam 1e-3. Goals (issue 6): alternate >= 10x DeepCTR-Torch's samples/s; a full Amazon-6
alternate epoch (9,968,333 training rows, Table I) projected under 15 minutes; a MAMDR
epoch within (2k + 2)x an alternate epoch.

    pip install --no-deps deepctr-torch==0.3.0   # plus tqdm, scikit-learn
    python benchmarks/train_scale.py                    # torch's default threads (2 here)
    python benchmarks/train_scale.py --threads 1 --systems alternate,mamdr
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/bench_common.py
from bench_common import deepctr_fit, deepctr_mlp, status_mib, subset_train  # noqa: E402

AMAZON6_USERS = 445_789
AMAZON6_ITEMS = 172_653
AMAZON6_TRAIN_ROWS = 9_968_333  # Table I
# Table II: samples per category, in Amazon-6's domain order.
AMAZON6_SAMPLES = (1_204_340, 3_921_259, 3_025_218, 694_758, 5_382_501, 2_698_800)
# Part of the cache folder's name: bump when scale_positives or the build's rows change
# (3: spec 2.0's per-user split).
GENERATOR_VERSION = 3
SYSTEMS = ("deepctr", "dense", "alternate", "mamdr")  # the default; any framework name works
LABELS = {
    "deepctr": "DeepCTR-Torch 0.3.0 (dense Adam)",
    "deepctr-paper": "DeepCTR-Torch 0.3.0, table L2 1e-5 (dense Adam)",
    "dense": "mdrbench alternate, dense embeddings (Adam)",
    "paper": "mdrbench alternate, paper profile (dense Adam + table L2 1e-5)",
    "alternate": "mdrbench alternate (sparse embeddings)",
    "mamdr": "mdrbench mamdr, k = {k}",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the data


def _allocate(total: int, shares: np.ndarray) -> np.ndarray:
    """Integers summing to `total`, proportional to `shares` (largest remainders)."""
    raw = total * shares / shares.sum()
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(raw - out)[::-1][: total - out.sum()]] += 1
    return out


def _zipf_draws(rng: np.random.Generator, ids: np.ndarray, n: int, a: float) -> np.ndarray:
    """n draws from `ids` with weight 1 / rank^a, ranks assigned at random."""
    if n <= 0:
        return ids[:0]
    w = 1.0 / np.arange(1, ids.size + 1, dtype=np.float64) ** a
    return rng.permutation(ids)[rng.choice(ids.size, size=n, p=w / w.sum())]


def scale_positives(n_users: int, n_items: int, train_rows: int, seed: int = 0):
    """Distinct positives (user_id, item_id, domain_id) in Amazon-6's shape; every user and
    item appears. Sized so that the built dataset has about `train_rows` training rows."""
    import polars as pl

    from mdrbench.builders.specs import get_spec

    ratios = np.array([d.ctr_ratio for d in get_spec("amazon-6").domains])
    shares = np.array(AMAZON6_SAMPLES, dtype=np.float64)
    # int(n_u / r) negatives per user: users with one or two positives in a domain lose
    # most of a negative each to the truncation (measured: ~5.3% of the samples here), and
    # the per-user split gives train less than 60 % (measured: 51.4-51.7 % at the default size,
    # 53.7 % at the tests' 40,000 rows), so 52.5 % is assumed.
    samples = _allocate(int(train_rows / 0.525 / 0.947), shares)
    n_pos = np.round(samples * ratios / (1 + ratios)).astype(np.int64)
    rng = np.random.default_rng(seed)
    item_dom = rng.permutation(np.repeat(np.arange(6), _allocate(n_items, shares)))
    user_home = rng.permutation(np.repeat(np.arange(6), _allocate(n_users, shares)))
    all_users = np.arange(n_users)
    frames = []
    for d in range(6):
        items = np.flatnonzero(item_dom == d)
        users = np.flatnonzero(user_home == d)
        if n_pos[d] < max(items.size, users.size):
            raise SystemExit(
                f"--train-rows {train_rows:,} is too few for {n_users:,} users and "
                f"{n_items:,} items to all appear: raise it"
            )
        item = np.r_[items, _zipf_draws(rng, items, n_pos[d] - items.size, 0.9)]
        user = np.r_[users, _zipf_draws(rng, all_users, n_pos[d] - users.size, 0.6)]
        frames.append(
            pl.DataFrame(
                {
                    "user_id": rng.permutation(user).astype(np.int64),
                    "item_id": item.astype(np.int64),
                    "domain_id": np.full(item.size, d, np.int16),
                }
            )
        )
    pos = pl.concat(frames).unique(maintain_order=True)  # a kept copy still covers its ids
    assert pos["user_id"].n_unique() == n_users and pos["item_id"].n_unique() == n_items
    return pos


def scale_dataset(work: Path, n_users: int, n_items: int, train_rows: int, seed: int) -> Path:
    """The built dataset (cached: reused when its manifest is there)."""
    from mdrbench.builders.build import write_dataset
    from mdrbench.builders.specs import get_spec

    spec = get_spec("amazon-6")
    spec = dataclasses.replace(
        spec,
        name="amazon-6-scale",
        description="Synthetic positives with Amazon-6's id space (benchmarks/train_scale.py).",
    )
    out = work / f"scale-v{GENERATOR_VERSION}-{n_users}-{n_items}-{train_rows}-{seed}"
    folder = out / spec.name
    if (folder / "manifest.json").is_file():
        return folder
    t0 = time.perf_counter()
    pos = scale_positives(n_users, n_items, train_rows, seed)
    write_dataset(spec, list(spec.domains), [d.ctr_ratio for d in spec.domains], pos,
                  out=out, seed=seed, force=True)  # fmt: skip
    log(f"built {folder} in {time.perf_counter() - t0:.1f}s")
    return folder


# ----------------------------------------------------------------------------- one system


def _unwrap(wrapped: list[tuple]) -> None:
    """Undo `setattr(cls, name, wrapper)`s, the latest first (None: it was inherited)."""
    for cls, name, fn in reversed(wrapped):
        if fn is None:
            delattr(cls, name)
        else:
            setattr(cls, name, fn)


class _Timer:
    """Wraps methods of classes to add up their wall time (and calls)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.wrapped: list[tuple] = []

    def restore(self) -> None:
        """Put the wrapped methods back (the latest wrapped first)."""
        _unwrap(self.wrapped)
        self.wrapped = []

    def wrap(self, cls, name: str, key: str, before=None, skip=None) -> None:
        fn = getattr(cls, name)
        self.wrapped.append((cls, name, vars(cls).get(name)))

        def timed(obj, *a, **kw):
            if skip is not None and skip():  # not counted (e.g. during evaluation)
                return fn(obj, *a, **kw)
            if before is not None:
                before(obj)
            t0 = time.perf_counter()
            try:
                return fn(obj, *a, **kw)
            finally:
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0
                self.calls[key] = self.calls.get(key, 0) + 1

        setattr(cls, name, timed)


class _Phases:
    """Peak resident memory per phase of a run: methods wrapped to name the phase they run
    (innermost wins), and a thread that reads VmRSS every `interval` seconds and keeps the
    largest value seen in each phase ("other": outside every wrapped method)."""

    def __init__(self, interval: float = 0.01):
        import threading

        self.stack: list[str] = []
        self.peaks: dict[str, float] = {}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.wrapped: list[tuple] = []

    def wrap(self, cls, name: str, phase: str) -> None:
        fn = getattr(cls, name)
        self.wrapped.append((cls, name, vars(cls).get(name)))

        def named(obj, *a, **kw):
            self.stack.append(phase)
            try:
                return fn(obj, *a, **kw)
            finally:
                self.stack.pop()

        setattr(cls, name, named)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = status_mib("VmRSS")
            phase = self.stack[-1] if self.stack else "other"
            self.peaks[phase] = max(self.peaks.get(phase, 0.0), rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        _unwrap(self.wrapped)  # the methods as they were


def run_deepctr(data, batches: int, device: str, l2: float = 0.0) -> dict:
    subset_train(data, batches * 1024)
    seconds = deepctr_fit(deepctr_mlp(data.info, device, l2), data.train)
    return {"samples": len(data.train), "seconds": seconds}


# The paper profile's optimisation for the DeepCTR models (baselines/paper_configs.json)
PAPER = {"sparse_embeddings": False, "emb_l2": 1e-5}


def run_mdrbench(
    data, method: str, overrides: dict, timer: _Timer | None = None, epochs: int = 1
) -> dict:
    from mdrbench.frameworks.finetune import DomainFinetune
    from mdrbench.frameworks.mamdr import DN, MAMDR
    from mdrbench.frameworks.params import DomainOffsets
    from mdrbench.trainer import _BestStates, _Evaluator, resolve_config, train

    run = resolve_config("mlp", method, {"epochs": epochs, **overrides})
    phases = _Phases()
    for cls, name, phase in [
        (_BestStates, "save", "best state: save"),
        (_BestStates, "load", "best state: load"),
        (_Evaluator, "__call__", "evaluate"),
        (DN, "negotiate", "DN"),
        (MAMDR, "regularize", "DR"),
        (DomainOffsets, "leave", "DR/finetune: leave (theta_d update)"),
        (DomainFinetune, "__init__", "finetune: start"),
        (DomainFinetune, "train_epoch", "finetune: epoch"),
    ]:
        phases.wrap(cls, name, phase)
    with phases:
        res = train(data, "mlp", method, run=run, log=log)
    h = res.history[0]  # the first stage's epoch (a finetune stage, when on, follows it)
    out = {
        "samples": h["samples"],
        "seconds": h["seconds"],
        "run_seconds": res.record["train_seconds"],
        "test_auc": res.record["metrics"]["test"]["auc_mean"],
        "epochs": len([h for h in res.history if h["stage"] == res.history[0]["stage"]]),
        "peak_rss_by_phase_mib": dict(sorted(phases.peaks.items(), key=lambda kv: -kv[1])),
    }
    if timer is not None:
        out["parts"] = {
            k: {"seconds": v, "calls": timer.calls[k]} for k, v in sorted(timer.seconds.items())
        }
    return out


def run_one(args) -> dict:
    import torch

    from mdrbench.data import load_dataset

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from mdrbench.trainer import resolve_device

    device = str(resolve_device(args.device))
    data = load_dataset(args.data)
    train_rows = len(data.train)
    before = status_mib("VmRSS")
    over = {"device": device} | ({"threads": args.threads} if args.threads > 0 else {})
    system = args.one
    if system in ("deepctr", "deepctr-paper"):
        l2 = PAPER["emb_l2"] if system == "deepctr-paper" else 0.0
        r = run_deepctr(data, args.deepctr_batches, device, l2)
        r.update(subset=True, l2=l2)
    elif system in ("dense", "paper"):
        subset_train(data, args.dense_batches * 1024)
        paper = PAPER if system == "paper" else {"sparse_embeddings": False}
        r = run_mdrbench(data, "alternate", {**paper, **over}, None, 1)
        r.update(subset=True, l2=paper.get("emb_l2", 0.0))
    else:  # a learning framework, one epoch; its snapshots timed and their rows counted
        from mdrbench.frameworks import FRAMEWORKS, Framework
        from mdrbench.frameworks.mamdr import DN, MAMDR
        from mdrbench.frameworks.params import Snapshot

        timer = _Timer()
        copied: dict[str, int] = {}
        table_rows: dict[str, int] = {}

        def count(snap):  # before restore: the rows each table's snapshot saved
            for n, rows in snap.rows.items():
                copied[n] = copied.get(n, 0) + sum(int(t.numel()) for t in rows.idx)
                table_rows[n] = int(rows.p.shape[0])

        # training's snapshots only: evaluation writes a domain's theta_d in and out
        # through one too (DomainOffsets.entered), which is evaluation's cost, not these
        evaluating = [False]

        def predicting(fw, *a, **kw):
            evaluating[0] = True
            try:
                return predict(fw, *a, **kw)
            finally:
                evaluating[0] = False

        predict = Framework.predict
        timer.wrapped.append((Framework, "predict", predict))
        Framework.predict = predicting

        def skip():
            return evaluating[0]

        timer.wrap(DN, "negotiate", "DN")
        timer.wrap(MAMDR, "regularize", "DR")
        timer.wrap(Snapshot, "__init__", "snapshot: dense copies", skip=skip)
        timer.wrap(Snapshot, "record", "snapshot: copy-on-write rows", skip=skip)
        timer.wrap(
            Snapshot, "delta_and_restore", "snapshot: delta and restore", before=count, skip=skip
        )
        timer.wrap(Snapshot, "restore", "snapshot: restore", before=count, skip=skip)
        fields = FRAMEWORKS.get(system).Config.__dataclass_fields__
        sets = dict(x.split("=", 1) for x in args.set)
        sets = {k: v for k, v in sets.items() if k in fields}  # framework options it has
        over |= sets
        over = ({"k": args.k} if "k" in fields else {}) | over
        try:
            r = run_mdrbench(data, system, over, timer, args.epochs)
        finally:
            timer.restore()
        r["sets"] = sets
        r["has_k"] = "k" in fields
        r["snapshot_rows_copied"] = copied
        r["table_rows"] = table_rows
    r.update(
        system=system,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        train_rows=train_rows,
        samples_per_second=r["samples"] / r["seconds"],
        rss_before_mib=before,
        peak_rss_mib=status_mib("VmHWM"),
        device=torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
    )
    if device.startswith("cuda"):
        r["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return r


# ----------------------------------------------------------------------------- main


def _label(name: str, r: dict, k: int) -> str:
    if name in LABELS:
        return LABELS[name].format(k=k)
    return f"mdrbench {name}" + (f", k = {k}" if r.get("has_k") else "")


def report(results: dict[str, dict], info: dict, k: int) -> str:
    first = next(iter(results.values()))
    lines = [
        f"Data: {info['path']}: {info['n_users']:,} users, {info['n_items']:,} items, "
        f"{info['n_domains']} domains, {info['train_rows']:,} training rows. "
        f"torch {first['torch']}, {first['threads']} thread(s), device {first['device']}.",
        "",
        "| system | rows timed | passes | seconds | samples/s | vs DeepCTR-Torch | "
        "epoch vs alternate | projected Amazon-6 epoch | peak RSS MiB | over loaded data MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    alt = results.get("alternate")
    for name, r in results.items():
        sps = r["samples_per_second"]
        # against DeepCTR-Torch with the same L2 on the tables (none, or the paper's)
        base = results.get("deepctr-paper" if r.get("l2") else "deepctr", {}).get(
            "samples_per_second"
        )
        passes = r["samples"] / r["train_rows"]
        # A full Amazon-6 epoch (9,968,333 training rows): a subset's rate, or this epoch's
        # time scaled by the rows (its passes per epoch scale alike).
        full = (
            AMAZON6_TRAIN_ROWS
            * r["seconds"]
            / (r["samples"] if r.get("subset") else r["train_rows"])
        )
        one_pass = r.get("subset") or abs(passes - 1) < 1e-9
        vs_base = f"{sps / base:.1f}x" if base and one_pass else "-"
        vs_alt = f"{r['seconds'] / alt['seconds']:.2f}x" if alt and not r.get("subset") else "-"
        rounds = r.get("rounds_samples_per_second", [])
        spread = f" ({min(rounds):,.0f}-{max(rounds):,.0f})" if len(rounds) > 1 else ""
        memory = (
            "- | - |"
            if r.get("in_process")
            else f"{r['peak_rss_mib']:,.0f} | {r['peak_rss_mib'] - r['rss_before_mib']:,.0f} |"
        )
        lines.append(
            f"| {_label(name, r, k)} | {r['samples']:,} | "
            f"{'-' if r.get('subset') else f'{passes:.2f}'} | {r['seconds']:.1f} | "
            f"{sps:,.0f}{spread} | {vs_base} | {vs_alt} | {full / 60:.1f} min | {memory}"
            + (f" GPU peak {r['peak_gpu_mib']:,.0f} MiB |" if "peak_gpu_mib" in r else "")
        )
    snaps = {n: r for n, r in results.items() if r.get("snapshot_rows_copied")}
    if snaps:
        lines += [
            "",
            "Snapshots of the parameters (copy-on-write for embedding tables): wall time of "
            "taking, recording, differencing and restoring them, and the table rows copied "
            "over the epoch (in table sizes):",
            "",
            "| framework | snapshots | snapshot seconds | share of the epoch | rows copied per table |",
            "|---|---|---|---|---|",
        ]
        for name, r in snaps.items():
            parts = r.get("parts", {})
            secs = sum(p["seconds"] for n, p in parts.items() if n.startswith("snapshot"))
            n_snap = parts.get("snapshot: dense copies", {}).get("calls", 0)
            copied = ", ".join(
                f"{t.split('.')[-2]} {c:,} ({c / r['table_rows'][t]:.2f}x)"
                for t, c in sorted(r["snapshot_rows_copied"].items())
            )
            lines.append(
                f"| {name} | {n_snap:,} | {secs:.2f} | {100 * secs / r['seconds']:.1f}% | {copied} |"
            )
    for name, r in results.items():
        if r.get("peak_rss_by_phase_mib"):
            by = ", ".join(f"{k} {v:,.0f}" for k, v in r["peak_rss_by_phase_mib"].items())
            lines += ["", f"{name}, peak RSS by phase (MiB; {r['epochs']} epoch(s)): {by}."]
    mamdr = results.get("mamdr")
    if mamdr and mamdr.get("parts"):
        p = mamdr["parts"]
        lines += [
            "",
            f"MAMDR's epoch: DN {p.get('DN', {}).get('seconds', 0):.1f} s, "
            f"DR {p.get('DR', {}).get('seconds', 0):.1f} s.",
        ]
    goals = []
    base = results.get("deepctr", {}).get("samples_per_second")
    if alt and base:
        x = alt["samples_per_second"] / base
        goals.append(f"alternate / DeepCTR-Torch samples/s: {x:.1f}x (goal >= 10x)")
    paper, dc_paper = results.get("paper"), results.get("deepctr-paper")
    if paper and dc_paper:
        x = paper["samples_per_second"] / dc_paper["samples_per_second"]
        goals.append(
            f"paper profile / DeepCTR-Torch with the same table L2 samples/s: {x:.1f}x "
            "(goal >= 3x)"
        )
    if alt:
        m = AMAZON6_TRAIN_ROWS / alt["samples_per_second"] / 60
        goals.append(f"full Amazon-6 alternate epoch, projected: {m:.1f} min (goal < 15 min)")
    if alt and mamdr:
        x = mamdr["seconds"] / alt["seconds"]
        passes = mamdr["samples"] / mamdr["train_rows"]
        goals.append(
            f"MAMDR epoch / alternate epoch: {x:.2f}x (goal <= 2k + 2 = {2 * k + 2}); "
            f"{passes:.2f} passes over the training rows"
        )
    return "\n".join(lines + [""] + [f"- {g}" for g in goals]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mdrbench-bench"))
    ap.add_argument("--users", type=int, default=AMAZON6_USERS)
    ap.add_argument("--items", type=int, default=AMAZON6_ITEMS)
    ap.add_argument("--train-rows", type=int, default=2_100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated: deepctr, dense, or any framework (alternate, mamdr, dn, reptile, ...)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda")
    ap.add_argument("--k", type=int, default=3, help="MAMDR's DR sample number")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a framework option for every system that has it (repeatable), e.g. "
        "specific_params=dense, theta_d_init=zero, finetune=false",
    )
    ap.add_argument(
        "--epochs",
        type=int,
        default=1,
        help="epochs of the first stage (cap; the time figures are the first epoch's); 2 or "
        "more shows the peak of an epoch that starts with theta_d already grown",
    )
    ap.add_argument("--deepctr-batches", type=int, default=40)
    ap.add_argument("--dense-batches", type=int, default=100)
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="run the systems one after the other in this process (speed only: no "
        "per-system peak memory)",
    )
    ap.add_argument("--rounds", type=int, default=1, help="run the systems N times over")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one:
        print(json.dumps(run_one(args)))
        return 0
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    from mdrbench.frameworks import FRAMEWORKS

    valid = ["deepctr", "deepctr-paper", "dense", "paper", *FRAMEWORKS]
    bad = [s for s in systems if s not in valid]
    if bad:
        ap.error(f"unknown system(s) {', '.join(bad)}; valid: {', '.join(valid)}")
    folder = scale_dataset(args.work, args.users, args.items, args.train_rows, args.seed)
    manifest = json.loads((folder / "manifest.json").read_text())
    t = manifest["totals"]
    info = {"path": str(folder), "n_users": t["n_users"], "n_items": t["n_items"],
            "n_domains": t["n_domains"], "train_rows": t["n_train"]}  # fmt: skip
    log(f"{folder}: {t['n_users']:,} users, {t['n_items']:,} items, {t['n_train']:,} train rows")
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    for rnd in range(max(args.rounds, 1)):
        for s in systems:
            log(f"running {s} (round {rnd + 1}) ...")
            if args.in_process:
                r = run_one(argparse.Namespace(**{**vars(args), "one": s, "data": folder}))
                r["in_process"] = True
            else:
                cmd = [sys.executable, __file__, "--one", s, "--data", str(folder),
                       "--threads", str(args.threads), "--k", str(args.k),
                       "--device", args.device, "--epochs", str(args.epochs),
                       "--deepctr-batches", str(args.deepctr_batches),
                       "--dense-batches", str(args.dense_batches),
                       *[a for x in args.set for a in ("--set", x)]]  # fmt: skip
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{s} failed (exit {proc.returncode})")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[s].append(r)
            log(f"  {s}: {r['samples_per_second']:,.0f} samples/s, peak {r['peak_rss_mib']:,.0f} MiB")
    results = {}
    for s, rs in runs.items():  # each system's first round, its samples/s the median
        results[s] = dict(rs[0])
        rates = [r["samples_per_second"] for r in rs]
        results[s]["rounds_samples_per_second"] = rates
        results[s]["samples_per_second"] = statistics.median(rates)
        results[s]["seconds"] = results[s]["samples"] / results[s]["samples_per_second"]
    text = report(results, info, args.k)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"data": info, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
