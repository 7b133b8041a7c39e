"""amazon-swr: three Amazon 2014 5-core categories as Scenario-Wise Rec builds them (github
Xiaopengli1/Scenario-Wise-Rec, `scripts/data/amazon_5_core/data_process.py` and
`scripts/run_amazon_ctr_multi_domain.py`, `get_amazon_data_dict`):

- domains: Beauty (0), Clothing Shoes and Jewelry (1), Health and Personal Care (2);
- every review line is a sample (no de-duplication), label 1 when int(overall) > 3;
- no side fields (its sparse features are the user and item ids only);
- split: random 80/10/10 over all rows.

Raw files: `reviews_<Category>_5.json.gz` of the Amazon 2014 release (McAuley et al.),
one JSON object per line with reviewerID, asin, overall (the same reader as the MAMDR
Amazon builders, builders/raw.py `read_amazon`, keeping every line).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.field.common import planted_labels
from mdrbench.builders.raw import read_amazon
from mdrbench.errors import UserError

URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
CATEGORIES = ("Beauty", "Clothing Shoes and Jewelry", "Health and Personal Care")
HELP = (
    "The Amazon 2014 5-core files come from the McAuley lab (jmcauley.ucsd.edu/data/amazon/, "
    f"files at {URL}): the build downloads reviews_Beauty_5.json.gz, "
    "reviews_Clothing_Shoes_and_Jewelry_5.json.gz and reviews_Health_and_Personal_Care_5.json.gz "
    "into --raw-dir, or put them there yourself (gzip JSON Lines: reviewerID, asin, overall)."
)


def file_name(category: str) -> str:
    return "reviews_" + category.replace(" ", "_") + "_5.json.gz"


def _ensure(raw_dir: Path, offline: bool, progress: bool) -> None:
    missing = [c for c in CATEGORIES if not (raw_dir / file_name(c)).is_file()]
    if not missing:
        return
    if offline:
        names = ", ".join(file_name(c) for c in missing)
        raise UserError(f"missing {names} in {raw_dir} and --offline was given.\n{HELP}")
    from mdrbench.builders.download import download, gzip_problem

    raw_dir.mkdir(parents=True, exist_ok=True)
    for c in missing:
        download([URL + file_name(c)], raw_dir / file_name(c), progress=progress,
                 check=gzip_problem)  # fmt: skip


def read(raw_dir: Path, *, on_bad_lines: str, offline: bool, progress: bool, seed: int = 0):
    _ensure(raw_dir, offline, progress)
    frames, infos = [], {}
    for d, c in enumerate(CATEGORIES):
        df, infos[file_name(c)] = read_amazon(raw_dir / file_name(c), on_bad_lines, unique=False)
        frames.append(df.with_columns(domain_id=pl.lit(d, pl.Int16)))
    table = pl.concat(frames).with_row_index("_row").select(
        pl.col("reviewerID").alias("user"), pl.col("asin").alias("item"), "domain_id",
        (pl.col("overall").cast(pl.Int64) > 3).cast(pl.Int8).alias("label"), "_row",
    )  # fmt: skip
    return table, [], infos


def synthesize(out: Path, *, scale: int = 1, seed: int = 0) -> Path:
    """Three `reviews_<Category>_5.json.gz` files in the 2014 format (reviewerID, asin,
    reviewerName, helpful, reviewText, overall, summary, unixReviewTime, reviewTime), users
    shared across categories, ratings from a planted structure."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 150 * scale, 60 * scale
    users = np.array([f"A{x:013d}" for x in rng.choice(10**12, n_users, replace=False)])
    out.mkdir(parents=True, exist_ok=True)
    for d, c in enumerate(CATEGORIES):
        items = np.array([f"B{d}{x:08d}" for x in range(n_items)])
        active = rng.choice(n_users, n_users * 2 // 3, replace=False)
        k = 5 + rng.poisson(3, active.size)  # 5-core: every user has 5 reviews or more
        user = np.repeat(active, k)
        item = np.concatenate([rng.choice(n_items, n, replace=False) for n in k])
        score = planted_labels(rng, user, item, np.full(user.size, d), n_users, n_items, 3)
        overall = np.clip(np.round(3.6 + score), 1, 5)
        t = 1_300_000_000 + rng.integers(0, 10**8, user.size)
        lines = []
        for u, i, r, ts in zip(user, item, overall, t):
            lines.append(json.dumps({
                "reviewerID": users[u], "asin": items[i], "reviewerName": "J. Doe",
                "helpful": [int(ts % 3), int(ts % 5)], "reviewText": "Works as described.",
                "overall": float(r), "summary": "Fine", "unixReviewTime": int(ts),
                "reviewTime": "01 2, 2013",
            }))  # fmt: skip
        tmp = out / f".{file_name(c)}.part"
        with gzip.GzipFile(tmp, "wb", mtime=0) as f:
            f.write(("\n".join(lines) + "\n").encode())
        tmp.replace(out / file_name(c))
    return out
