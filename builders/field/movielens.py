"""movielens-1m: MovieLens 1M in three domains by age group, as Scenario-Wise Rec builds it
(github Xiaopengli1/Scenario-Wise-Rec, `scripts/run_movielens_rank_multi_domain.py`,
`get_movielens_data_rank_multidomain`):

- every rating is a sample; label 1 when rating > 3 (`convert_target`);
- domains by the user's age code: {1, 18}, {25}, {35, 45, 50, 56} (`map_group_indicator`);
- fields: gender, occupation, zip (user, categorical), the movie's first genre (item,
  categorical; its `cate_id`), age (user, dense, min-max scaled);
- split: random 80/10/10 over all rows (`DataGenerator.generate_dataloader`).

Raw files (GroupLens' ml-1m.zip): `users.dat` (UserID::Gender::Age::Occupation::Zip-code),
`movies.dat` (MovieID::Title::Genres, ISO-8859-1) and `ratings.dat`
(UserID::MovieID::Rating::Timestamp).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.field.common import (
    as_int,
    drop_bad,
    ensure_files,
    planted_labels,
    read_delimited,
    write_text,
)
from mdrbench.builders.table import Field
from mdrbench.errors import UserError

URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
FILES = {
    "users.dat": ["UserID", "Gender", "Age", "Occupation", "Zip-code"],
    "movies.dat": ["MovieID", "Title", "Genres"],
    "ratings.dat": ["UserID", "MovieID", "Rating", "Timestamp"],
}
ENCODING = {"movies.dat": "iso-8859-1"}
AGE_GROUPS = ((1, 18), (25,), (35, 45, 50, 56))
DOMAINS = ("age 1-24", "age 25-34", "age 35+")
FIELDS = [
    Field("gender", "categorical", "user"),
    Field("occupation", "categorical", "user"),
    Field("zip", "categorical", "user"),
    Field("genre", "categorical", "item"),
    Field("age", "dense", "user"),
]
HELP = (
    f"MovieLens 1M comes from GroupLens ({URL}); the build downloads it into --raw-dir, or "
    "put users.dat, movies.dat and ratings.dat (the files of ml-1m.zip) there yourself. "
    "Format: UserID::Gender::Age::Occupation::Zip-code, MovieID::Title::Genres "
    "(ISO-8859-1), UserID::MovieID::Rating::Timestamp."
)


def read(raw_dir: Path, *, on_bad_lines: str, offline: bool, progress: bool, seed: int = 0):
    """(table for `table.build_table`, fields, raw infos)."""
    ensure_files(raw_dir, list(FILES), URL, {n: f"ml-1m/{n}" for n in FILES},
                 offline=offline, progress=progress, help_text=HELP)  # fmt: skip
    frames, infos = {}, {}
    for name, cols in FILES.items():
        path = raw_dir / name
        df, infos[name] = read_delimited(path, cols, sep=b"::", encoding=ENCODING.get(name, "utf-8"),
                                         on_bad_lines=on_bad_lines, help_text=HELP)  # fmt: skip
        ints = {"users.dat": ["UserID", "Age"], "movies.dat": ["MovieID"],
                "ratings.dat": ["UserID", "MovieID", "Rating", "Timestamp"]}[name]  # fmt: skip
        df = as_int(df, ints, path, on_bad_lines, infos[name])
        frames[name] = df
    users, movies, ratings = frames["users.dat"], frames["movies.dat"], frames["ratings.dat"]
    ages = [a for g in AGE_GROUPS for a in g]
    users = drop_bad(users, ~users["Age"].is_in(ages), f"Age must be one of {ages}",
                     raw_dir / "users.dat", on_bad_lines, infos["users.dat"])  # fmt: skip
    ratings = drop_bad(ratings, ~ratings["Rating"].is_between(1, 5), "Rating must be 1 to 5",
                       raw_dir / "ratings.dat", on_bad_lines, infos["ratings.dat"])  # fmt: skip
    for df, key, what in ((users, "UserID", "users.dat"), (movies, "MovieID", "movies.dat")):
        if df[key].is_duplicated().any():
            dup = int(df.filter(df[key].is_duplicated())[key][0])
            raise UserError(f"{raw_dir / what}: {key} {dup} appears twice")
    known = ratings["UserID"].is_in(users["UserID"].implode()) & ratings["MovieID"].is_in(
        movies["MovieID"].implode()
    )
    ratings = drop_bad(ratings, ~known, "UserID or MovieID not in users.dat / movies.dat",
                       raw_dir / "ratings.dat", on_bad_lines, infos["ratings.dat"])  # fmt: skip
    group = pl.lit(None, pl.Int16)
    for d, g in enumerate(AGE_GROUPS):
        group = pl.when(pl.col("age").is_in(list(g))).then(pl.lit(d, pl.Int16)).otherwise(group)
    table = (
        ratings.with_row_index("_row")
        .join(users.rename({"Age": "age", "Gender": "gender", "Occupation": "occupation",
                            "Zip-code": "zip"}), on="UserID", how="left")  # fmt: skip
        .join(movies.select("MovieID", genre=pl.col("Genres").str.split("|").list.first()),
              on="MovieID", how="left")  # fmt: skip
        .sort("_row")
        .select(
            pl.col("UserID").alias("user"), pl.col("MovieID").alias("item"),
            group.alias("domain_id"), (pl.col("Rating") > 3).cast(pl.Int8).alias("label"),
            pl.col("Timestamp").alias("time"), "_row", "gender", "occupation", "zip", "genre",
            "age",
        )  # fmt: skip
    )
    return table, FIELDS, infos


# ------------------------------------------------------------------------ synthetic

_GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
           "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
           "Thriller", "War", "Western")  # fmt: skip
_AGES = np.array([1, 18, 25, 35, 45, 50, 56])
_AGE_SHARE = np.array([222, 1103, 2096, 1193, 550, 496, 380], float)  # users.dat's counts


def synthesize(out: Path, *, scale: int = 1, seed: int = 0) -> Path:
    """users.dat, movies.dat and ratings.dat in ml-1m's format (movies.dat in ISO-8859-1,
    with accented titles; `scale` 1: 300 users, 200 movies), then `write_ratings`."""
    rng = np.random.default_rng(seed)
    n_users, n_movies = 300 * scale, 200 * scale
    out.mkdir(parents=True, exist_ok=True)
    ages = rng.choice(_AGES, n_users, p=_AGE_SHARE / _AGE_SHARE.sum())
    users = "".join(
        f"{u + 1}::{'MF'[rng.integers(2)]}::{a}::{rng.integers(21)}::{rng.integers(10000, 99999)}\n"
        for u, a in enumerate(ages)
    )
    titles = ("Amélie", "Cité des enfants perdus, La", "Star Trek: Generations", "Heat", "Zoë")
    movies = "".join(
        f"{m + 1}::{titles[m % len(titles)]} {m} ({1930 + m % 70})::"
        + "|".join(rng.choice(_GENRES, rng.integers(1, 4), replace=False)) + "\n"
        for m in range(n_movies)
    )
    write_text(out / "users.dat", users)
    write_text(out / "movies.dat", movies, "iso-8859-1")
    return write_ratings(out, seed=seed)


def write_ratings(raw_dir: Path, *, per_user: int = 20, seed: int = 0) -> Path:
    """A ratings.dat in ml-1m's format for the users.dat and movies.dat in `raw_dir` (each
    user rates at least `per_user` distinct movies, as in ml-1m), ratings from a planted
    user x movie x age-group structure. Used with the real users.dat and movies.dat too."""
    rng = np.random.default_rng(seed)
    users, _ = read_delimited(raw_dir / "users.dat", FILES["users.dat"], sep=b"::")
    movies, _ = read_delimited(raw_dir / "movies.dat", FILES["movies.dat"], sep=b"::",
                               encoding="iso-8859-1")  # fmt: skip
    uid = users["UserID"].cast(pl.Int64).to_numpy()
    age = users["Age"].cast(pl.Int64).to_numpy()
    mid = movies["MovieID"].cast(pl.Int64).to_numpy()
    k = np.minimum(per_user + rng.poisson(per_user // 2, uid.size), mid.size)
    user = np.repeat(np.arange(uid.size), k)
    # distinct movies per user: the first k of a random order of all movies
    item = np.concatenate([rng.permutation(mid.size)[:n] for n in k])
    domain = np.where(age[user] < 25, 0, np.where(age[user] == 25, 1, 2))
    score = planted_labels(rng, user, item, domain, uid.size, mid.size, 3)
    rating = np.clip(np.round(3.3 + score), 1, 5).astype(int)
    ts = 956703932 + np.sort(rng.integers(0, 90_000_000, user.size))
    lines = "".join(
        f"{uid[u]}::{mid[i]}::{r}::{t}\n" for u, i, r, t in zip(user, item, rating, ts)
    )
    write_text(raw_dir / "ratings.dat", lines)
    return raw_dir
