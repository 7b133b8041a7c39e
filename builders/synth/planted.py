"""The planted structure of the synthetic data and what both writers share: the kinds and
their domains, the domain-level parameters (`domain_profile`: sizes, conflict groups and
weights, from a fixed generator), the latent model (taste clusters, shared and conflicting
dimensions), the choice of positives (`_choose`) and the sampling and file helpers
(docs/synth.md gives the formulas)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from mdrbench.builders.specs import AMAZON_6, AMAZON_13
from mdrbench.errors import UserError

KINDS = ("amazon", "taobao")

# amazon-6's categories first (its order), then the other seven of amazon-13 (their order):
# `--domains 6` gives exactly amazon-6's files, the default (13) every amazon dataset's.
AMAZON_CATEGORIES = AMAZON_6 + tuple(c for c in AMAZON_13 if c not in AMAZON_6)
MAX_DOMAINS = {"amazon": len(AMAZON_CATEGORIES), "taobao": 100}
DEFAULT_DOMAINS = {"amazon": 13, "taobao": 30}

# Relative sizes of the Amazon categories (rich -> sparse, shaped like Tables II-III).
_AMAZON_WEIGHTS = {
    "Musical Instruments": 7.0,
    "Office Products": 20.0,
    "Patio Lawn and Garden": 16.0,
    "Prime Pantry": 4.0,
    "Toys and Games": 26.0,
    "Video Games": 14.0,
    "Arts Crafts and Sewing": 9.0,
    "Digital Music": 3.0,
    "Gift Cards": 0.15,
    "Industrial and Scientific": 1.8,
    "Luxury Beauty": 0.4,
    "Magazine Subscriptions": 0.12,
    "Software": 0.12,
}

# ---- planted structure (documented in docs/synth.md) ------------------------------------
KS = 4  # shared latent dimensions
KC = 4  # conflicting (domain-specific) latent dimensions
W_C = 1.0  # weight of the domain-specific part
POP = 0.5  # weight of item popularity
TAU = 0.4  # softmax temperature of the choice among candidates
CANDIDATES = 6  # uniform candidates drawn from the domain's pool per positive
N_GROUPS = 3
CLUSTERS = 16  # taste clusters shared by users and items
CLUSTER_SHARE = 0.6  # share of a latent's variance that its cluster explains
AMAZON_USER_DEG = 8.0  # mean positives of a user in a category
AMAZON_ITEM_DEG = 20.0  # mean positives of an item in a category
AMAZON_DOMAINS_PER_USER = 2.0  # sum over categories of their users / number of users
_PROFILE_SEED = 20230403  # domain-level parameters: fixed, independent of `seed`
_MIN_ROWS = 20  # every domain gets at least this many rows
_EMB_DIM = 128
_EMB_NOISE = 1.0


def _check(kind: str, n_domains: int | None) -> int:
    if kind not in KINDS:
        raise UserError(f"unknown synthetic kind {kind!r}. Valid kinds: {', '.join(KINDS)}")
    if n_domains is None:
        return DEFAULT_DOMAINS[kind]
    top = MAX_DOMAINS[kind]
    if isinstance(n_domains, bool) or not isinstance(n_domains, (int, np.integer)):
        raise UserError(f"bad n_domains {n_domains!r}: give an int from 1 to {top} for {kind}")
    if not 1 <= n_domains <= top:
        raise UserError(f"bad n_domains {n_domains}: {kind} has 1 to {top} domains")
    return int(n_domains)


def domain_profile(kind: str, n_domains: int | None = None) -> list[dict]:
    """The domain-level parameters planted for `kind` (independent of the seed): name,
    size share, conflict group and the conflict weights s[d, :]."""
    n = _check(kind, n_domains)
    prof_rng = np.random.default_rng(_PROFILE_SEED)
    if kind == "amazon":
        names = list(AMAZON_CATEGORIES[:n])
        w = np.array([_AMAZON_WEIGHTS[c] for c in names])
        prof_rng.normal(size=MAX_DOMAINS["taobao"])  # keep the stream aligned with taobao
    else:
        names = [f"theme {d + 1}" for d in range(n)]
        z = prof_rng.normal(size=MAX_DOMAINS["taobao"])[:n]
        w = np.exp(-np.arange(n) / 7.0) * np.exp(0.5 * z)
    mags = prof_rng.uniform(0.5, 1.5, size=(MAX_DOMAINS["taobao"], KC))[:n]
    share = w / w.sum()
    out = []
    for d in range(n):
        g = d % N_GROUPS
        sign = np.ones(KC)
        if g == 1:
            sign[: KC // 2] = -1.0
        elif g == 2:
            sign[KC // 2 :] = -1.0
        out.append(
            {
                "domain": d,
                "name": names[d],
                "share": float(share[d]),
                "group": g,
                "conflict_weights": [round(float(x), 4) for x in sign * mags[d]],
            }
        )
    return out


# ---- shared machinery -------------------------------------------------------------------
def _allocate(total: int, shares: np.ndarray, floor: int) -> np.ndarray:
    """Integer rows per domain summing to `total`, each >= min(floor, total // n)."""
    n = len(shares)
    floor = min(floor, total // n)
    counts = np.maximum(np.floor(shares * total).astype(np.int64), floor)
    diff = total - int(counts.sum())
    order = np.argsort(-shares, kind="stable")
    i = 0
    while diff != 0:
        d = order[i % n]
        if diff > 0:
            counts[d] += 1
            diff -= 1
        elif counts[d] > floor:
            counts[d] -= 1
            diff += 1
        i += 1
    return counts


def _unique_ints(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """n distinct random ints in [low, high), in random order."""
    got = np.empty(0, dtype=np.int64)
    while len(got) < n:
        draw = rng.integers(low, high, size=int((n - len(got)) * 1.05) + 16)
        allv = np.concatenate([got, draw])
        _, first = np.unique(allv, return_index=True)
        got = allv[np.sort(first)]
    return got[:n]


def _random_strings(
    rng: np.random.Generator, n: int, lengths: np.ndarray, alphabet: np.ndarray, prefix: bytes
) -> list[str]:
    """n distinct strings prefix + random chars from alphabet, of the given total lengths."""
    width = int(lengths.max()) - len(prefix)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        k = n - len(out)
        codes = alphabet[rng.integers(0, len(alphabet), size=(k, width))]
        raw = codes.view(f"S{width}").ravel()
        lens = lengths[len(out) : len(out) + k] - len(prefix)
        p = prefix.decode()
        for s, ln in zip(raw, lens):
            v = p + s[:ln].decode()
            if v not in seen:
                seen.add(v)
                out.append(v)
    return out


def _sample_weighted(rng: np.random.Generator, logw: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices, drawn without replacement with probability ~ exp(logw) (Gumbel top-k)."""
    k = min(k, len(logw))
    key = logw + rng.gumbel(size=len(logw))
    idx = np.argpartition(-key, k - 1)[:k] if k < len(logw) else np.arange(len(logw))
    return np.sort(idx)


def _counts(rng: np.random.Generator, total: int, m: int, base: int, weights: np.ndarray, cap: int):
    """Positives per user for up to m users, summing to `total` unless capped: `base` each
    (8% of users a little fewer: not strictly 5-core), the rest multinomial ~ weights."""
    c = np.full(m, min(base, cap), dtype=np.int64)
    if base > 2:
        few = rng.random(m) < 0.08
        c[few] = np.minimum(c[few], rng.integers(max(1, base - 3), base, size=int(few.sum())))
    if c.sum() > total:  # tiny domains: fewer users, one positive each to start
        c = np.ones(min(m, total), dtype=np.int64)
    rest = total - int(c.sum())
    if rest > 0:
        w = weights[: len(c)]
        c += rng.multinomial(rest, w / w.sum())
    return np.minimum(c, cap)


def _choose(
    rng: np.random.Generator,
    user_vec: np.ndarray,  # (m, K) domain-weighted user vectors of the domain's users
    item_vec: np.ndarray,  # (P, K) item vectors of the domain's pool
    item_bias: np.ndarray,  # (P,)
    counts: np.ndarray,  # (m,) positives wanted per user
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each user, `counts[u]` distinct pool items drawn ~ softmax(score / TAU) among
    CANDIDATES * counts[u] uniform candidates. Returns (user_local, item_local, score)."""
    m, p = len(counts), len(item_bias)
    n_cand = counts * CANDIDATES
    cu = np.repeat(np.arange(m, dtype=np.int64), n_cand)
    ci = rng.integers(0, p, size=len(cu))
    score = np.empty(len(cu), dtype=np.float32)
    step = 1 << 20
    for s in range(0, len(cu), step):
        e = s + step
        score[s:e] = (
            np.einsum("ij,ij->i", user_vec[cu[s:e]], item_vec[ci[s:e]]) + item_bias[ci[s:e]]
        )
    key = score / TAU + rng.gumbel(size=len(cu)).astype(np.float32)
    order = np.lexsort((-key, cu))
    cu, ci, score = cu[order], ci[order], score[order]
    code = cu * p + ci
    _, first = np.unique(code, return_index=True)
    keep = np.zeros(len(cu), dtype=bool)
    keep[first] = True
    cu, ci, score = cu[keep], ci[keep], score[keep]
    start = np.searchsorted(cu, np.arange(m))
    pos = np.arange(len(cu)) - start[cu]
    sel = pos < counts[cu]
    return cu[sel], ci[sel], score[sel]


def _latents(rng: np.random.Generator, n: int, centers: np.ndarray) -> np.ndarray:
    """Latent vectors: a taste cluster's center plus individual noise (unit variance per dim)."""
    c = rng.integers(0, len(centers), size=n)
    z = rng.standard_normal(size=(n, KS + KC)).astype(np.float32)
    return (math.sqrt(CLUSTER_SHARE) * centers[c] + math.sqrt(1 - CLUSTER_SHARE) * z).astype(
        np.float32
    )


def _centers(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(size=(CLUSTERS, KS + KC)).astype(np.float32)


def _domain_user_vectors(lat: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """User side of score(.,.,d): [a_u / sqrt(KS), W_C * s[d] * c_u / sqrt(KC)]."""
    scale = np.concatenate([np.full(KS, 1 / math.sqrt(KS)), W_C * weights / math.sqrt(KC)])
    return (lat * scale.astype(np.float32)).astype(np.float32)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
