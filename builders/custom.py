"""`mdrbench build custom`: the user's own multi-domain table (Parquet or CSV) -> a dataset
folder with the same manifest, checksums, card, `verify` and byte-reproducibility as the
benchmark builds (builders/table.py does the building; this module reads and checks the
input, naming the column and row of the first problem).

Rows are numbered from 1 in input order, the header not counted; a folder's files are read
in name order and numbered on from one file to the next.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from mdrbench.builders.raw import RawInfo
from mdrbench.builders.specs import DatasetSpec, DomainSpec
from mdrbench.builders.table import Field, build_table, check_fields
from mdrbench.errors import UserError

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
DEFAULT_NEGATIVES = 4


@dataclasses.dataclass
class _Input:
    frame: pl.DataFrame
    infos: dict
    source: str
    csv: bool


def _files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise UserError(f"--from {path}: give a .parquet or .csv file (or a folder of them)")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
        if not files:
            raise UserError(f"--from {path}: the folder holds no .parquet or .csv file")
        return files
    raise UserError(f"--from {path}: no such file or folder")


def read_input(path: Path, columns: list[str]) -> _Input:
    """The needed `columns` of every input file, concatenated (CSV: all as text, typed by
    `_typed` below), with `_row` (0-based input row) and the raw files' checksums."""
    from mdrbench.builders.raw import _sha256_and_size

    files = _files(Path(path))
    frames, infos, kinds = [], {}, set()
    for f in files:
        kind = SUFFIXES[f.suffix.lower()]
        kinds.add(kind)
        try:
            df = (
                pl.read_csv(f, infer_schema=False)
                if kind == "csv"
                else pl.read_parquet(f)
            )
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UserError(
                f"{f}: not a readable {kind.upper()} file ({str(exc).splitlines()[0]})"
            ) from None
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise UserError(
                f"{f}: no column {', '.join(repr(c) for c in missing)} (it has: "
                f"{', '.join(df.columns)}); check the --*-col options"
            )
        frames.append(df.select(columns))
        sha, size = _sha256_and_size(f)
        infos[f.name] = RawInfo(sha, size)
    if len(kinds) > 1:
        raise UserError(f"--from {path}: mixes CSV and Parquet files; give one kind")
    for c in columns:  # Parquet files whose column types differ
        types = {str(fr.schema[c]) for fr in frames}
        if len(types) > 1:
            where = ", ".join(f"{f.name}: {fr.schema[c]}" for f, fr in zip(files, frames))
            raise UserError(f"column '{c}' has mixed types across the input files ({where})")
    source = str(files[0]) if len(files) == 1 else f"{path} (its files in name order)"
    frame = pl.concat(frames).with_row_index("_row")
    if frame.height == 0:
        raise UserError(f"--from {path}: no rows")
    return _Input(frame, infos, source, kinds == {"csv"})


def _at(inp: _Input, column: str, mask: pl.Series, why: str) -> UserError:
    row = int(inp.frame["_row"].filter(mask)[0]) + 1
    return UserError(f"column '{column}', row {row} of {inp.source}: {why}")


def _typed(inp: _Input, col: str, what: str) -> pl.Series:
    """An id column: no nulls; from CSV, integers when every value is one, text when none
    is, and an error (mixed types) when some are."""
    s = inp.frame[col]
    if s.null_count():
        raise _at(inp, col, s.is_null(), f"empty {what}; every row needs one")
    if not inp.csv:
        if s.dtype.is_float():
            raise _at(inp, col, s.is_not_null(), f"{what} is a float column; give integers or text")
        return s
    as_int = s.str.strip_chars().cast(pl.Int64, strict=False)
    numeric = as_int.is_not_null()
    if numeric.all():
        return as_int
    if numeric.any():
        first_numeric = bool(numeric[0])
        odd = numeric != first_numeric
        kind = "a number" if not first_numeric else "text"
        raise _at(inp, col, odd, f"mixed types: this {what} is {kind}, row 1's is not")
    return s


def _label(inp: _Input, col: str) -> pl.Series:
    s = inp.frame[col]
    if inp.csv:
        s = s.str.strip_chars()
        ok = s.is_in(["0", "1", "0.0", "1.0"])
        val = s.cast(pl.Float64, strict=False)
    elif s.dtype == pl.Boolean:
        ok, val = s.is_not_null(), s.cast(pl.Float64)
    elif s.dtype.is_numeric():
        val = s.cast(pl.Float64)
        ok = val.is_in([0.0, 1.0])
    else:
        raise _at(inp, col, s.is_not_null() | s.is_null(),
                  f"the label column is {s.dtype}; labels must be 0 or 1")  # fmt: skip
    ok = ok.fill_null(False)
    if not ok.all():
        bad = inp.frame[col].filter(~ok)[0]
        raise _at(inp, col, ~ok, f"label {bad!r} is not 0 or 1")
    return val.cast(pl.Int8)


def _dense(inp: _Input, col: str) -> pl.Series:
    s = inp.frame[col]
    if inp.csv:
        v = s.str.strip_chars().cast(pl.Float64, strict=False)
        bad = v.is_null() & s.is_not_null()
        if bad.any():
            raise _at(inp, col, bad, f"dense field value {s.filter(bad)[0]!r} is not a number")
        return v
    if not (s.dtype.is_numeric() or s.dtype == pl.Boolean):
        raise _at(inp, col, s.is_not_null() | s.is_null(),
                  f"a dense field must be numeric, not {s.dtype}")  # fmt: skip
    return s.cast(pl.Float64)


