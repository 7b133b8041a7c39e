"""Pieces the training benchmarks share (scripts run by hand; see docs/benchmarks.md)."""

from __future__ import annotations


def status_mib(key: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MiB. VmHWM, not getrusage's ru_maxrss:
    Linux carries ru_maxrss over fork + exec from the parent, VmHWM starts afresh."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def built_dataset(work, size: int):
    """A synthetic built amazon-6 (`synthesize` + `build_dataset`, seed 0) of `size`
    positives, cached under `work`; its folder."""
    from pathlib import Path

    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.synth import synthesize

    folder = Path(work) / f"data-{size}" / "amazon-6"
    if (folder / "manifest.json").is_file():
        return folder
    raw = Path(work) / f"raw-{size}"
    synthesize("amazon", raw, n_domains=6, size=size, seed=0)
    return build_dataset(
        "amazon-6", raw_dir=raw, out=Path(work) / f"data-{size}", seed=0, offline=True, force=True
    )


def subset_train(data, rows: int, seed: int = 0) -> None:
    """Keep `rows` random training rows (0 or more than there are: all), still sorted by
    domain as the format stores them."""
    import torch

    from mdrbench.data import Split

    s = data.train
    if not rows or rows >= len(s):
        return
    keep = torch.randperm(len(s), generator=torch.Generator().manual_seed(seed))[:rows]
    keep = keep.sort().values  # rows are stored by domain: a sorted subset stays so
    dom = s.domain_id[keep]
    offsets = torch.searchsorted(dom, torch.arange(s.n_domains + 1)).tolist()
    data.splits["train"] = Split(
        s.user_id[keep], s.item_id[keep], dom, s.label[keep], offsets, None, None
    )


def deepctr_mlp(info, device: str = "cpu", l2: float = 0.0):
    """DeepCTR-Torch 0.3.0's WDL with no linear (wide) features: exactly the paper's MLP
    (user, item, domain embeddings 128; DNN [256, 128, 64], ReLU, dropout 0.5), compiled
    with Adam and BCE, no training metrics. `l2`: its `l2_reg_embedding` (lambda * sum(w^2)
    over each whole table, added to the loss at every step; 1e-5 = DeepCTR's default and
    the authors'); 0: no L2 term."""
    from deepctr_torch.inputs import SparseFeat
    from deepctr_torch.models import WDL

    feats = [
        SparseFeat("user_id", info.n_users, embedding_dim=128),
        SparseFeat("item_id", info.n_items, embedding_dim=128),
        SparseFeat("domain_id", info.n_domains, embedding_dim=128),
    ]
    model = WDL(
        [],  # no linear (wide) features: the DNN alone, i.e. the MLP
        feats,
        dnn_hidden_units=(256, 128, 64),
        dnn_dropout=0.5,
        l2_reg_linear=0.0,
        l2_reg_embedding=l2,
        init_std=1e-4,
        seed=0,
        device="cuda:0" if device.startswith("cuda") else device,
    )
    model.compile("adam", "binary_crossentropy", metrics=[])
    return model


def deepctr_fit(model, split) -> float:
    """One `fit()` epoch over `split` (batch 1024, shuffled); its seconds."""
    import contextlib
    import io
    import time

    x = {c: getattr(split, c).cpu().numpy() for c in ("user_id", "item_id", "domain_id")}
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the device and row counts
        model.fit(x, split.label.cpu().numpy(), batch_size=1024, epochs=1, verbose=0, shuffle=True)
    return time.perf_counter() - t0
