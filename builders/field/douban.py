"""douban: the Kaggle Douban dataset (fengzhujoey, "douban-datasetratingreviewside-
information") in book, music and movie domains as Scenario-Wise Rec builds it (github
Xiaopengli1/Scenario-Wise-Rec, `scripts/data/douban/data_process.py` and
`scripts/run_douban_rank_multi_domain.py`, `get_doubandata_rank_multidomain`):

- every review of `bookreviews_cleaned.txt`, `musicreviews_cleaned.txt` and
  `moviereviews_cleaned.txt` is a sample; label 1 when rating > 3;
- domains in the run script's `mapping`: book (0), music (1), movie (2);
- items are numbered per domain (the script offsets each domain's item ids);
- user fields from `users_cleaned.txt` (left join on UID): living_place, and the joined
  time's month bin: `pd.cut` over the month ends 2005-03-31 .. 2018-03-31 (bin k holds
  times in (end k, end k+1]; outside them, none);
- split: random 80/10/10 over all rows.

The user supplies the files (a Kaggle login): tab-separated, a header line, fields in double
quotes, as in the archive's `douban_dataset(text information)/` folder.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.field.common import (
    drop_bad,
    need_raw_dir,
    planted_labels,
    read_quoted,
    write_text,
)
from mdrbench.builders.table import Field

PAGE = "https://www.kaggle.com/datasets/fengzhujoey/douban-datasetratingreviewside-information"
SUBDIR = "douban_dataset(text information)"
DOMAINS = {"book": "bookreviews_cleaned.txt", "music": "musicreviews_cleaned.txt",
           "movie": "moviereviews_cleaned.txt"}  # fmt: skip
USERS = "users_cleaned.txt"
FIELDS = [Field("living_place", "categorical", "user"), Field("time_bin", "categorical", "user")]
USER_SUPPLIED = True  # a login: the build never downloads them
HELP = (
    f"The Douban files need a Kaggle login: download the archive from {PAGE}, and pass its "
    f"folder '{SUBDIR}' (or one holding its files) as --raw-dir. Needed: {USERS} (UID, "
    "living_place, join_time, ...) and " + ", ".join(DOMAINS.values())
    + " (user_id, book_id / music_id / movie_id, rating, ...): tab-separated with a header."
)


def time_bins(join_time: pl.Series) -> pl.Series:
    """Scenario-Wise Rec's `time_bin` of each join time: `pd.cut(join_time, pd.date_range(
    '2005-03', '2018-04', freq='M'))`, bin k = (month end k, month end k + 1] over the month
    ends 2005-03-31 .. 2018-03-31 at midnight; null outside (or unparsable)."""
    t = join_time.str.strip_chars().str.to_datetime(strict=False, time_unit="us")
    frame = pl.DataFrame({"t": t})
    month = (pl.col("t").dt.year() - 2005) * 12 + pl.col("t").dt.month() - 1  # 2005-01 = 0
    past_end = (pl.col("t").dt.day() == pl.col("t").dt.month_end().dt.day()) & (
        pl.col("t") != pl.col("t").dt.truncate("1d")
    )  # after its month's end at midnight: the next bin
    k = month.cast(pl.Int32) - 3 + past_end.cast(pl.Int32)
    out = frame.select(pl.when(k.is_between(0, 155)).then(k).otherwise(None).alias("time_bin"))
    return out["time_bin"]


def read(raw_dir: Path | None, *, on_bad_lines: str, offline: bool, progress: bool, seed: int = 0):
    raw_dir = need_raw_dir(raw_dir, "douban", HELP)
    if not (raw_dir / USERS).is_file() and (raw_dir / SUBDIR / USERS).is_file():
        raw_dir = raw_dir / SUBDIR
    infos, frames, offset = {}, [], 0
    for d, (domain, fname) in enumerate(DOMAINS.items()):
        id_col = f"{domain}_id"
        df, info = read_quoted(raw_dir / fname, ["user_id", id_col, "rating"], sep="\t", help_text=HELP)
        rating = df["rating"].str.strip_chars().cast(pl.Float64, strict=False)
        bad = rating.is_null() | df["user_id"].is_null() | df[id_col].is_null()
        df = drop_bad(df.with_columns(rating=rating), bad, "user_id, item id and a numeric "
                      "rating needed", raw_dir / fname, on_bad_lines, info, first_line=2)  # fmt: skip
        infos[fname] = info
        frames.append(df.with_row_index("_row", offset).select(
            pl.col("user_id").str.strip_chars().alias("user"),
            (pl.lit(f"{domain}:") + pl.col(id_col).str.strip_chars()).alias("item"),
            pl.lit(d, pl.Int16).alias("domain_id"),
            (pl.col("rating") > 3).cast(pl.Int8).alias("label"), "_row",
        ))  # fmt: skip
        offset += df.height
    users, infos[USERS] = read_quoted(raw_dir / USERS, ["UID", "living_place", "join_time"], sep="\t",
                                   help_text=HELP)
    users = users.select(
        pl.col("UID").str.strip_chars().alias("user"), "living_place",
        time_bins(users["join_time"]).alias("time_bin"),
    ).unique("user", keep="first", maintain_order=True)  # fmt: skip
    table = pl.concat(frames).join(users, on="user", how="left", maintain_order="left")
    return table, FIELDS, infos


_PLACES = ("北京", "上海", "浙江杭州", "广东广州", "四川成都", "")


def synthesize(out: Path, *, scale: int = 1, seed: int = 0) -> Path:
    """users_cleaned.txt and the three review files in the Kaggle archive's format
    (tab-separated, quoted, a header), ratings from a planted structure."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 100 * scale, 70 * scale
    out.mkdir(parents=True, exist_ok=True)

    def q(*fields) -> str:
        return "\t".join(f'"{f}"' for f in fields) + "\n"

    users = q("UID", "living_place", "join_time", "self_statement", "year")
    for u in range(n_users):
        day = datetime(2005, 3, 25).timestamp() + rng.integers(0, 13 * 365) * 86400
        users += q(f"u{u}", rng.choice(_PLACES), datetime.fromtimestamp(day).strftime("%Y-%m-%d"),
                   "书影音", 2018)  # fmt: skip
    write_text(out / USERS, users)
    for d, (domain, fname) in enumerate(DOMAINS.items()):
        n = (300 + 200 * d) * scale
        user = rng.integers(0, n_users - 2, n)  # the last two users review nothing
        item = rng.integers(0, n_items, n)
        score = planted_labels(rng, user, item, np.full(n, d), n_users, n_items, 3)
        rating = np.clip(np.round(3.4 + score), 1, 5).astype(int)
        text = q("user_id", f"{domain}_id", "rating", "labels", "comment", "useful_num", "time",
                 "ID")  # fmt: skip
        for j in range(n):
            text += q(f"u{user[j]}", 1000 + item[j], rating[j], "经典\t推荐", f"第{j}条", j % 7,
                      "2012-01-03", j + 1)  # fmt: skip
        write_text(out / fname, text)
    return out
