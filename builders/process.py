"""From positives to samples: global ids, negatives per domain CTR ratio, the authors' split.

Everything here is vectorized NumPy over sorted arrays and seeded with
`numpy.random.default_rng`, so the output depends only on the inputs and the seed (not on
thread counts or dict order), and no Python loop runs per user or per sample.
"""

from __future__ import annotations

import numpy as np
import polars as pl

SPLITS = ("train", "val", "test")
# The authors' `split_stratified_into_train_val_test` (utils/tool.py) with their configs'
# train_val_test = [0.6, 0.2, 0.2]: test_size 1.0 - 0.6 first, then 0.2 / (0.2 + 0.2).
HOLDOUT_FRACTION = 1.0 - 0.6
TEST_OF_HOLDOUT = 0.2 / (0.2 + 0.2)
# The split a manifest names (its `split` field), and what it means, for cards and docs.
SPLIT = {
    "rule": "mamdr-per-user",
    "train_val_test": [0.6, 0.2, 0.2],
    "source": "RManLuo/MAMDR dataset/*/split.py (save_train_val_test), "
    "utils/tool.py (split_stratified_into_train_val_test)",
}
SPLIT_DESCRIPTION = (
    "60/20/20 train/val/test as the authors' code (github RManLuo/MAMDR) splits "
    "(`dataset/Amazon/split.py`, "
    "`dataset/Taobao/split.py`: `save_train_val_test`; `utils/tool.py`: "
    "`split_stratified_into_train_val_test`): per domain, the positives are split once and "
    "each user's negatives are split on their own; every split has sklearn "
    "`train_test_split`'s sizes, taken twice (test_size 0.4, then 0.5 of that part: "
    "n_test = ceil(test_size * n)), so a part of 2 rows gives 1/0/1 and one of 3 gives 1/1/1; "
    "a single row, which sklearn refuses to split, goes to train. Which rows go where is a "
    "seeded draw of mdrbench's own."
)

# The manifest's `split` of builds made from a table, by `--split` option (builders/table.py;
# docs/format.md).
SPLIT_RULES = {
    "authors": SPLIT,
    "random": {
        "rule": "random",
        "train_val_test": [0.8, 0.1, 0.1],
        "source": "Xiaopengli1/Scenario-Wise-Rec scenario_wise_rec/utils/data.py "
        "(DataGenerator.generate_dataloader, split_ratio=[0.8, 0.1])",
    },
    "time": {"rule": "time-per-user", "train_val_test": [0.8, 0.1, 0.1]},
    "given": {"rule": "given"},
}
SPLIT_DESCRIPTIONS = {
    "random": "one seeded random permutation of all rows (numpy default_rng(seed)): the first "
    "int(0.8 n) rows train, the next int(0.1 n) val, the rest test, the sizes of Scenario-Wise "
    "Rec's `DataGenerator.generate_dataloader(split_ratio=[0.8, 0.1])` (its rows come from "
    "torch's `random_split`, which mdrbench does not reproduce).",
    "time-per-user": "per user, the user's rows in timestamp order (ties in input order): the "
    "first round(0.8 m) train, up to round(0.9 m) val, the rest test (m: the user's rows; "
    "round half up). With sampled negatives, each user's negatives are split in the same "
    "sizes in a seeded random order.",
    "given": "the split the source files define (see the recipe above).",
}


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
    user: np.ndarray,
    item: np.ndarray,
    ratio: float,
    rng: np.random.Generator,
    per_positive: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Negatives of one domain: for user u with n_u positive rows,
    n_neg = min(int(n_u / r), |pool \\ items_u|) items drawn uniformly without replacement
    from pool \\ items_u, where pool = items with a positive in the domain.
    `per_positive` R (instead of r = 1/R): int(n_u * R), without 1/R's rounding.
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
    if per_positive is None:
        want = np.trunc(n_u.astype(np.float64) / float(ratio)).astype(np.int64)
    else:
        want = np.trunc(n_u.astype(np.float64) * float(per_positive)).astype(np.int64)
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


def holdout_size(n: np.ndarray, fraction: float) -> np.ndarray:
    """Rows sklearn's `train_test_split(..., test_size=fraction)` puts in its test part for
    parts of n rows: ceil(fraction * n) in doubles (`_validate_shuffle_split`), for n >= 2.
    sklearn refuses n = 1 (its train part would be empty); here that row stays out (0)."""
    n = np.asarray(n, np.int64)
    return np.where(n >= 2, np.ceil(fraction * n.astype(np.float64)).astype(np.int64), 0)


def split_sizes(n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_train, n_val, n_test) for parts of n rows, as the authors'
    `split_stratified_into_train_val_test` (utils/tool.py) sizes them: `train_test_split`
    with test_size 0.4 (the rest is train), then, when that 40 % part has more than one row,
    with test_size 0.5 of it (val / test); a 40 % part of one row goes to test. A single
    row (the authors' run would stop there) goes to train."""
    n = np.asarray(n, np.int64)
    held = holdout_size(n, HOLDOUT_FRACTION)
    n_test = np.where(held == 1, 1, holdout_size(held, TEST_OF_HOLDOUT))
    return n - held, held - n_test, n_test


def split_groups(group: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0/1/2 (train/val/test) per row, each group of rows split on its own by `split_sizes`.

    `group` holds a group number per row (any order; already sorted is fastest). Which rows
    of a group go where is a uniform seeded draw: within each group the rows are ordered by a
    random 32-bit key (ties by input order), and the first n_train go to train, the next
    n_val to val, the rest to test. One stable sort of (group, key) pairs, no Python loop
    per group; a stable sort, so the result does not depend on the machine."""
    group = np.asarray(group)
    if group.size == 0:
        return np.zeros(0, np.int8)
    by_group = np.argsort(group, kind="stable")
    sorted_group = group[by_group]
    first = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.r_[starts, group.size])
    key = (np.cumsum(first, dtype=np.int64) - 1) << 32  # group's place, then a random key
    key |= rng.integers(0, 1 << 32, group.size, dtype=np.int64)
    order = by_group[np.argsort(key, kind="stable")]
    n_train, n_val, _ = split_sizes(sizes)
    rank = np.arange(group.size) - np.repeat(starts, sizes)  # place within the group
    split = (rank >= np.repeat(n_train, sizes)).astype(np.int8)
    split += rank >= np.repeat(n_train + n_val, sizes)
    out = np.empty(group.size, np.int8)
    out[order] = split
    return out


def make_samples(
    pos: pl.DataFrame, ratios: list[float], seed: int, per_positive: float | None = None
) -> pl.DataFrame:
    """Positives (user_id, item_id, domain_id) -> all samples with label and split.
    `per_positive`: R negatives per positive in every domain (`sample_negatives`).

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
        nu, ni = sample_negatives(u, i, ratio, rng, per_positive)
        user = np.r_[u, nu]
        item = np.r_[i, ni]
        label = np.r_[np.ones(u.size, np.int8), np.zeros(nu.size, np.int8)]
        # The authors' grouping: all positives of the domain form one group (-1), each
        # user's negatives another (dataset/*/split.py, `split_by_category/theme`).
        split = split_groups(np.r_[np.full(u.size, -1, np.int64), nu], rng)
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
