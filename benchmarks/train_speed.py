"""Training throughput: mdrbench versus DeepCTR-Torch 0.3.0, the same MLP on the same data,
in the same process (run by hand, not a test).

The MLP: user, item and domain ids embedded (128-d each, trainable), DNN [256, 128, 64]
with ReLU and dropout 0.5, one logit; batch 1024; Adam lr 1e-3; BCE; shuffled; no training
metrics. mdrbench trains it with the `joint` framework's epoch (the trainer's own loop:
index-sliced batches, sparse embedding updates with SparseAdam) and, for reference, with
`sparse_embeddings=False` (dense Adam over whole tables, as DeepCTR). DeepCTR-Torch trains
WDL with no linear features and no L2 terms, which is exactly that MLP, through its `fit()`.
Each repetition runs the three one after the other on the same rows; the median over
repetitions is reported, so load from other processes hits all three alike.

Data: a synthetic built amazon-6 (mdrbench synth + build; `--size` positives; 400,000 gives
~20k users, ~19k items, ~1.07M training rows), cached under `--work`; or `--data DIR`, any
built dataset without fixed features.

    pip install --no-deps deepctr-torch==0.3.0   # plus tqdm, scikit-learn (torch as is)
    python benchmarks/train_speed.py                 # torch's default thread count
    python benchmarks/train_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/bench_common.py
from bench_common import built_dataset, deepctr_fit, deepctr_mlp, subset_train  # noqa: E402


def mdrbench_epoch(data, sparse: bool) -> float:
    from mdrbench.config import TrainConfig
    from mdrbench.frameworks import FRAMEWORKS, Context, set_sparse_embeddings
    from mdrbench.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", data.info)  # paper defaults: emb 128, [256, 128, 64], 0.5
    set_sparse_embeddings(model, sparse)
    ctx = Context(
        data=data,
        train=TrainConfig(batch_size=1024, lr=1e-3),
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )
    fw = FRAMEWORKS.get("joint")(model, ctx)
    model.train()
    t0 = time.perf_counter()
    stats = fw.train_epoch(1, list(range(data.info.n_domains)))
    dt = time.perf_counter() - t0
    assert stats.samples == len(data.train)
    return stats.samples / dt


def deepctr_epoch(data) -> float:
    return len(data.train) / deepctr_fit(deepctr_mlp(data.info), data.train)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="a built dataset without fixed features")
    ap.add_argument("--size", type=int, default=400_000, help="positives of the synthetic data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mdrbench-bench"))
    ap.add_argument("--rows", type=int, default=0, help="training rows to use (0 = all)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--no-dense", action="store_true", help="skip mdrbench with dense Adam")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    from mdrbench.data import load_dataset

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    folder = args.data or built_dataset(args.work, args.size)
    data = load_dataset(folder)
    if data.info.has_features:
        sys.exit("this benchmark embeds ids: give a dataset without fixed features")
    subset_train(data, args.rows)
    info = data.info
    print(
        f"{info.name} ({folder}): {info.n_users:,} users, {info.n_items:,} items, "
        f"{info.n_domains} domains, {len(data.train):,} training rows; "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
        flush=True,
    )
    systems = {
        "DeepCTR-Torch 0.3.0 (WDL w/o linear = MLP, dense Adam)": lambda: deepctr_epoch(data),
        "mdrbench joint, sparse embeddings (SparseAdam + Adam)": lambda: mdrbench_epoch(data, True),
    }
    if not args.no_dense:
        systems["mdrbench joint, dense embeddings (Adam)"] = lambda: mdrbench_epoch(data, False)
    runs: dict[str, list[float]] = {k: [] for k in systems}
    for rep in range(args.reps):
        for name, fn in systems.items():
            sps = fn()
            runs[name].append(sps)
            print(f"  rep {rep + 1}: {name}: {sps:,.0f} samples/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    base = next(iter(med.values()))
    print("\n| system | samples/s (median) | vs DeepCTR-Torch |\n|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:,.0f} | {v / base:.2f}x |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "dataset": {"name": info.name, "path": str(folder)},
                    "n_users": info.n_users,
                    "n_items": info.n_items,
                    "train_rows": len(data.train),
                    "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "samples_per_second": runs,
                    "median": med,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
