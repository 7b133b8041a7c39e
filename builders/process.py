"""From positives to samples: global ids, negatives per domain CTR ratio, 60/20/20 split.

Everything here is vectorized NumPy over sorted arrays and seeded with
`numpy.random.default_rng`, so the output depends only on the inputs and the seed (not on
thread counts or dict order), and no Python loop runs per user or per sample.
"""

from __future__ import annotations

import numpy as np
import polars as pl

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


def encode_ids(
    pos: pl.DataFrame, user: str, item: str
) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
    """Replace raw user/item keys by dense int64 ids 0..n-1, numbered in sorted key order
    (one id space per dataset, shared by all domains). Returns (frame, user keys, item keys)."""
    user_keys = pos[user].unique().sort()
    item_keys = pos[item].unique().sort()
    out = pos.with_columns(
        user_id=pl.col(user).replace_strict(user_keys, pl.int_range(len(user_keys), eager=True)),
        item_id=pl.col(item).replace_strict(item_keys, pl.int_range(len(item_keys), eager=True)),
    ).with_columns(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64))
    return out, user_keys, item_keys


def _unique(x: np.ndarray, return_counts: bool = False):
    """Sorted distinct values (and counts) by one sort: faster here than `np.unique`,
    whose hash path in NumPy >= 2.3 is slow on millions of int64 keys."""
    x = np.sort(x)
    first = np.r_[True, x[1:] != x[:-1]] if x.size else np.zeros(0, bool)
    if not return_counts:
        return x[first]
    starts = np.flatnonzero(first)
    return x[first], np.diff(np.r_[starts, x.size])


def _segments(owner: np.ndarray, n_owners: int) -> np.ndarray:
    """Start offset of each owner's run in a sorted `owner` array (length n_owners + 1)."""
    return np.searchsorted(owner, np.arange(n_owners + 1))


