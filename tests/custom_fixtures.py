"""A small multi-domain table with side fields, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def custom_table(n_users=60, n_items=40, rows=1500, seed=0) -> pl.DataFrame:
    """Columns: user (text), item (int), domain (text, 3 domains), clicked (0/1), ts (int),
    city (user field), brand (item field), price (dense, item), and dwell (dense, per row).
    Labels follow a planted user x item x domain score, so models learn something."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, rows)
    item = rng.integers(0, n_items, rows)
    domain = rng.integers(0, 3, rows)
    a_u, a_i = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    twist = rng.normal(size=(3, 3))
    score = (a_u[user] * a_i[item] * (1 + twist[domain])).sum(1) + rng.normal(0, 0.5, rows)
    city = np.array(["paris", "lyon", "nice", "lille"])[rng.integers(0, 4, n_users)]
    brand = rng.integers(0, 7, n_items)
    price = rng.gamma(2.0, 10.0, n_items).round(2)
    return pl.DataFrame({
        "user": [f"u{u:03d}" for u in user],
        "item": item,
        "domain": np.array(["books", "music", "video"])[domain],
        "clicked": (score > 0).astype(np.int64),
        "ts": 1_600_000_000 + rng.integers(0, 10_000_000, rows),
        "city": city[user],
        "brand": brand[item],
        "price": price[item],
        "dwell": rng.exponential(30.0, rows).round(1),
    })


def write_custom(path: Path, **kw) -> Path:
    df = custom_table(**kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        df.write_csv(path)
    else:
        df.write_parquet(path)
    return path
