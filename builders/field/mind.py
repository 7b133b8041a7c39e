"""mind: MIND (Microsoft News) in four news-category domains as Scenario-Wise Rec builds it
(github Xiaopengli1/Scenario-Wise-Rec, `scripts/data/mind/data_process.py` and
`scripts/run_mind_ctr_multi_domain.py`, `get_mind_data_multidomain`):

- the train and dev parts' impression logs (`behaviors.tsv`), each shown news of an
  impression a sample, label its click flag (`N123-1` -> 1);
- each news' Category from the same part's `news.tsv`; rows of the categories news (0),
  lifestyle (1), sports (2), finance (3) are kept, in that id order (its `mapping`);
- field: SubCategory (the news', an item field);
- split: random 80/10/10 over all rows.

Raw folders: `train/` and `dev/`, each with `behaviors.tsv` (ImpressionID, UserID, Time,
History, Impressions; no header) and `news.tsv` (NewsID, Category, SubCategory, Title,
Abstract, URL, TitleEntities, AbstractEntities; no header), as in MINDlarge_train.zip and
MINDlarge_dev.zip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.field.common import (
    drop_bad,
    ensure_files,
    planted_labels,
    read_delimited,
    write_text,
)
from mdrbench.builders.table import Field

URL = "https://mind201910small.blob.core.windows.net/release/MINDlarge_{part}.zip"
PARTS = ("train", "dev")
BEHAVIORS = ["ImpressionID", "UserID", "Time", "History", "Impressions"]
NEWS = ["NewsID", "Category", "SubCategory", "Title", "Abstract", "URL", "TitleEntities",
        "AbstractEntities"]  # fmt: skip
CATEGORIES = ("news", "lifestyle", "sports", "finance")
FIELDS = [Field("subcategory", "categorical", "item")]
HELP = (
    "MIND comes from Microsoft (msnews.github.io): the build downloads MINDlarge_train.zip and "
    "MINDlarge_dev.zip into --raw-dir/train and --raw-dir/dev and takes behaviors.tsv and "
    "news.tsv from them, or put those two files in train/ and dev/ yourself."
)


def read(raw_dir: Path, *, on_bad_lines: str, offline: bool, progress: bool, seed: int = 0):
    frames, infos, offset = [], {}, 0
    for part in PARTS:
        folder = raw_dir / part
        ensure_files(folder, ["behaviors.tsv", "news.tsv"], URL.format(part=part),
                     {"behaviors.tsv": "behaviors.tsv", "news.tsv": "news.tsv"},
                     offline=offline, progress=progress, help_text=HELP)  # fmt: skip
        beh, infos[f"{part}/behaviors.tsv"] = read_delimited(
            folder / "behaviors.tsv", BEHAVIORS, sep=b"\t", on_bad_lines=on_bad_lines,
            help_text=HELP)  # fmt: skip
        news, infos[f"{part}/news.tsv"] = read_delimited(
            folder / "news.tsv", NEWS, sep=b"\t", on_bad_lines=on_bad_lines, help_text=HELP)
        shown = (
            beh.with_row_index("_line", 1)
            .select("_line", pl.col("UserID").alias("user"),
                    pl.col("Impressions").str.strip_chars().str.split(" ").alias("imp"))
            .explode("imp")
            .with_columns(pl.col("imp").str.split("-").alias("p"))
            .select("_line", "user", pl.col("p").list.first().alias("item"),
                    pl.col("p").list.get(1, null_on_oob=True).alias("click"),
                    pl.col("p").list.len().alias("n"))
        )  # fmt: skip
        bad = (shown["n"] != 2) | ~shown["click"].is_in(["0", "1"]) | shown["user"].is_null()
        if bad.any() and on_bad_lines == "error":
            drop_bad(shown.with_columns(pl.col("_line") - 1), bad,
                     "an impression must read NEWSID-0 or NEWSID-1", folder / "behaviors.tsv",
                     on_bad_lines, infos[f"{part}/behaviors.tsv"])  # fmt: skip
        if bad.any():  # skip: a line with a bad impression is dropped whole, counted once
            lines = shown.filter(bad)["_line"].unique()
            infos[f"{part}/behaviors.tsv"].n_bad_lines += len(lines)
            shown = shown.filter(~pl.col("_line").is_in(lines.implode()))
        shown = shown.join(news.select("NewsID", "Category", "SubCategory").unique("NewsID"),
                           left_on="item", right_on="NewsID", how="left", maintain_order="left")  # fmt: skip
        frames.append(shown.with_row_index("_row", offset))
        offset += shown.height
    table = (
        pl.concat(frames)
        .filter(pl.col("Category").is_in(list(CATEGORIES)))
        .select(
            "user", "item",
            pl.col("Category").replace_strict(list(CATEGORIES), list(range(len(CATEGORIES))),
                                              return_dtype=pl.Int16).alias("domain_id"),
            pl.col("click").cast(pl.Int8).alias("label"), "_row",
            pl.col("SubCategory").alias("subcategory"),
        )
    )  # fmt: skip
    return table, FIELDS, infos


_SUB = {"news": ["newsus", "newsworld", "newspolitics"], "lifestyle": ["lifestyleroyals",
        "shop-holidays"], "sports": ["football_nfl", "football_ncaa", "basketball_nba"],
        "finance": ["finance-companies", "markets"], "video": ["viral"], "weather": ["weathertopstories"]}  # fmt: skip


def synthesize(out: Path, *, scale: int = 1, seed: int = 0) -> Path:
    """train/ and dev/ folders with behaviors.tsv and news.tsv in MIND's format (six
    categories, two of which the recipe drops), clicks from a planted structure."""
    rng = np.random.default_rng(seed)
    n_users, n_news = 120 * scale, 80 * scale
    cats = list(_SUB)
    cat = rng.integers(0, len(cats), n_news)
    news_ids = np.array([f"N{x}" for x in rng.choice(10**6, n_news, replace=False)])
    news = "".join(
        f"{news_ids[i]}\t{cats[c]}\t{rng.choice(_SUB[cats[c]])}\tTitle {i}\tAbstract \"{i}\"\t"
        f"https://assets.msn.com/labs/mind/{news_ids[i]}.html\t[]\t[]\n"
        for i, c in enumerate(cat)
    )
    for p, part in enumerate(PARTS):
        folder = out / part
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / "news.tsv", news)
        n_imp = (300 if part == "train" else 100) * scale
        imp_user = rng.integers(0, n_users, n_imp)
        k = rng.integers(3, 9, n_imp)
        user = np.repeat(imp_user, k)
        shown = np.concatenate([rng.choice(n_news, n, replace=False) for n in k])
        score = planted_labels(rng, user, shown, np.minimum(cat[shown], 3), n_users, n_news, 4)
        click = (score > 0.8).astype(int)
        ends = np.cumsum(k)
        lines = []
        for j, u in enumerate(imp_user):
            rows = range(ends[j] - k[j], ends[j])
            hist = " ".join(news_ids[rng.choice(n_news, rng.integers(0, 4), replace=False)])
            imps = " ".join(f"{news_ids[shown[r]]}-{click[r]}" for r in rows)
            lines.append(f"{j + 1 + p * 10**6}\tU{u}\t11/{11 + p}/2019 9:05:58 AM\t{hist}\t{imps}\n")
        write_text(folder / "behaviors.tsv", "".join(lines))
    return out
