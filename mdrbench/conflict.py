"""Domain conflict (paper Sec. III-B and Eq. 9): the gradient of each domain's loss with
respect to the shared parameters, and their pairwise inner products and cosines.

    g_d = grad over theta of the mean BCE of domain d's (sampled) training rows
    inner[i, j] = <g_i, g_j>      cosine[i, j] = <g_i, g_j> / (|g_i| |g_j|)

Two domains conflict when <g_i, g_j> < 0 (Fig. 3). DN maximises sum_i sum_j <g_i, g_j>
(Eq. 9, "O_C"). The gradients are taken in eval mode (no dropout), so the matrix is a
deterministic function of the parameters and the sampled rows.

Which parameters: a rule over names (as `specific_params`), by default the dense
(non-embedding) ones, then only the tensors at least two domains' gradients reach: a
domain's own tower gets no gradient from the other domains and would only shrink the
cosines. The JSON lists the tensors used and those left out.

Heatmaps come from the one heatmap writer, mdrbench/heatmap.py (no plotting library).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mdrbench.data import MDRData
from mdrbench.errors import UserError
from mdrbench.frameworks.base import specific_param_names
from mdrbench.heatmap import diverging
from mdrbench.heatmap import heatmap_png as _heatmap_png
from mdrbench.heatmap import heatmap_svg as _heatmap_svg


def sample_rows(data: MDRData, d: int, rows: int, seed: int, split: str = "train") -> Tensor:
    """Up to `rows` row indices of domain d in `split` (0 = all), a seeded random sample."""
    s = data.splits[split]
    idx = torch.arange(s.offsets[d], s.offsets[d + 1])
    if rows and len(idx) > rows:
        g = torch.Generator().manual_seed(seed * 1_000_003 + d)
        idx = idx[torch.randperm(len(idx), generator=g)[:rows]].sort().values
    return idx


def domain_gradients(
    model: nn.Module,
    data: MDRData,
    *,
    params: str = "dense",
    values: Mapping[str, Tensor] | None = None,
    rows: int = 10_000,
    batch_size: int = 4096,
    seed: int = 0,
    split: str = "train",
) -> tuple[Tensor, dict[str, Any]]:
    """Per-domain gradients [n_domains, P] (float64) of the shared parameters chosen by the
    rule `params` (at `values`, default the model's own parameters), and a description:
    the tensors used, those left out and why, the rows per domain."""
    names = specific_param_names(model, params)
    if not names:
        raise UserError(f"--params {params!r} selects no trainable parameter of the model")
    own = dict(model.named_parameters())
    values = values or {}
    base = {n: values.get(n, p).detach() for n, p in own.items()}
    was_training = model.training
    model.eval()
    s = data.splits[split]
    n_dom = data.info.n_domains
    per_domain: list[dict[str, Tensor | None]] = []
    n_rows: list[int] = []
    try:
        for d in range(n_dom):
            idx = sample_rows(data, d, rows, seed, split)
            n_rows.append(len(idx))
            leaves = {n: base[n].clone().requires_grad_(True) for n in names}
            acc: dict[str, Tensor | None] = dict.fromkeys(names)
            for i in range(0, len(idx), batch_size):
                batch = s.take(idx[i : i + batch_size].to(s.label.device))
                logits = functional_call(model, {**base, **leaves}, (batch,))
                loss = F.binary_cross_entropy_with_logits(logits, batch["label"], reduction="sum")
                grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
                for n, g in zip(leaves, grads):
                    if g is None:
                        continue
                    g = (g.to_dense() if g.is_sparse else g).double()
                    acc[n] = g if acc[n] is None else acc[n] + g
            per_domain.append(
                {n: None if g is None else g / max(len(idx), 1) for n, g in acc.items()}
            )
    finally:
        model.train(was_training)

    used, left_out = [], {}
    for n in names:
        reached = sum(1 for g in per_domain if g[n] is not None and bool(g[n].any()))
        if reached >= 2:
            used.append(n)
        else:
            left_out[n] = f"gradient from {reached} domain(s)"
    if not used:
        raise UserError(
            "no parameter gets a gradient from two or more domains: nothing shared to compare"
        )
    flat = [
        torch.cat(
            [
                (g[n] if g[n] is not None else torch.zeros(own[n].shape, dtype=torch.float64))
                .reshape(-1)
                .cpu()
                for n in used
            ]
        )
        for g in per_domain
    ]
    info = {
        "params_rule": params,
        "params_used": used,
        "params_left_out": left_out,
        "n_params": int(sum(own[n].numel() for n in used)),
        "rows_per_domain": n_rows,
        "split": split,
    }
    return torch.stack(flat), info


def conflict_matrix(grads: Tensor) -> dict[str, Any]:
    """Inner products and cosines of the rows of `grads`, and a summary."""
    g = grads.double()
    inner = g @ g.T
    norm = inner.diagonal().clamp_min(0).sqrt()
    denom = norm[:, None] * norm[None, :]
    cosine = torch.where(
        denom > 0, inner / denom.clamp_min(1e-300), torch.full_like(inner, math.nan)
    )
    n = g.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    off_cos = cosine[off]
    off_cos = off_cos[~off_cos.isnan()]
    pairs = n * (n - 1) // 2
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    summary = {
        "n_pairs": pairs,
        "conflicting_pairs": int((inner[upper] < 0).sum()),
        "mean_cosine": float(off_cos.mean()) if off_cos.numel() else None,
        "min_cosine": float(off_cos.min()) if off_cos.numel() else None,
        "o_c": float(inner.sum()),  # Eq. 9: sum over i, j of <g_i, g_j>
        "o_c_off_diagonal": float(inner[off].sum()),
    }
    return {
        "inner": _rows(inner),
        "cosine": _rows(cosine),
        "grad_norm": [float(x) for x in norm],
        "summary": summary,
    }


def _rows(t: Tensor) -> list[list[float | None]]:
    return [[None if math.isnan(x) else float(x) for x in row] for row in t.tolist()]


def compute_conflict(model: nn.Module, data: MDRData, **kw) -> dict[str, Any]:
    """The conflict matrix of `model` on `data` as a JSON-ready dict (see domain_gradients
    for the keyword arguments)."""
    grads, info = domain_gradients(model, data, **kw)
    return {"domains": list(data.info.domain_names), **info, **conflict_matrix(grads)}


# ----------------------------------------------------------------------------- heatmaps
# Drawn by the one heatmap writer (mdrbench/heatmap.py), on its diverging scale.

color = diverging  # cosine in [-1, 1] -> RGB: blue (conflict) - white - red (agreement)


def heatmap_svg(matrix: Sequence[Sequence[float | None]], labels: Sequence[str], title: str) -> str:
    """An SVG heatmap of a cosine matrix with row/column labels, cell values (up to 20
    domains) and a colour legend."""
    return _heatmap_svg(matrix, labels, labels, title=title, lo=-1.0, hi=1.0)


def heatmap_png(matrix: Sequence[Sequence[float | None]], cell: int | None = None) -> bytes:
    """A PNG of the cosine matrix (colours only; the SVG has the labels)."""
    return _heatmap_png(matrix, cell)


# ----------------------------------------------------------------------------- checkpoints


def load_checkpoint(model: nn.Module, path) -> dict[str, Any]:
    """Load parameters saved with torch.save into `model` (in place).

    Accepted: a model's `state_dict()` (`torch.save(model.state_dict(), path)`), or a dict
    with a "model" entry holding one, as `Framework.state_dict()` returns (the model's own
    parameters are the shared theta_S; MAMDR's per-domain offsets are not used here).
    Returns what else the file held (its other top-level keys)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        raise UserError(f"{path}: not a checkpoint torch.load can read ({exc})") from None
    state = obj.get("model", obj) if isinstance(obj, Mapping) else None
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items())
    ):
        raise UserError(
            f"{path}: expected a state_dict (name -> tensor) or a dict with a 'model' state_dict"
        )
    try:
        model.load_state_dict(dict(state))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise UserError(
            f"{path} does not fit this model (same model and hyperparameters as when it was "
            f"saved? use --set): {' '.join(first[:3])[:600]}"
        ) from None
    return {k: v for k, v in obj.items() if k != "model"} if "model" in obj else {}
