"""A table of interactions with side features -> a dataset folder (docs/format.md, "Side
features"): the one path behind `mdrbench build custom` and the builders of the field's
datasets (builders/field/: movielens-1m, kuairand-1k, ali-ccp, douban, mind, amazon-swr).

Input: a polars frame with columns `user`, `item` (raw keys of any type), `domain_id`
(Int16, index into the domains), `label` (Int8 0/1; absent when the rows are implicit
positives), optionally `time` (for the time split) and `_row` (the input row number, for
error messages), and one column per side field. Fields are categorical (their own
vocabulary: the distinct values in sorted order, a null value a category of its own, first)
or dense (float, min-max scaled to [0, 1] over all rows as Scenario-Wise Rec's scripts do
with sklearn's MinMaxScaler; the manifest keeps min and max). A field is owned by the user,
the item or the row: user and item fields are written once per id (`user_fields.parquet`,
`item_fields.parquet`), row fields as columns of the split files.

Labels given (`label` present): every input row is a sample. Implicit: every distinct
(user, item, domain) is a positive and negatives are sampled per domain exactly as the
MAMDR builders sample them (`process.make_samples`, `sample_negatives`).

Splits: `random` (one seeded permutation of all rows, train int(0.8 n), val int(0.1 n), the
rest test: the sizes of Scenario-Wise Rec's `DataGenerator.generate_dataloader`),
`authors` (the MAMDR per-user rule of `process.split_groups`), `time` (per user by
timestamp), or `given` (a split column of the source, e.g. Ali-CCP's train and test files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.process import (
    SPLIT_RULES,
    encode_ids,
    make_samples,
    split_groups,
)
from mdrbench.builders.write import write_samples
from mdrbench.errors import UserError

KINDS = ("categorical", "dense")
OWNERS = ("user", "item", "row")
# Column names a field may not take: the split files' own columns and the batch's keys.
RESERVED = frozenset(
    {"user_id", "item_id", "domain_id", "label", "split", "user_features", "item_features",
     "user", "item", "domain", "time", "_row"}
)  # fmt: skip
FIELD_FILES = {"user": "user_fields.parquet", "item": "item_fields.parquet"}
TRAIN_VAL = (0.8, 0.1)  # random and time splits: train 80 %, val 10 %, test the rest


@dataclass(frozen=True)
class Field:
    """A side field: `kind` categorical or dense; `owner` user, item, row, or "auto" (the
    user when every user has one value, else the item when every item has one, else the
    row). `cardinality`: categorical vocabulary size once built."""

    name: str
    kind: str = "categorical"
    owner: str = "auto"
    cardinality: int | None = None

    def declaration(self) -> dict:
        return {"name": self.name, "kind": self.kind, "owner": self.owner,
                "cardinality": self.cardinality}  # fmt: skip


def check_fields(fields: list[Field], columns: list[str] | None = None) -> None:
    seen = set()
    for f in fields:
        if f.name in RESERVED:
            raise UserError(
                f"side field '{f.name}' has a reserved name ({', '.join(sorted(RESERVED))}): "
                "rename the column"
            )
        if f.name in seen:
            raise UserError(f"side field '{f.name}' is named twice")
        seen.add(f.name)
        if f.kind not in KINDS or f.owner not in (*OWNERS, "auto"):
            raise ValueError(f"bad field {f}")
        if columns is not None and f.name not in columns:
            raise UserError(f"no column '{f.name}' in the input (columns: {', '.join(columns)})")


def where(row: int | None, source: str = "") -> str:
    """'row 7 of FILE' for an error message (`row`: 0-based input row)."""
    at = f"row {row + 1}" if row is not None else "a row"
    return f"{at} of {source}" if source else at


def _first_row(table: pl.DataFrame, mask: pl.Series) -> int | None:
    idx = mask.arg_true()
    if not len(idx):
        return None
    i = int(idx[0])
    return int(table["_row"][i]) if "_row" in table.columns else i


def _resolve_owner(table: pl.DataFrame, f: Field, source: str) -> str:
    """The field's owner; a user (item) field whose value varies within one user (item) is
    an error naming the first row that differs."""
    col = pl.col(f.name)
    for owner in ("user", "item"):
        if f.owner not in ("auto", owner):
            continue
        first = col.first().over(owner)  # value of the owner's first row
        differs = table.select(
            (col.ne_missing(first)).alias("d")
        )["d"]
        if not differs.any():
            return owner
        if f.owner == owner:
            row = _first_row(table, differs)
            raise UserError(
                f"column '{f.name}', {where(row, source)}: a {owner} field must have one value "
                f"per {owner}, but this {owner} has another value on an earlier row. Declare it "
                "a row field, or fix the data."
            )
    return "row"


def _encode_field(table: pl.DataFrame, f: Field, source: str) -> tuple[pl.Series, dict]:
    """Codes (Int32, categorical) or scaled values (Float32, dense) of one field, and its
    manifest declaration."""
    s = table[f.name]
    if f.kind == "categorical":
        values = s.unique().sort(nulls_last=False)
        codes = s.replace_strict(values, pl.int_range(len(values), eager=True), return_dtype=pl.Int32)
        return codes.alias(f.name), {"cardinality": len(values)}
    if not s.dtype.is_numeric():
        raise UserError(f"column '{f.name}': a dense field must be numeric, not {s.dtype}")
    s = s.cast(pl.Float64)
    bad = s.is_null() | ~s.is_finite()
    if bad.any():
        row = _first_row(table, bad)
        raise UserError(
            f"column '{f.name}', {where(row, source)}: a dense field needs a finite number on "
            "every row (found an empty or non-finite value)"
        )
    lo, hi = float(s.min()), float(s.max())
    scaled = (s - lo) / (hi - lo) if hi > lo else s * 0.0
    return scaled.cast(pl.Float32).alias(f.name), {"cardinality": None, "min": lo, "max": hi}


def prepare(table: pl.DataFrame, fields: list[Field], source: str = ""):
    """Dense ids, owners and encodings. Returns (table with user_id/item_id and encoded
    field columns, resolved fields, {owner: frame of <owner>_id + its fields},
    declarations)."""
    check_fields(fields, table.columns)
    table, _, _ = encode_ids(table, "user", "item")
    resolved, declared = [], []
    for f in fields:
        owner = _resolve_owner(table, f, source)
        col, extra = _encode_field(table, f, source)
        table = table.with_columns(col)
        resolved.append(Field(f.name, f.kind, owner, extra["cardinality"]))
        declared.append(resolved[-1].declaration() | {k: v for k, v in extra.items()
                                                      if k != "cardinality"})  # fmt: skip
    tables = {}
    for owner in ("user", "item"):
        names = [f.name for f in resolved if f.owner == owner]
        if names:
            tables[owner] = (
                table.select(pl.col(f"{owner}_id"), *names)
                .unique(f"{owner}_id", keep="first", maintain_order=True)
                .sort(f"{owner}_id")
            )
    return table, resolved, tables, declared


# ------------------------------------------------------------------------------- splits


def random_split(n: int, rng: np.random.Generator) -> np.ndarray:
    """0/1/2 per row: a uniform permutation, the first int(0.8 n) train, the next int(0.1 n)
    val, the rest test (Scenario-Wise Rec's sizes)."""
    n_train, n_val = int(n * TRAIN_VAL[0]), int(n * TRAIN_VAL[1])
    split = np.full(n, 2, np.int8)
    order = rng.permutation(n)
    split[order[:n_train]] = 0
    split[order[n_train : n_train + n_val]] = 1
    return split


def ordered_split(group: np.ndarray, key: np.ndarray) -> np.ndarray:
    """0/1/2 per row: within each group, rows in `key` order (ties by input order), the
    first round(0.8 m) train, up to round(0.9 m) val, the rest test (half up)."""
    if group.size == 0:
        return np.zeros(0, np.int8)
    order = np.lexsort((np.arange(group.size), key, group))
    g = group[order]
    first = np.r_[True, g[1:] != g[:-1]]
    starts = np.flatnonzero(first)
    sizes = np.diff(np.r_[starts, g.size])
    rank = np.arange(g.size) - np.repeat(starts, sizes)
    m = np.repeat(sizes, sizes).astype(np.float64)
    b1 = np.floor(TRAIN_VAL[0] * m + 0.5)
    b2 = np.floor((TRAIN_VAL[0] + TRAIN_VAL[1]) * m + 0.5)
    out = np.empty(g.size, np.int8)
    out[order] = (rank >= b1).astype(np.int8) + (rank >= b2)
    return out


def _time_key(table: pl.DataFrame, source: str) -> np.ndarray:
    t = table["time"]
    if t.null_count():
        row = _first_row(table, t.is_null())
        raise UserError(f"the time column, {where(row, source)}: empty timestamp")
    if t.dtype.is_temporal():
        t = t.cast(pl.Datetime("us")).cast(pl.Int64) if t.dtype != pl.Date else t.cast(pl.Int64)
    elif not t.dtype.is_numeric():
        raise UserError(
            f"the time column must hold numbers or dates, not {t.dtype} (parse it first)"
        )
    return t.cast(pl.Float64).to_numpy()


def split_rows(samples: pl.DataFrame, rule: str, seed: int, source: str = "") -> np.ndarray:
    """The split of samples whose labels were given (no sampled negatives)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    n = samples.height
    if rule == "random":
        return random_split(n, rng)
    if rule == "time":
        return ordered_split(samples["user_id"].to_numpy(), _time_key(samples, source))
    if rule == "authors":  # positives of a domain one group, each user's negatives another
        dom = samples["domain_id"].to_numpy().astype(np.int64)
        user = samples["user_id"].to_numpy()
        pos = samples["label"].to_numpy() == 1
        width = int(user.max()) + 2 if n else 1
        return split_groups(dom * width + np.where(pos, 0, user + 1), rng)
    raise ValueError(rule)


# ------------------------------------------------------------------------------- build


def build_table(
    spec,
    table: pl.DataFrame,
    fields: list[Field],
    *,
    split: str,
    out: Path,
    seed: int = 0,
    negatives_per_positive: float | None = None,
    raw_infos: dict | None = None,
    on_bad_lines: str = "error",
    split_info: dict | None = None,
    domain_fields: list[dict] | None = None,
    source: str = "",
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Write `table` (see the module docstring) as dataset `spec.name` into `out`.
    `negatives_per_positive` set: the rows are implicit positives (no `label`). `split`:
    random, authors, time or given (a `split` column 0/1/2 in the table)."""

    n_domains = len(spec.domains)
    implicit = negatives_per_positive is not None
    if split not in ("random", "authors", "time", "given"):
        raise UserError(f"--split must be random, authors or time, not '{split}'")
    if split == "time" and "time" not in table.columns:
        raise UserError("--split time needs a timestamp column: pass --time-col")
    counts = table["domain_id"].value_counts()
    have = dict(zip(counts["domain_id"].to_list(), counts["count"].to_list()))
    empty = [d.name for i, d in enumerate(spec.domains) if not have.get(i)]
    if empty:
        raise UserError(
            f"domain {', '.join(repr(e) for e in empty)} of {spec.name} has no rows"
            + (f" in {source}" if source else "")
            + ": check the domain column and the --domains list"
        )
    table, resolved, owner_tables, declared = prepare(table, fields, source)
    row_fields = [f.name for f in resolved if f.owner == "row"]
    if implicit and row_fields:
        raise UserError(
            f"--implicit: field(s) {', '.join(row_fields)} vary within a user and within an "
            "item (row fields), so a sampled negative would have no value for them; give "
            "only user or item fields with --implicit, or give labels with --label-col"
        )
    if implicit:
        keys = ["user_id", "item_id", "domain_id"]
        pos = table.select(*keys, *(["time"] if "time" in table.columns else []))
        pos = pos.group_by(keys).agg(pl.col("time").min()) if "time" in pos.columns else pos.unique()
        ratios = [1.0 / negatives_per_positive] * n_domains
        samples = make_samples(pos.select(keys), ratios, seed, per_positive=negatives_per_positive)
        if split != "authors":
            samples = _resplit_implicit(samples, pos, split, seed, source)
    else:
        ratios = [None] * n_domains
        cols = ["user_id", "item_id", "domain_id", "label", *row_fields]
        extra = [c for c in ("time", "split") if c in table.columns]
        samples = table.select(*cols, *extra)
        if split != "given":
            samples = samples.with_columns(split=pl.Series(split_rows(samples, split, seed, source)))
        samples = samples.select(*cols, pl.col("split").cast(pl.Int8))
    _check_labels_per_domain(spec, samples)
    # Sorted by domain, then a seeded random order (docs/format.md).
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    order = rng.permutation(samples.height)
    samples = samples[order].sort("domain_id", maintain_order=True)
    tables = {FIELD_FILES[o]: t for o, t in owner_tables.items()}
    return write_samples(
        spec, list(spec.domains), ratios, samples, samples, out=out, seed=seed,
        on_bad_lines=on_bad_lines, raw_infos=raw_infos, tables=tables, row_columns=row_fields,
        split_info=split_info or SPLIT_RULES[split],
        domain_fields=domain_fields, extra={"fields": declared}, force=force, progress=progress,
    )  # fmt: skip


def _resplit_implicit(samples, pos, split, seed, source):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    if split == "random":
        return samples.with_columns(split=pl.Series(random_split(samples.height, rng)))
    # time: positives per user by timestamp, each user's negatives in the same sizes at random
    is_pos = samples["label"].to_numpy() == 1
    joined = samples.join(pos, on=["user_id", "item_id", "domain_id"], how="left",
                          maintain_order="left")  # fmt: skip
    key = np.empty(samples.height)
    key[is_pos] = _time_key(joined.filter(pl.Series(is_pos)), source)
    key[~is_pos] = rng.random(int((~is_pos).sum()))
    user = samples["user_id"].to_numpy()
    group = user * 2 + (~is_pos)  # positives and negatives of a user split on their own
    return samples.with_columns(split=pl.Series(ordered_split(group, key)))


def _check_labels_per_domain(spec, samples: pl.DataFrame) -> None:
    per = samples.group_by("domain_id").agg(
        pos=(pl.col("label") == 1).sum(), neg=(pl.col("label") == 0).sum()
    )
    for r in per.sort("domain_id").iter_rows(named=True):
        if not r["pos"] or not r["neg"]:
            which = "positive" if not r["pos"] else "negative"
            name = spec.domains[int(r["domain_id"])].name
            raise UserError(
                f"domain '{name}' has no {which} rows: per-domain AUC needs both labels; "
                "check its labels or leave it out"
            )