def _rank_in_group(owner: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted `owner` array."""
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if owner.size else owner
    run_len = np.diff(np.r_[starts, owner.size])
    return np.arange(owner.size) - np.repeat(starts, run_len)


def _distinct_draws(m: np.ndarray, k: np.ndarray, rng: np.random.Generator):
    """For every owner o, k[o] distinct values drawn uniformly from range(m[o]) (k <= m/2).

    Rounds of i.i.d. draws: each round draws, per owner, exactly as many values as it still
    lacks and keeps those not seen before. The result is the first k distinct values of an
    i.i.d. uniform sequence, which is a uniform k-subset; with k <= m/2 at most half of a
    round repeats, so few rounds are needed. Returns (owner, value) sorted by owner, value."""
    width = int(m.max()) + 1 if m.size else 1
    done: list[np.ndarray] = []
    keys = np.empty(0, np.int64)  # distinct owner * width + value of unfinished owners
    owners = np.flatnonzero(k > 0)
    missing = k[owners]
    while owners.size:
        owner = np.repeat(owners, missing)
        val = (rng.random(owner.size) * m[owner]).astype(np.int64)
        keys = _unique(np.r_[keys, owner * width + val])
        lacking = np.zeros_like(k)
        lacking[owners] = k[owners] - np.bincount(keys // width, minlength=len(m))[owners]
        finished = lacking[keys // width] == 0
        done.append(keys[finished])
        keys = keys[~finished]
        owners = np.flatnonzero(lacking > 0)
        missing = lacking[owners]
    out = np.sort(np.concatenate(done)) if done else np.empty(0, np.int64)
    return out // width, out % width


def sample_without_replacement(m: np.ndarray, k: np.ndarray, rng: np.random.Generator):
    """Per owner o, a uniform k[o]-subset of range(m[o]) (0 <= k <= m). Returns (owner, value)
    sorted by owner then value. When k > m/2 the complement (m - k values to leave out) is
    drawn instead, so rejection never has to fight a nearly full range."""
    m = np.asarray(m, np.int64)
    k = np.asarray(k, np.int64)
    if np.any(k > m) or np.any(k < 0):
        raise ValueError("need 0 <= k <= m for every owner")
    dense = 2 * k > m
    sparse_k = np.where(dense, 0, k)
    o1, v1 = _distinct_draws(m, sparse_k, rng)
    # Dense owners: enumerate range(m) and drop a uniform (m - k)-subset.
    excl_k = np.where(dense, m - k, 0)
    oe, ve = _distinct_draws(m, excl_k, rng)
    dense_ids = np.flatnonzero(dense)
    o2 = np.repeat(dense_ids, m[dense_ids])
    v2 = _rank_in_group(o2)
    width = m.max() + 1 if m.size else 1
    excluded = oe * width + ve  # sorted
    key = o2 * width + v2
    at = np.minimum(np.searchsorted(excluded, key), max(excluded.size - 1, 0))
    keep = ~(excluded[at] == key) if excluded.size else np.ones(key.size, bool)
    keys = np.sort(np.r_[o1 * width + v1, key[keep]])
    return keys // width, keys % width


def sample_negatives(
    user: np.ndarray, item: np.ndarray, ratio: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Negatives of one domain: for user u with n_u positive rows,
    n_neg = min(int(n_u / r), |pool \\ items_u|) items drawn uniformly without replacement
    from pool \\ items_u, where pool = items with a positive in the domain.
    Returns (user, item) arrays of negatives."""
    pool = _unique(item)
    users, n_u = _unique(user, return_counts=True)
    # Distinct (user index, pool position) pairs, sorted by user then item.
    width = len(pool) + 1
    pair = _unique(np.searchsorted(users, user) * width + np.searchsorted(pool, item))
    pair_user, pair_pos = pair // width, pair % width
    s_u = np.bincount(pair_user, minlength=len(users))
    m_u = len(pool) - s_u  # candidates left for each user
    # IEEE-754 double division truncated toward zero, exactly as int(n_u / r) in Python.
    want = np.trunc(n_u.astype(np.float64) / float(ratio)).astype(np.int64)
    k_u = np.minimum(want, m_u)
    owner, j = sample_without_replacement(m_u, k_u, rng)
    # Map j (index among the user's candidates) to a pool position: skip the user's own
    # positives. With the user's positive positions p_0 < p_1 < ..., q_t = p_t - t counts
    # candidates before p_t, and position(j) = j + #{t : q_t <= j}.
    q = pair_pos - _rank_in_group(pair_user)
    qkey = pair_user * width + q  # sorted: pairs are sorted by user, q non-decreasing
    starts = _segments(pair_user, len(users))
    n_skip = np.searchsorted(qkey, owner * width + j, side="right") - starts[owner]
    return users[owner], pool[j + n_skip]


def split_labels(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0/1/2 (train/val/test) per row, 60/20/20 within each label class (stratified):
    per class of n rows, int(0.2 n) go to val, int(0.2 n) to test, the rest to train."""
    split = np.zeros(label.size, np.int8)
    for cls in (0, 1):
        idx = np.flatnonzero(label == cls)
        idx = idx[rng.permutation(idx.size)]
        n_val = int(VAL_FRACTION * idx.size)
        n_test = int(TEST_FRACTION * idx.size)
        split[idx[:n_val]] = 1
        split[idx[n_val : n_val + n_test]] = 2
    return split


def make_samples(pos: pl.DataFrame, ratios: list[float], seed: int) -> pl.DataFrame:
    """Positives (user_id, item_id, domain_id) -> all samples with label and split.

    Rows come out sorted by domain, then in a seeded random order. The input's row order
    does not matter: positives are sorted first."""
    pos = pos.sort("domain_id", "user_id", "item_id")
    dom = pos["domain_id"].to_numpy()
    users, items = pos["user_id"].to_numpy(), pos["item_id"].to_numpy()
    bounds = np.searchsorted(dom, np.arange(len(ratios) + 1))
    frames = []
    for d, ratio in enumerate(ratios):
        rng = np.random.default_rng(np.random.SeedSequence([seed, d]))
        u = users[bounds[d] : bounds[d + 1]]
        i = items[bounds[d] : bounds[d + 1]]
        nu, ni = sample_negatives(u, i, ratio, rng)
        user = np.r_[u, nu]
        item = np.r_[i, ni]
        label = np.r_[np.ones(u.size, np.int8), np.zeros(nu.size, np.int8)]
        split = split_labels(label, rng)
        order = rng.permutation(user.size)
        frames.append(
            pl.DataFrame(
                {
                    "user_id": user[order].astype(np.int64),
                    "item_id": item[order].astype(np.int64),
                    "domain_id": np.full(user.size, d, np.int16),
                    "label": label[order],
                    "split": split[order],
                }
            )
        )
    return pl.concat(frames)
