"""The Taobao writer: the five CSV files of the Taobao Cloud Theme Click dataset (clicks,
user and item embeddings, theme item pools, purchases), drawn from the planted structure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.synth.planted import (
    _EMB_DIM,
    _EMB_NOISE,
    _MIN_ROWS,
    KC,
    KS,
    POP,
    _allocate,
    _atomic_write,
    _centers,
    _choose,
    _counts,
    _domain_user_vectors,
    _latents,
    _sample_weighted,
    _unique_ints,
)

_T0 = 1543593600  # 2018-11-30 16:00:00 UTC (2018-12-01 00:00 in Beijing)


def _fmt_time(ts: np.ndarray) -> pl.Series:
    return pl.from_epoch(pl.Series(ts.astype(np.int64)), time_unit="s").dt.strftime("%Y%m%d%H%M%S")


def _emb_strings(x: np.ndarray) -> pl.Series:
    x = np.round(x.astype(np.float64), 4) + 0.0  # + 0.0: no "-0.0"
    s = pl.Series("emb", x.astype(np.float32))
    return s.cast(pl.List(pl.Float32)).list.eval(pl.element().cast(pl.String)).list.join(" ")


def _write_csv(path: Path, df: pl.DataFrame) -> None:
    _atomic_write(path, lambda f: df.write_csv(f, quote_style="necessary", line_terminator="\n"))


def _taobao(out: Path, prof: list[dict], total: int, rng: np.random.Generator) -> None:
    n = len(prof)
    shares = np.array([p["share"] for p in prof])
    rows = _allocate(total, shares, _MIN_ROWS)
    n_re = (rows * 0.06).astype(np.int64)  # re-click rows: duplicate (user, item, theme)
    n_pos = rows - n_re
    user_deg, item_deg = 1.6, 6.0
    m = np.maximum(1, np.round(n_pos / user_deg)).astype(np.int64)
    pool = np.maximum(np.minimum(30, 2 * n_pos), np.round(n_pos / item_deg * 1.3)).astype(np.int64)

    n_users = int(max(m.max(), round(m.sum() / 1.3)))
    centers = _centers(rng)
    u_lat = _latents(rng, n_users, centers)
    u_act = rng.normal(0.0, 1.0, size=n_users)
    n_items = int(max(pool.max(), round(pool.sum() / 1.25)))
    i_lat = _latents(rng, n_items, centers)
    i_pop = rng.normal(0.0, 1.0, size=n_items).astype(np.float32)
    pools = [np.sort(rng.choice(n_items, size=int(pool[d]), replace=False)) for d in range(n)]

    user_ids = _unique_ints(rng, n_users, 10_000_000, 2_000_000_000)
    item_ids = _unique_ints(rng, n_items, 1_000_000, 600_000_000)
    theme_ids = _unique_ints(rng, n, 1_000, 100_000)
    if n >= 2 and np.all(np.diff(theme_ids) > 0):
        theme_ids[[0, 1]] = theme_ids[[1, 0]]
    n_leaf = max(10, n_items // 25)
    leaf_ids = _unique_ints(rng, n_leaf, 50_000, 200_000_000)
    l1_ids = _unique_ints(rng, max(3, n_leaf // 15), 1_000, 200_000_000)
    leaf_of = rng.integers(0, n_leaf, n_items)
    l1_of_leaf = rng.integers(0, len(l1_ids), n_leaf)

    t_start = _T0 + np.cumsum(rng.integers(3_600, 6 * 3_600, size=n))  # themes launch in turn
    parts = []
    for d, p in enumerate(prof):
        users = _sample_weighted(rng, u_act, int(m[d]))
        counts = _counts(
            rng,
            int(n_pos[d]),
            len(users),
            1,
            np.exp(0.5 * u_act[users]),
            max(1, len(pools[d]) // 2),
        )
        users = users[: len(counts)]
        uvec = _domain_user_vectors(u_lat[users], np.asarray(p["conflict_weights"]))
        bias = POP * (i_pop[pools[d]] + 0.5 * rng.standard_normal(len(pools[d])).astype(np.float32))
        ul, il, _ = _choose(rng, uvec, i_lat[pools[d]], bias, counts)
        gu, gi = users[ul], pools[d][il]
        # re-clicks: the same (user, item, theme) again later; fill up to the wanted row count
        k = len(gu)
        extra = int(rows[d]) - k
        off = np.minimum(np.floor(rng.exponential(2 * 86_400, k)), 14 * 86_400).astype(np.int64) + 1
        if extra > 0 and k:
            again = rng.integers(0, k, size=extra)
            gu = np.concatenate([gu, gu[again]])
            gi = np.concatenate([gi, gi[again]])
            off = np.concatenate([off, off[again] + rng.integers(60, 3 * 86_400, size=extra)])
        clk = np.where(rng.random(len(gu)) < 0.9, 1, rng.integers(2, 4, size=len(gu)))
        parts.append((np.full(len(gu), d), gu, gi, off, clk))
    dom = np.concatenate([x[0] for x in parts])
    gu = np.concatenate([x[1] for x in parts])
    gi = np.concatenate([x[2] for x in parts])
    off = np.concatenate([x[3] for x in parts])
    clk = np.concatenate([x[4] for x in parts])

    # anchor: one row per theme at exactly the theme's start, so theme d appears first before
    # theme d + 1, with or without the rows whose user or item has no embedding.
    first_of = np.searchsorted(dom, np.arange(n))
    has_rows = first_of < np.append(first_of[1:], len(dom))
    anchor = first_of[has_rows]
    off[anchor] = 0
    # users / items without embeddings: ~2% / ~1.5% of those clicked, never an anchor's
    clicked_u = np.unique(gu)
    clicked_i = np.unique(gi)
    safe_u, safe_i = set(gu[anchor].tolist()), set(gi[anchor].tolist())
    cand_u = np.array([u for u in clicked_u.tolist() if u not in safe_u], dtype=np.int64)
    cand_i = np.array([i for i in clicked_i.tolist() if i not in safe_i], dtype=np.int64)
    no_emb_u = (
        rng.choice(cand_u, size=int(round(0.02 * len(clicked_u))), replace=False)
        if len(cand_u)
        else cand_u
    )
    no_emb_i = (
        rng.choice(cand_i, size=int(round(0.015 * len(clicked_i))), replace=False)
        if len(cand_i)
        else cand_i
    )
    if len(cand_u) and len(no_emb_u) == 0:
        no_emb_u = cand_u[:1]
    if len(cand_i) and len(no_emb_i) == 0:
        no_emb_i = cand_i[:1]

    ts = t_start[dom] + off
    order = np.lexsort((gi, gu, ts))
    dom, gu, gi, ts, clk = dom[order], gu[order], gi[order], ts[order], clk[order]
    click = pl.DataFrame(
        {
            "user_id": user_ids[gu],
            "theme_id": theme_ids[dom],
            "item_id": item_ids[gi],
            "leaf_cate_id": leaf_ids[leaf_of[gi]],
            "cate_level1_id": l1_ids[l1_of_leaf[leaf_of[gi]]],
            "clk_cnt": clk,
            "reach_time": _fmt_time(ts),
        }
    )
    _write_csv(out / "theme_click_log.csv", click)

    # embeddings: noisy linear maps of the latent vectors (items also carry popularity)
    wu = rng.standard_normal((KS + KC, _EMB_DIM)).astype(np.float32) / math.sqrt(KS + KC)
    wi = rng.standard_normal((KS + KC + 1, _EMB_DIM)).astype(np.float32) / math.sqrt(KS + KC + 1)
    extra_u = rng.choice(np.setdiff1d(np.arange(n_users), clicked_u), size=min(n_users - len(clicked_u), len(clicked_u) // 20), replace=False)  # fmt: skip
    emb_u = np.setdiff1d(np.concatenate([clicked_u, extra_u]), no_emb_u)
    emb_u = emb_u[rng.permutation(len(emb_u))]
    in_pool = np.unique(np.concatenate(pools))
    emb_i = np.setdiff1d(in_pool, no_emb_i)
    emb_i = emb_i[rng.permutation(len(emb_i))]

    def emb_frame(idx, lat, w, id_col, ids):
        parts = []
        step = 100_000
        for s in range(0, len(idx), step):
            j = idx[s : s + step]
            x = 0.25 * (
                lat(j) @ w + _EMB_NOISE * rng.standard_normal((len(j), _EMB_DIM)).astype(np.float32)
            )
            parts.append(pl.DataFrame({id_col: ids[j], "emb": _emb_strings(x)}))
        if not parts:
            return pl.DataFrame(
                {id_col: pl.Series([], dtype=pl.Int64), "emb": pl.Series([], dtype=pl.String)}
            )
        return pl.concat(parts)

    _write_csv(
        out / "user_embedding.csv", emb_frame(emb_u, lambda j: u_lat[j], wu, "user_id", user_ids)
    )
    _write_csv(
        out / "item_embedding.csv",
        emb_frame(
            emb_i,
            lambda j: np.concatenate([i_lat[j], i_pop[j, None]], axis=1),
            wi,
            "item_id",
            item_ids,
        ),
    )

    pool_df = pl.DataFrame(
        {
            "theme_id": np.concatenate([np.full(len(pools[d]), theme_ids[d]) for d in range(n)]),
            "item_id": item_ids[
                np.concatenate([pools[d][rng.permutation(len(pools[d]))] for d in range(n)])
            ],
        }
    )
    _write_csv(out / "theme_item_pool.csv", pool_df)

    # purchases: ~3% of clicks lead to a purchase a little later
    buy = np.flatnonzero(rng.random(len(gu)) < 0.03)
    pay = ts[buy] + rng.integers(120, 5 * 86_400, size=len(buy))
    o = np.argsort(pay, kind="stable")
    buy_df = pl.DataFrame(
        {
            "user_id": user_ids[gu[buy][o]],
            "item_id": item_ids[gi[buy][o]],
            "paytime": _fmt_time(pay[o]),
        }
    )
    _write_csv(out / "user_item_purchase_log.csv", buy_df)
