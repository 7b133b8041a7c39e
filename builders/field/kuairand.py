"""kuairand-1k: KuaiRand-1K in five tab domains as Scenario-Wise Rec builds it (github
Xiaopengli1/Scenario-Wise-Rec, `scripts/data/kuairand/load_data_1k.py` and
`scripts/run_kuairand_ctr_multi_domain.py`, `get_kuairand_data_multidomain`):

- rows of `log_standard_4_22_to_5_08_1k.csv` whose user is in `user_features_1k.csv` and
  whose video is in `video_features_basic_1k.csv` (inner joins), label `is_click`;
- every column is renumbered by first appearance (the script's "Re-mapping into new id"),
  the tab column included; the rows whose renumbered tab is 0, 1, 2, 4 or 6 are kept, and
  those five become domains 0..4 (its `data["tab"] in [1, 0, 4, 2, 6]` and LabelEncoder).
  The manifest records each domain's raw `tab` value;
- fields: every user feature (user_active_degree, is_lowactive_period, is_live_streamer,
  is_video_author, the four *_range columns, onehot_feat0..17; user, categorical) and the
  video's video_type, visible_status, server_width, server_height (item, categorical);
  follow_user_num, fans_user_num, friend_user_num, register_days are dense (user). As in
  the script, a dense value is its renumbered index, min-max scaled (not the raw count);
- the script's missing-value fills (onehot_feat*, visible_status, server_width/height);
- split: random 80/10/10 over all rows.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.field.common import drop_bad, planted_labels, read_quoted, write_text
from mdrbench.builders.table import Field
from mdrbench.errors import UserError

URL = "https://zenodo.org/records/10439422/files/KuaiRand-1K.tar.gz"
LOG = "log_standard_4_22_to_5_08_1k.csv"
USERS = "user_features_1k.csv"
VIDEOS = "video_features_basic_1k.csv"
LOG_COLUMNS = ["user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like",
               "is_follow", "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms",
               "duration_ms", "profile_stay_time", "comment_stay_time", "is_profile_enter",
               "is_rand", "tab"]  # fmt: skip
ONEHOT = [f"onehot_feat{i}" for i in range(18)]
USER_COLUMNS = ["user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer",
                "is_video_author", "follow_user_num", "follow_user_num_range", "fans_user_num",
                "fans_user_num_range", "friend_user_num", "friend_user_num_range",
                "register_days", "register_days_range", *ONEHOT]  # fmt: skip
VIDEO_COLUMNS = ["video_id", "author_id", "video_type", "upload_dt", "upload_type",
                 "visible_status", "video_duration", "server_width", "server_height",
                 "music_id", "music_type", "tag"]  # fmt: skip
DENSE = ["follow_user_num", "fans_user_num", "friend_user_num", "register_days"]
VIDEO_FIELDS = ["video_type", "visible_status", "server_width", "server_height"]
USER_FIELDS = [c for c in USER_COLUMNS[1:] if c not in DENSE]
# load_data_1k.py's fillna values
FILL = {"onehot_feat0": 2, "onehot_feat1": 7, "onehot_feat2": 50, "onehot_feat3": 1471,
        "onehot_feat4": 15, "onehot_feat5": 34, "onehot_feat6": 3, "onehot_feat7": 118,
        "onehot_feat8": 454, "onehot_feat9": 7, "onehot_feat10": 5, "onehot_feat11": 5,
        **{f"onehot_feat{i}": 2 for i in range(12, 18)},
        "visible_status": 2, "server_width": 0, "server_height": 0}  # fmt: skip
KEPT_TABS = (0, 1, 2, 4, 6)  # renumbered tab ids Scenario-Wise Rec keeps, in id order
FIELDS = ([Field(c, "categorical", "user") for c in USER_FIELDS]
          + [Field(c, "categorical", "item") for c in VIDEO_FIELDS]
          + [Field(c, "dense", "user") for c in DENSE])  # fmt: skip
HELP = (
    f"KuaiRand-1K comes from kuairand.com ({URL}): the build downloads it into --raw-dir and "
    f"takes {LOG}, {USERS} and {VIDEOS} from it, or put those three CSV files there yourself."
)


def _ensure(raw_dir: Path, offline: bool, progress: bool) -> None:
    names = [LOG, USERS, VIDEOS]
    missing = [n for n in names if not (raw_dir / n).is_file()]
    if not missing:
        return
    if offline:
        raise UserError(f"missing {', '.join(missing)} in {raw_dir} and --offline was given.\n"
                        + HELP)  # fmt: skip
    from mdrbench.builders.download import download

    raw_dir.mkdir(parents=True, exist_ok=True)
    archive = raw_dir / "KuaiRand-1K.tar.gz"
    if not archive.is_file():
        download([URL], archive, progress=progress)
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if name in missing and member.isfile():
                    tmp = raw_dir / f".{name}.part"
                    tmp.write_bytes(tar.extractfile(member).read())
                    tmp.replace(raw_dir / name)
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"{archive}: cannot extract it ({exc}); delete it and rerun.\n{HELP}") from None
    still = [n for n in names if not (raw_dir / n).is_file()]
    if still:
        raise UserError(f"{archive} holds no {', '.join(still)}.\n{HELP}")


def _first_appearance(s: pl.Series) -> pl.Series:
    order = s.unique(maintain_order=True)
    return s.replace_strict(order, pl.int_range(len(order), eager=True), return_dtype=pl.Int64)


def read(raw_dir: Path, *, on_bad_lines: str, offline: bool, progress: bool, seed: int = 0):
    _ensure(raw_dir, offline, progress)
    infos = {}
    log, infos[LOG] = read_quoted(raw_dir / LOG, ["user_id", "video_id", "is_click", "tab"],
                                  help_text=HELP)  # fmt: skip
    users, infos[USERS] = read_quoted(raw_dir / USERS, USER_COLUMNS, help_text=HELP)
    videos, infos[VIDEOS] = read_quoted(raw_dir / VIDEOS, ["video_id", *VIDEO_FIELDS],
                                        help_text=HELP)  # fmt: skip
    log = log.select("user_id", "video_id", "is_click", "tab").with_row_index("_row")
    bad = ~log["is_click"].is_in(["0", "1"]) | log["tab"].str.strip_chars().cast(
        pl.Int64, strict=False).is_null() | log["user_id"].is_null() | log["video_id"].is_null()  # fmt: skip
    log = drop_bad(log, bad, "is_click must be 0 or 1, tab an integer, ids present",
                   raw_dir / LOG, on_bad_lines, infos[LOG], first_line=2)  # fmt: skip
    empty = pl.col(pl.String).str.strip_chars().replace("", None)
    users = users.with_columns(empty).with_columns(
        pl.col(c).fill_null(str(v)) for c, v in FILL.items() if c in users.columns
    ).with_columns(pl.col(ONEHOT).cast(pl.Float64, strict=False).cast(pl.Int64, strict=False))
    videos = videos.with_columns(empty).with_columns(
        pl.col(c).fill_null(str(v)) for c, v in FILL.items() if c in videos.columns
    ).with_columns(pl.col("server_width", "server_height", "visible_status")
                   .cast(pl.Float64, strict=False).cast(pl.Int64, strict=False))  # fmt: skip
    table = (
        log.join(users.unique("user_id", keep="first", maintain_order=True), on="user_id",
                 how="inner", maintain_order="left")
        .join(videos.select("video_id", *VIDEO_FIELDS)
              .unique("video_id", keep="first", maintain_order=True),
              on="video_id", how="inner", maintain_order="left")
    )  # fmt: skip
    tab_no = _first_appearance(table["tab"].str.strip_chars().cast(pl.Int64))
    raw_tab = table["tab"].str.strip_chars().cast(pl.Int64)
    table = table.with_columns(
        tab_no.replace_strict(list(KEPT_TABS), list(range(len(KEPT_TABS))), default=None,
                              return_dtype=pl.Int16).alias("domain_id"),
        *(_first_appearance(table[c]).alias(c) for c in DENSE),
    )  # fmt: skip
    have = (
        pl.DataFrame({"no": tab_no, "raw": raw_tab}).unique("no").sort("no")
    )
    raw_of = dict(zip(have["no"].to_list(), have["raw"].to_list()))
    missing = [t for t in KEPT_TABS if t not in raw_of]
    if missing:
        raise UserError(
            f"{raw_dir / LOG}: only {len(raw_of)} distinct tabs once users and videos without "
            f"features are dropped; kuairand-1k keeps the tabs numbered {KEPT_TABS} by first "
            "appearance. Check the files are KuaiRand-1K's."
        )
    table = table.filter(pl.col("domain_id").is_not_null()).select(
        pl.col("user_id").alias("user"), pl.col("video_id").alias("item"), "domain_id",
        pl.col("is_click").cast(pl.Int8).alias("label"), "_row", *USER_FIELDS, *VIDEO_FIELDS,
        *DENSE,
    )  # fmt: skip
    domain_fields = [{"tab": raw_of[t]} for t in KEPT_TABS]
    return table, FIELDS, infos, {"domain_fields": domain_fields}


_DEGREES = ("high_active", "full_active", "middle_active", "low_active", "2_14_day_new",
            "30day_retention", "single_low_active", "UNKNOWN")  # fmt: skip


def synthesize(out: Path, *, scale: int = 1, seed: int = 0) -> Path:
    """The three KuaiRand-1K CSV files in the release's columns (a header line; some
    features empty, as in the release), clicks from a planted structure over eight tabs."""
    rng = np.random.default_rng(seed)
    n_users, n_videos, n = 80 * scale, 150 * scale, 3000 * scale
    out.mkdir(parents=True, exist_ok=True)
    uid = rng.choice(27285, n_users, replace=False)
    vid = rng.choice(4_369_953, n_videos, replace=False)
    lines = [",".join(USER_COLUMNS)]
    for u in uid:
        onehot = [str(rng.integers(0, 9)) if rng.random() > 0.05 else "" for _ in ONEHOT]
        lines.append(",".join(map(str, [
            u, rng.choice(_DEGREES), rng.integers(0, 2), rng.integers(0, 2), rng.integers(0, 2),
            rng.integers(0, 900), rng.choice(["0", '"(0,10]"', '"(10,50]"', "500+"]),
            rng.integers(0, 300), rng.choice(["0", '"[1,10)"', '"[10,100)"']), rng.integers(0, 80),
            rng.choice(["0", '"[1,5)"', '"[5,30)"']), rng.integers(15, 2000),
            rng.choice(["15-30", "31-60", "730+"]), *onehot])))  # fmt: skip
    write_text(out / USERS, "\n".join(lines) + "\n")
    lines = [",".join(VIDEO_COLUMNS)]
    for v in vid:
        lines.append(",".join(map(str, [
            v, rng.integers(0, 9999), rng.choice(["NORMAL", "AD"]), "2022-04-01",
            rng.choice(["ShortImport", "Web"]), rng.choice(["public", ""]),
            rng.integers(5000, 60000), rng.choice(["720.0", "1080.0", ""]), "1280.0",
            rng.integers(0, 999), rng.integers(0, 9), rng.integers(0, 30)])))  # fmt: skip
    write_text(out / VIDEOS, "\n".join(lines) + "\n")
    user = rng.integers(0, n_users + 5, n)  # a few users without features (dropped)
    video = rng.integers(0, n_videos, n)
    tab = rng.choice([1, 0, 4, 2, 6, 3, 5, 7], n, p=[.4, .15, .1, .1, .1, .05, .05, .05])
    score = planted_labels(rng, np.minimum(user, n_users - 1), video, tab, n_users, n_videos, 8)
    click = (score > 0.5).astype(int)
    users_all = np.r_[uid, 900000 + np.arange(5)]
    lines = [",".join(LOG_COLUMNS)]
    for j in range(n):
        lines.append(",".join(map(str, [
            users_all[user[j]], vid[video[j]], 20220422 + j % 16, "0915", 1650590000000 + j,
            click[j], 0, 0, 0, 0, 0, click[j], rng.integers(0, 30000), 30066, 0, 0, 0, 0,
            tab[j]])))  # fmt: skip
    write_text(out / LOG, "\n".join(lines) + "\n")
    return out
