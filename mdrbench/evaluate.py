"""The one evaluator: every number a table, a result file or the leaderboard shows comes
from `evaluate()`. NumPy only (no torch), so validators and the leaderboard can use it.

AUC is exact: the Mann-Whitney statistic with average ranks for tied scores, equal to
scikit-learn's `roc_auc_score` (tested), not the 500-threshold approximation of the
authors' TF code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

EPS = 1e-7


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of `x`, ties sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Start index of each run of equal values, and the run each sorted position belongs to.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    run = np.repeat(np.arange(len(starts)), ends - starts)
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = avg[run]
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Exact ROC AUC; None when the labels hold a single class (AUC is undefined)."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Mean binary cross-entropy of probabilities (clipped to [EPS, 1 - EPS])."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    if labels.size == 0:
        return None
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), EPS, 1 - EPS)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def evaluate(
    domain_ids: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    domain_names: Sequence[str],
) -> dict:
    """Metrics of one split.

    `domain_ids[i]` indexes `domain_names`; `probs` are predicted click probabilities.
    Returns {"auc_mean", "auc_weighted", "logloss", "domains": {name: {"auc", "logloss", "n"}}}.
    A domain whose labels are all one class gets `"auc": None` and is left out of the
    averages (and listed under "undefined_auc"); a domain with no rows gets n = 0.
    """
    domain_ids = np.asarray(domain_ids).ravel()
    labels = np.asarray(labels).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    if not (domain_ids.shape == labels.shape == probs.shape):
        raise ValueError(
            f"domain_ids {domain_ids.shape}, labels {labels.shape} and probs {probs.shape} "
            "must have one entry per sample"
        )
    if probs.size and (np.nanmin(probs) < 0 or np.nanmax(probs) > 1 or np.isnan(probs).any()):
        raise ValueError("probs must be probabilities in [0, 1] (apply a sigmoid to logits)")
    if domain_ids.size and (domain_ids.min() < 0 or domain_ids.max() >= len(domain_names)):
        raise ValueError(f"domain_ids must lie in [0, {len(domain_names)})")
    order = np.argsort(domain_ids, kind="stable")
    bounds = np.searchsorted(domain_ids[order], np.arange(len(domain_names) + 1))
    domains: dict[str, dict] = {}
    aucs, weights, undefined = [], [], []
    for d, name in enumerate(domain_names):
        idx = order[bounds[d] : bounds[d + 1]]
        a = auc(labels[idx], probs[idx]) if idx.size else None
        domains[name] = {"auc": a, "logloss": logloss(labels[idx], probs[idx]), "n": int(idx.size)}
        if a is None:
            undefined.append(name)
        else:
            aucs.append(a)
            weights.append(idx.size)
    out = {
        "auc_mean": float(np.mean(aucs)) if aucs else None,
        "auc_weighted": float(np.average(aucs, weights=weights)) if aucs else None,
        "logloss": logloss(labels, probs),
        "domains": domains,
    }
    if undefined:
        out["undefined_auc"] = undefined
    return out


def is_close(a: float | None, b: float | None, tol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0, abs_tol=tol)