def _time(inp: _Input, col: str) -> pl.Series:
    s = inp.frame[col]
    if s.null_count():
        raise _at(inp, col, s.is_null(), "empty timestamp; every row needs one")
    if not inp.csv:
        if s.dtype.is_numeric() or s.dtype.is_temporal():
            return s
        s = s.cast(pl.String)
    num = s.str.strip_chars().cast(pl.Float64, strict=False)
    if num.is_not_null().all():
        return num
    when = s.str.strip_chars().str.to_datetime(strict=False)
    if when.is_not_null().all():
        return when
    bad = num.is_null() & when.is_null()
    raise _at(inp, col, bad, f"timestamp {s.filter(bad)[0]!r} is neither a number nor a date")


def _check_name(name: str) -> None:
    if not name or not set(name) <= NAME_CHARS or name.startswith("."):
        raise UserError(
            f"--name '{name}': use letters, digits, '-', '_' and '.' (not first), e.g. my-logs"
        )


def build_custom(
    source: Path,
    *,
    user_col: str,
    item_col: str,
    domain_col: str,
    name: str,
    out: Path,
    label_col: str | None = None,
    implicit: bool = False,
    features: list[str] = (),
    dense: list[str] = (),
    split: str = "random",
    time_col: str | None = None,
    negatives_per_positive: float | None = None,
    domains: list[str] | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Build the table at `source` (a Parquet or CSV file, or a folder of them) as dataset
    `name` in `out/name`. Labels from `label_col` (0/1), or `implicit`: every row a
    positive, negatives sampled per domain as the MAMDR builders do. `features`:
    categorical side fields; `dense`: dense ones (owners detected: docs/format.md)."""
    from mdrbench.atomic import writable_dir
    from mdrbench.builders.write import _log, build_lock, check_seed

    _check_name(name)
    check_seed(seed)
    if implicit == (label_col is not None):
        raise UserError("give exactly one of --label-col L (0/1 labels) and --implicit")
    if negatives_per_positive is not None and not implicit:
        raise UserError("--negatives-per-positive goes with --implicit (labels given: none sampled)")
    if implicit:
        r = DEFAULT_NEGATIVES if negatives_per_positive is None else negatives_per_positive
        if not (0 < r <= 1000):  # NaN fails too
            raise UserError(f"--negatives-per-positive must be above 0 and at most 1000, not {r}")
        negatives_per_positive = r
    if split not in ("random", "authors", "time"):
        raise UserError(f"--split must be random, authors or time, not '{split}'")
    if split == "time" and time_col is None:
        raise UserError("--split time needs --time-col (the timestamp column)")
    fields = [Field(f, "categorical") for f in features] + [Field(f, "dense") for f in dense]
    check_fields(fields)
    named = [user_col, item_col, domain_col, *([label_col] if label_col else []),
             *([time_col] if time_col else []), *features, *dense]  # fmt: skip
    dup = sorted({c for c in named if named.count(c) > 1})
    if dup:
        raise UserError(f"column {', '.join(repr(c) for c in dup)} is given to two options")
    inp = read_input(Path(source), list(dict.fromkeys(named)))
    _log(progress, f"building {name} from {inp.source} ({inp.frame.height:,} rows)")

    user = _typed(inp, user_col, "user id")
    item = _typed(inp, item_col, "item id")
    dom = _typed(inp, domain_col, "domain")
    names = sorted(dom.unique().to_list())
    if domains:
        text = dom.cast(pl.String)
        missing = [d for d in domains if not text.eq(d).any()]
        if missing:
            raise UserError(
                f"domain {', '.join(repr(d) for d in missing)} (--domains) has no rows in "
                f"column '{domain_col}' of {inp.source}"
            )
        names = list(domains)
        dom = text
    cols = {
        "user": user,
        "item": item,
        "domain_id": dom.cast(pl.String).replace_strict(
            [str(n) for n in names], list(range(len(names))), default=None,
            return_dtype=pl.Int16,
        ),  # fmt: skip
        "_row": inp.frame["_row"],
    }
    if label_col:
        cols["label"] = _label(inp, label_col)
    if time_col:
        cols["time"] = _time(inp, time_col)
    for f in features:
        cols[f] = inp.frame[f]
    for f in dense:
        cols[f] = _dense(inp, f)
    table = pl.DataFrame(cols).filter(pl.col("domain_id").is_not_null())  # --domains subset
    spec = DatasetSpec(
        name, "custom", tuple(DomainSpec(str(n), None if not implicit else 1.0 / negatives_per_positive)
                              for n in names),  # fmt: skip
        description=f"A custom multi-domain table ({len(names)} domains).",
        source=f"`{inp.source}` (mdrbench build custom: user `{user_col}`, item `{item_col}`, "
        f"domain `{domain_col}`, "
        + (f"label `{label_col}`)" if label_col else
           f"implicit, {negatives_per_positive:g} negatives per positive)"),
        hub_repo="", hub_revision="",
    )  # fmt: skip
    out = writable_dir(Path(out))
    with build_lock(out, name):
        return build_table(
            spec, table, fields, split=split, out=out, seed=seed,
            negatives_per_positive=negatives_per_positive if implicit else None,
            raw_infos=inp.infos, source=inp.source, force=force, progress=progress,
        )  # fmt: skip
