"""Tiny built datasets in exactly the docs/format.md format, for the trainer's tests.

`write_dataset(root, kind="amazon")`: ids embedded; `kind="taobao"`: with the fixed 128-d
user/item feature tables. Labels carry a planted signal (a low-rank user x item score plus a
per-domain shift), so a model can beat AUC 0.5. Written with pyarrow, deterministic.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

# Tiny tensors: one intra-op thread is faster than two, and much faster on a busy machine,
# where OpenMP threads spin-wait for each other (the suite ran 7x slower with two).
torch.set_num_threads(1)

# Small model sizes for tests, by hyperparameter name (each model takes the ones it has).
TINY = {
    "emb_dim": 8,
    "hidden": [16, 8],
    "shared_hidden": [16],
    "tower_hidden": [8],
    "gate_hidden": [8],
    "expert_hidden": [8],
    "aux_hidden": [8],
    "n_specific_experts": 2,
    "heads": 2,
    "att_layers": 1,
    # issue 20's models (mdrbench/models/scenario.py)
    "n_shared_experts": 2,
    "n_experts": 2,
    "expert_dim": 4,
    "encoder_layers": 1,
    "ff_dim": 8,
    "hyper_hidden": [8],
    "rank": 3,
    "adapter_dim": 4,
    "n_clusters": 2,
}
# Where a model needs another tiny value than TINY's (M3oE: [STAR width, representation
# width, expert widths...], at least three sizes).
TINY_BY_MODEL = {"m3oe": {"hidden": [16, 8, 8]}}
# device "cpu": the suite checks the CPU's exact semantics (bitwise reruns, hand-computed
# steps) on any machine; the CUDA path has its own tests (tests/test_cuda.py).
TINY_TRAIN = {
    "batch_size": 64,
    "epochs": 1,
    "eval_batch_size": 512,
    "threads": 1,
    "device": "cpu",
}


def tiny_overrides(model: str, **extra) -> dict:
    """TINY values for the hyperparameters `model` has, plus TINY_TRAIN and `extra`."""
    from dataclasses import fields

    from mdrbench.models import MODELS

    names = {f.name for f in fields(MODELS.get(model).Config)}
    tiny = {k: v for k, v in TINY.items() if k in names}
    return {**tiny, **TINY_BY_MODEL.get(model, {}), **TINY_TRAIN, **extra}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_dataset(
    root: str | Path,
    kind: str = "amazon",
    n_domains: int = 3,
    n_users: int = 60,
    n_items: int = 40,
    rows_per_domain: tuple[int, ...] = (300, 200, 150, 120, 100),
    feature_dim: int = 128,
    seed: int = 0,
    name: str | None = None,
) -> Path:
    """Write a built dataset to `root/name` and return that folder."""
    rng = np.random.default_rng(seed)
    name = name or f"tiny-{kind}-{n_domains}"
    out = Path(root) / name
    out.mkdir(parents=True, exist_ok=True)
    u = rng.normal(size=(n_users, 4))
    v = rng.normal(size=(n_items, 4))

    splits: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    domains = []
    for d in range(n_domains):
        n = rows_per_domain[d % len(rows_per_domain)]
        users = rng.integers(0, n_users, n)
        items = rng.integers(0, n_items, n)
        shift = rng.normal(size=4)  # each domain weighs the latent factors differently
        score = ((u[users] * (v[items] + 0.5 * shift)).sum(1)) + rng.normal(scale=0.5, size=n)
        label = (score > np.quantile(score, 0.7)).astype(np.int8)  # ~30% positives
        rows = np.stack([users, items, np.full(n, d), label], axis=1)
        parts = {"train": [], "val": [], "test": []}
        for cls in (0, 1):  # stratified 60/20/20
            idx = rng.permutation(np.flatnonzero(label == cls))
            a, b = int(0.6 * len(idx)), int(0.8 * len(idx))
            parts["train"].append(idx[:a])
            parts["val"].append(idx[a:b])
            parts["test"].append(idx[b:])
        counts = {}
        for s, chunks in parts.items():
            idx = rng.permutation(np.concatenate(chunks))
            splits[s].append(rows[idx])
            counts[s] = len(idx)
        n_pos = int(label.sum())
        domains.append(
            {
                "id": d,
                "name": f"Domain {chr(65 + d)}",
                "ctr_ratio": 0.3,
                "n_users": int(len(np.unique(users))),
                "n_items": int(len(np.unique(items))),
                "n_pos": n_pos,
                "n_neg": int(n - n_pos),
                "n_train": counts["train"],
                "n_val": counts["val"],
                "n_test": counts["test"],
            }
        )

    files = {}
    for s, chunks in splits.items():
        rows = np.concatenate(chunks)
        table = pa.table(
            {
                "user_id": pa.array(rows[:, 0].astype(np.int64)),
                "item_id": pa.array(rows[:, 1].astype(np.int64)),
                "domain_id": pa.array(rows[:, 2].astype(np.int16)),
                "label": pa.array(rows[:, 3].astype(np.int8)),
            }
        )
        path = out / f"{s}.parquet"
        pq.write_table(table, path)
        files[path.name] = {"sha256": _sha(path), "bytes": path.stat().st_size, "rows": len(rows)}

    if kind == "taobao":
        proj = rng.normal(size=(4, feature_dim)) / 2.0
        for who, lat, n in (("user", u, n_users), ("item", v, n_items)):
            feats = (lat @ proj + rng.normal(scale=0.1, size=(n, feature_dim))).astype(np.float32)
            arr = pa.FixedSizeListArray.from_arrays(pa.array(feats.ravel()), feature_dim)
            table = pa.table({f"{who}_id": pa.array(np.arange(n, dtype=np.int64)), "features": arr})
            path = out / f"{who}_features.parquet"
            pq.write_table(table, path)
            files[path.name] = {"sha256": _sha(path), "bytes": path.stat().st_size, "rows": n}

    card = out / "README.md"
    card.write_text(f"# {name}\n\nA tiny test dataset (tests/train_fixtures.py).\n")
    files[card.name] = {"sha256": _sha(card), "bytes": card.stat().st_size}
    tot = {k: sum(d[k] for d in domains) for k in ("n_pos", "n_neg", "n_train", "n_val", "n_test")}
    manifest = {
        "format_version": 1,
        "name": name,
        "kind": kind,
        "spec_version": "test",
        "mdrbench_version": "0.1.0",
        "seed": seed,
        "on_bad_lines": "error",
        "domains": domains,
        "totals": {
            "n_domains": n_domains,
            "n_users": n_users,
            "n_items": n_items,
            "n_pos": tot["n_pos"],
            "n_neg": tot["n_neg"],
            "n_samples": tot["n_pos"] + tot["n_neg"],
            "n_train": tot["n_train"],
            "n_val": tot["n_val"],
            "n_test": tot["n_test"],
        },
        "files": dict(sorted(files.items())),
        "raw_files": {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out
