"""ali-ccp: Alibaba's Click and Conversion Prediction set in three domains by its field 301,
as Scenario-Wise Rec builds it (github Xiaopengli1/Scenario-Wise-Rec,
`scripts/data/ali-ccp/preprocess_ali_ccp.py` and
`scripts/run_ali_ccp_ctr_ranking_multi_domain.py`, `get_ali_ccp_data_dict`):

- a sample's features are its own merged with its common features (the common ones win);
  samples with click 0 and conversion 1 are dropped; label: click;
- 23 sparse fields (101, 121, 122, 124-129, 205-207, 210, 216, 508, 509, 702, 853, 301,
  109_14, 110_14, 127_14, 150_14): a feature id is kept when it occurs at least 10 times in
  the training file and numbered 1.. in order of first appearance there; others, and
  absent fields, are 0; 8 dense fields (D109_14, D110_14, D127_14, D150_14, D508, D509,
  D702, D853: the values of those fields, 0 when absent) min-max scaled over all rows;
- domains: field 301's numbers 1, 2, 3 -> domains 0, 1, 2 (its `domain_map`); the manifest
  records each one's raw feature id;
- users and items: fields 101 (user id) and 205 (item id), numbered as above (a rare one
  is 0, as in the script); the other 21 sparse fields and the dense ones are row fields;
- split: the training file is train; the test file is halved into val and test
  (`train_test_split(test_size=0.5)`: test gets ceil(n / 2) rows) by a seeded draw.

The user supplies the files (Tianchi, login): `sample_skeleton_train.csv`,
`common_features_train.csv`, `sample_skeleton_test.csv`, `common_features_test.csv`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.field.common import drop_bad, need_raw_dir, planted_labels, write_text
from mdrbench.builders.raw import RawDataError, RawInfo
from mdrbench.builders.table import Field

PAGE = "https://tianchi.aliyun.com/dataset/408"
SPARSE = ["101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207",
          "210", "216", "508", "509", "702", "853", "301", "109_14", "110_14", "127_14",
          "150_14"]  # fmt: skip
DENSE = ["109_14", "110_14", "127_14", "150_14", "508", "509", "702", "853"]
MIN_COUNT = 10
SKELETON = ["sample_id", "click", "conversion", "common_feature_index", "num_features",
            "feature_list"]  # fmt: skip
COMMON = ["common_feature_index", "num_features", "feature_list"]
ROW_SPARSE = [c for c in SPARSE if c not in ("101", "205")]
FIELDS = [Field(c, "categorical", "row") for c in ROW_SPARSE] + [
    Field("D" + c, "dense", "row") for c in DENSE
]
USER_SUPPLIED = True  # a login: the build never downloads them
HELP = (
    f"The Ali-CCP files need a Tianchi login: download them from {PAGE} and pass their folder "
    "as --raw-dir. Needed: sample_skeleton_train.csv, common_features_train.csv, "
    "sample_skeleton_test.csv, common_features_test.csv (comma-separated, no header; "
    "feature lists of field\\x02feature_id\\x03value joined by \\x01)."
)


def _read(path: Path, columns: list[str]) -> tuple[pl.DataFrame, RawInfo]:
    import hashlib

    if not path.is_file():
        raise RawDataError(f"missing Ali-CCP file {path}.\n{HELP}")
    data = path.read_bytes()
    info = RawInfo(hashlib.sha256(data).hexdigest(), len(data))
    try:
        df = pl.read_csv(io.BytesIO(data), has_header=False, new_columns=columns,
                         quote_char=None, schema={c: pl.String for c in columns})  # fmt: skip
    except pl.exceptions.PolarsError as exc:
        raise RawDataError(f"{path}: not a well-formed file ({str(exc).splitlines()[0]}).\n"
                           + HELP) from None  # fmt: skip
    return df, info


def _features(df: pl.DataFrame, key: str) -> pl.DataFrame:
    """(key, field, feat, val) per used field of each row's feature list, the last one of a
    field in a list winning (a dict in the script)."""
    long = (
        df.select(key, pl.col("feature_list").str.split("\x01").alias("f"))
        .explode("f")
        .with_columns(pl.col("f").str.split_exact("\x02", 1).alias("p"))
        .select(key, pl.col("p").struct.field("field_0").alias("field"),
                pl.col("p").struct.field("field_1").str.split_exact("\x03", 1).alias("q"))
        .select(key, "field", pl.col("q").struct.field("field_0").alias("feat"),
                pl.col("q").struct.field("field_1").alias("val"))
        .filter(pl.col("field").is_in(SPARSE))
    )  # fmt: skip
    return long.group_by(key, "field", maintain_order=True).last()


def _wide(long: pl.DataFrame, key: str) -> pl.DataFrame:
    """One row per key: column F (feature id) and DF (value) for each used field."""
    sparse = long.pivot(on="field", index=key, values="feat", aggregate_function="last")
    dense = long.filter(pl.col("field").is_in(DENSE)).pivot(
        on="field", index=key, values="val", aggregate_function="last"
    )
    dense = dense.rename({c: "D" + c for c in dense.columns if c != key})
    return sparse.join(dense, on=key, how="left")


def _part(raw_dir: Path, part: str, on_bad_lines: str, infos: dict) -> pl.DataFrame:
    sk_name, cf_name = f"sample_skeleton_{part}.csv", f"common_features_{part}.csv"
    sk, infos[sk_name] = _read(raw_dir / sk_name, SKELETON)
    cf, infos[cf_name] = _read(raw_dir / cf_name, COMMON)
    bad = ~sk["click"].is_in(["0", "1"]) | ~sk["conversion"].is_in(["0", "1"])
    sk = drop_bad(sk, bad, "click and conversion must be 0 or 1", raw_dir / sk_name,
                  on_bad_lines, infos[sk_name])  # fmt: skip
    sk = sk.filter(~((pl.col("click") == "0") & (pl.col("conversion") == "1")))
    sk = sk.with_row_index("_line")
    own = _wide(_features(sk, "_line"), "_line")
    common = _wide(_features(cf, "common_feature_index"), "common_feature_index")
    out = sk.select("_line", "click", "common_feature_index").join(
        own, on="_line", how="left").join(
        common, on="common_feature_index", how="left", suffix="_c")  # fmt: skip
    cols = []
    for c in [*SPARSE, *("D" + d for d in DENSE)]:
        mine = pl.col(c) if c in out.columns else pl.lit(None, pl.String)
        theirs = pl.col(c + "_c") if c + "_c" in out.columns else (
            pl.col(c) if c in common.columns and c not in own.columns else pl.lit(None, pl.String))  # fmt: skip
        cols.append(pl.coalesce(theirs, mine).alias(c))
    return out.sort("_line").select("click", *cols)


def read(raw_dir: Path | None, *, on_bad_lines: str, offline: bool, progress: bool, seed: int = 0):
    raw_dir = need_raw_dir(raw_dir, "ali-ccp", HELP)
    infos = {}
    train = _part(raw_dir, "train", on_bad_lines, infos)
    test = _part(raw_dir, "test", on_bad_lines, infos)
    rows = pl.concat([train.with_columns(part=pl.lit(0, pl.Int8)),
                      test.with_columns(part=pl.lit(1, pl.Int8))])  # fmt: skip
    coded = {}
    for c in SPARSE:  # the training file's vocabulary: ids seen >= 10 times, 1.. in order
        counts = train.select(pl.col(c).drop_nulls()).group_by(c, maintain_order=True).len()
        vocab = counts.filter(pl.col("len") >= MIN_COUNT)[c]
        coded[c] = rows[c].replace_strict(vocab, pl.int_range(1, len(vocab) + 1, eager=True),
                                          default=0, return_dtype=pl.Int64)  # fmt: skip
        if c == "301":
            raw_301 = vocab.to_list()
    dense = {"D" + d: rows["D" + d].cast(pl.Float64, strict=False).fill_null(0.0) for d in DENSE}
    domain = coded["301"].replace_strict([1, 2, 3], [0, 1, 2], default=None,
                                         return_dtype=pl.Int16)  # fmt: skip
    table = pl.DataFrame({
        "user": coded["101"], "item": coded["205"], "domain_id": domain,
        "label": rows["click"].cast(pl.Int8), "_row": pl.int_range(rows.height, eager=True),
        "part": rows["part"], **{c: coded[c] for c in ROW_SPARSE}, **dense,
    })  # fmt: skip
    no_domain = table["domain_id"].is_null()
    if no_domain.any():  # the script's domain_map has no entry for them (it would stop)
        n = int(no_domain.sum())
        if on_bad_lines == "error":
            raise RawDataError(
                f"{raw_dir}: {n} sample(s) have a field 301 value outside the training file's "
                "three frequent ones; rerun with --on-bad-lines skip to drop them (counted in "
                "the manifest under sample_skeleton_*.csv)"
            )
        table = table.filter(~no_domain)
        infos["sample_skeleton_train.csv"].n_bad_lines += n
    if len(raw_301) < 3:
        raise RawDataError(f"{raw_dir}: field 301 has {len(raw_301)} frequent values, not 3.\n"
                           + HELP)  # fmt: skip
    # train file -> train; test file -> val / test, test_size=0.5 (test: ceil(n / 2))
    test_rows = np.flatnonzero(table["part"].to_numpy() == 1)
    n_test = math.ceil(0.5 * test_rows.size)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    split = np.zeros(table.height, np.int8)
    perm = rng.permutation(test_rows)
    split[perm[: test_rows.size - n_test]] = 1
    split[perm[test_rows.size - n_test :]] = 2
    table = table.drop("part").with_columns(split=pl.Series(split))
    extra = {
        "domain_fields": [{"field_301": v} for v in raw_301[:3]],
        "split_info": {"rule": "given", "train_val_test": "train file / test file halved",
                       "source": "Xiaopengli1/Scenario-Wise-Rec scripts/data/ali-ccp/"
                       "preprocess_ali_ccp.py (train_test_split(test_data, test_size=0.5))"},
    }  # fmt: skip
    return table, FIELDS, infos, extra


def synthesize(out: Path, *, scale: int = 1, seed: int = 0) -> Path:
    """The four Ali-CCP files in the release's format (no header; \\x01/\\x02/\\x03
    feature lists; user fields in the common features), clicks from a planted structure."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 40 * scale, 30 * scale
    out.mkdir(parents=True, exist_ok=True)
    scen = np.array([3, 1, 2])  # field 301's raw feature ids (numbered by first appearance)
    for part, n in (("train", 2500 * scale), ("test", 800 * scale)):
        user = rng.integers(0, n_users, n)
        item = rng.integers(0, n_items, n)
        dom = rng.choice(3, n, p=[0.5, 0.1, 0.4])
        score = planted_labels(np.random.default_rng(seed + 1), user, item, dom, n_users,
                               n_items, 3)[: n]  # fmt: skip
        click = (score > 0.6).astype(int)
        conv = (click & (rng.random(n) < 0.1)).astype(int)
        conv[rng.random(n) < 0.005] = 1  # a few click 0 / conversion 1 rows (dropped)
        common = []
        for u in range(n_users):
            feats = [f"101\x02{1000 + u}\x031.0", f"121\x02{u % 5}\x031.0",
                     f"122\x02{u % 3 + 10}\x031.0", f"109_14\x02{u % 7 + 20}\x03{rng.random():.4f}",
                     f"127_14\x02{u % 4 + 30}\x03{rng.random():.4f}"]  # fmt: skip
            common.append(f"c{u:06d},{len(feats)},{chr(1).join(feats)}")
        write_text(out / f"common_features_{part}.csv", "\n".join(common) + "\n")
        lines = []
        for j in range(n):
            feats = [f"205\x02{5000 + item[j]}\x031.0", f"206\x02{item[j] % 6 + 50}\x031.0",
                     f"207\x02{item[j] % 9 + 60}\x031.0", f"301\x02{scen[dom[j]]}\x031.0",
                     f"508\x02{item[j] % 5 + 70}\x03{rng.random():.3f}",
                     f"853\x02{item[j] % 3 + 80}\x03{rng.random():.3f}"]  # fmt: skip
            lines.append(f"{j + 1},{click[j]},{conv[j]},c{user[j]:06d},{len(feats)},"
                         f"{chr(1).join(feats)}")  # fmt: skip
        write_text(out / f"sample_skeleton_{part}.csv", "\n".join(lines) + "\n")
    return out
