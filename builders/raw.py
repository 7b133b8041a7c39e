"""Reading the raw files: Amazon 2018 5-core JSON Lines and the Taobao Cloud Theme CSVs.

Every reader streams its file once, hashing the raw bytes on the way (the manifest records
each input's sha256), and fails on a malformed line with the file name and line number,
unless `on_bad_lines="skip"`, in which case the line is dropped and counted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.specs import AMAZON_MIRROR, AMAZON_URL, TAOBAO_PAGE
from mdrbench.errors import UserError

CHUNK_BYTES = 64 << 20  # decompressed bytes parsed per polars call
AMAZON_SCHEMA = {"reviewerID": pl.String, "asin": pl.String, "overall": pl.Float64}
EMB_DIM = 128

TAOBAO_FILES = {
    "theme_click_log.csv": [
        "user_id", "theme_id", "item_id", "leaf_cate_id", "cate_level1_id", "clk_cnt",
        "reach_time",
    ],
    "user_embedding.csv": ["user_id", "emb"],
    "item_embedding.csv": ["item_id", "emb"],
}  # fmt: skip


class RawDataError(UserError):
    """A raw file that is missing, unreadable or malformed."""


@dataclass
class RawInfo:
    """What the manifest records of one raw input file."""

    sha256: str
    bytes: int
    n_bad_lines: int = 0

    def as_dict(self) -> dict:
        return {"sha256": self.sha256, "bytes": self.bytes, "n_bad_lines": self.n_bad_lines}


class _HashingReader(io.RawIOBase):
    """Wraps a binary file: hashes and counts the bytes read through it."""

    def __init__(self, f):
        self._f = f
        self.sha = hashlib.sha256()
        self.n = 0

    def readable(self):
        return True

    def readinto(self, b):
        n = self._f.readinto(b)
        if n:
            self.sha.update(memoryview(b)[:n])
            self.n += n
        return n


def _check_on_bad_lines(on_bad_lines: str) -> None:
    if on_bad_lines not in ("error", "skip"):
        raise UserError(f"--on-bad-lines must be 'error' or 'skip', not '{on_bad_lines}'")


# --------------------------------------------------------------------------------------
# Amazon


def _amazon_line_ok(obj) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("reviewerID"), str)
        and isinstance(obj.get("asin"), str)
        and isinstance(obj.get("overall"), int | float)
        and not isinstance(obj.get("overall"), bool)
        and 1 <= obj["overall"] <= 5  # False for NaN too
    )


def _parse_amazon_chunk_slow(chunk: bytes, first_line: int, path: Path, on_bad_lines: str):
    """Line by line, to name the bad line (or skip and count bad lines)."""
    users, items, ratings, bad = [], [], [], 0
    for i, line in enumerate(chunk.split(b"\n")):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            ok = _amazon_line_ok(obj)
            why = "" if ok else "missing or mistyped reviewerID / asin / overall"
        except ValueError as exc:
            ok, why = False, f"not valid JSON ({exc.__class__.__name__}: {exc})"
        if not ok and not why.startswith("not valid") and isinstance(obj, dict):
            r = obj.get("overall")
            if isinstance(r, int | float) and not isinstance(r, bool) and not 1 <= r <= 5:
                why = f"overall is {r!r}; a rating must be 1 to 5"
        if not ok:
            if on_bad_lines == "error":
                raise RawDataError(
                    f"{path}: line {first_line + i}: {why}. Fix or re-download the file, or "
                    "rerun with --on-bad-lines skip to drop such lines (the manifest counts them)."
                )
            bad += 1
            continue
        users.append(obj["reviewerID"])
        items.append(obj["asin"])
        ratings.append(float(obj["overall"]))
    df = pl.DataFrame(
        {"reviewerID": users, "asin": items, "overall": ratings}, schema=AMAZON_SCHEMA
    )
    return df, bad


def _parse_amazon_chunk(chunk: bytes, first_line: int, path: Path, on_bad_lines: str):
    try:
        df = pl.read_ndjson(io.BytesIO(chunk), schema=AMAZON_SCHEMA)
        if df.null_count().sum_horizontal().item() == 0 and _ratings_ok(df["overall"]).all():
            return df, 0
    except pl.exceptions.PolarsError:
        pass
    # Something is off in this chunk (a bad line, a missing field): find it.
    return _parse_amazon_chunk_slow(chunk, first_line, path, on_bad_lines)


def _open_error(path: Path, exc: Exception) -> RawDataError:
    return RawDataError(
        f"{path}: cannot read it as gzip ({exc.__class__.__name__}: {exc}). The file is "
        "probably truncated or corrupt: delete it and rerun the build to download it again "
        f"(or fetch it by hand from {AMAZON_URL} or {AMAZON_MIRROR})."
    )


def read_amazon(
    path: Path, on_bad_lines: str = "error", unique: bool = True
) -> tuple[pl.DataFrame, RawInfo]:
    """(reviewerID, asin, overall) rows of one `<Category>_5.json.gz`, exact duplicates of
    the triple dropped (a pair reviewed twice with different ratings stays twice); with
    `unique=False` every line is kept, in file order (amazon-swr: Scenario-Wise Rec keeps
    them).

    Fast path: polars reads the whole file at once. If that fails or a required field is
    missing anywhere, the file is streamed again in chunks to name the bad line (or to skip
    and count bad lines)."""
    _check_on_bad_lines(on_bad_lines)
    path = Path(path)
    df, info = None, None
    try:
        df = pl.read_ndjson(path, schema=AMAZON_SCHEMA)
        if df.null_count().sum_horizontal().item() == 0 and _ratings_ok(df["overall"]).all():
            sha, size = _sha256_and_size(path)
            df, info = (df.unique() if unique else df), RawInfo(sha, size)
        else:
            df = None
    except (pl.exceptions.PolarsError, OSError, ValueError):
        pass
    if df is None:
        df, info = _read_amazon_streaming(path, on_bad_lines)
        df = df.unique() if unique else df
    if df.height == 0:
        what = "is empty (0 bytes)" if info.bytes == 0 else "holds no reviews"
        raise RawDataError(
            f"{path} {what}: delete it and rerun the build to download it again "
            f"(or fetch it by hand from {AMAZON_URL} or {AMAZON_MIRROR})."
        )
    return df, info


def _ratings_ok(overall: pl.Series) -> pl.Series:
    """Amazon ratings are 1 to 5 stars: a NaN, infinite or out-of-range one is a bad line."""
    return overall.is_not_nan() & (overall >= 1) & (overall <= 5)


def _sha256_and_size(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
                n += len(chunk)
    except OSError as exc:
        raise RawDataError(f"{path}: cannot read it ({exc.strerror or exc}).") from None
    return h.hexdigest(), n


def _read_amazon_streaming(path: Path, on_bad_lines: str) -> tuple[pl.DataFrame, RawInfo]:
    frames, bad, line_no = [], 0, 1
    try:
        with open(path, "rb") as raw:
            hashing = _HashingReader(raw)
            with gzip.GzipFile(fileobj=io.BufferedReader(hashing, 1 << 20)) as gz:
                rest = b""
                while True:
                    block = gz.read(CHUNK_BYTES)
                    if not block:
                        break
                    block = rest + block
                    cut = block.rfind(b"\n") + 1
                    chunk, rest = block[:cut], block[cut:]
                    if chunk:
                        df, b = _parse_amazon_chunk(chunk, line_no, path, on_bad_lines)
                        frames.append(df)
                        bad += b
                        line_no += chunk.count(b"\n")
                if rest.strip():
                    df, b = _parse_amazon_chunk(rest, line_no, path, on_bad_lines)
                    frames.append(df)
                    bad += b
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _open_error(path, exc) from None
    except OSError as exc:
        raise RawDataError(f"{path}: cannot read it ({exc.strerror or exc}).") from None
    df = pl.concat(frames) if frames else pl.DataFrame(schema=AMAZON_SCHEMA)
    return df, RawInfo(hashing.sha.hexdigest(), hashing.n, bad)


# --------------------------------------------------------------------------------------
# Taobao


def taobao_help(raw_dir: Path) -> str:
    cols = "\n".join(f"  {name}: {','.join(c)}" for name, c in TAOBAO_FILES.items())
    return (
        f"The Taobao Cloud Theme Click files need a login: download them from {TAOBAO_PAGE}, "
        f"put them in {raw_dir} and pass --raw-dir {raw_dir}. Expected files and header "
        f"columns:\n{cols}\n  (emb: 128 floats separated by single spaces)"
    )


def _read_csv_checked(path: Path, columns: list[str], raw_dir: Path, on_bad_lines: str):
    if not path.is_file():
        raise RawDataError(f"missing Taobao file {path}.\n" + taobao_help(raw_dir))
    data = path.read_bytes()
    info = RawInfo(hashlib.sha256(data).hexdigest(), len(data))
    header = data[: data.find(b"\n")].decode("utf-8", "replace").strip().split(",")
    if header != columns:
        raise RawDataError(
            f"{path}: header is {','.join(header)!r}, expected {','.join(columns)!r}.\n"
            + taobao_help(raw_dir)
        )
    data, info.n_bad_lines = _drop_ragged(path, data, len(columns), on_bad_lines)
    try:
        df = pl.read_csv(
            io.BytesIO(data), schema={c: pl.String for c in columns}, has_header=True,
            truncate_ragged_lines=False,
        )  # fmt: skip
    except pl.exceptions.PolarsError as exc:
        raise RawDataError(
            f"{path}: not a well-formed CSV ({str(exc).splitlines()[0]}). Re-download it, "
            "or check the file is the one named."
        ) from None
    return df, info


def _commas_per_line(
    data: bytes, chunk: int = 1 << 24, sep: int = 44
) -> tuple[np.ndarray, np.ndarray]:
    """(separators: commas unless `sep` names another byte, blank) for each line of `data` (as `data.split(b"\\n")` cuts it), computed
    over newline-aligned chunks so the temporaries stay ~5x `chunk` bytes, not the file's."""
    arr = np.frombuffer(data, np.uint8)
    n = arr.size
    if n == 0:
        return np.zeros(1, np.int64), np.ones(1, bool)
    commas, blank, start = [], [], 0
    while True:
        end = min(start + chunk, n)
        if end < n:
            cut = data.rfind(b"\n", start, end)
            end = cut + 1 if cut >= start else (data.find(b"\n", end) + 1 or n)
        part = arr[start:end]
        nl = np.flatnonzero(part == 10)
        s, e = np.r_[0, nl + 1], np.r_[nl, part.size]
        if end < n:  # the part ends with "\n": what follows belongs to the next part
            s, e = s[:-1], e[:-1]
        c = np.r_[0, np.cumsum(part == sep, dtype=np.int32)]
        commas.append((c[e] - c[s]).astype(np.int64))
        blank.append((e - s) <= (part[np.maximum(e - 1, 0)] == 13))  # "" or "\r"
        if end >= n:
            break
        start = end
    return np.concatenate(commas), np.concatenate(blank)


def _drop_ragged(
    path: Path, data: bytes, n_cols: int, on_bad_lines: str, sep: int = 44, header: bool = True
) -> tuple[bytes, int]:
    """Lines (after the header) whose number of fields is not the header's: an error naming
    the first, or (skip) dropped and counted. The files are unquoted CSV (`sep`: another
    one-byte separator)."""
    per_line, blank = _commas_per_line(data, sep=sep)
    bad = ~blank & (per_line != n_cols - 1)
    if header:
        bad[0] = False  # the header, checked by name
    n_bad = int(bad.sum())
    if not n_bad:
        return data, 0
    if on_bad_lines == "error":
        first = int(np.flatnonzero(bad)[0])
        raise RawDataError(
            f"{path}: line {first + 1}: {per_line[first] + 1} fields, the format has {n_cols} "
            f"({n_bad} such lines). Fix the file, or rerun with --on-bad-lines skip to drop "
            "them (the manifest counts them)."
        )
    lines = data.split(b"\n")
    return b"\n".join(line for line, b in zip(lines, bad) if not b), n_bad


def _bad_rows(path, bad_mask: np.ndarray, why: str, on_bad_lines: str) -> int:
    n_bad = int(bad_mask.sum())
    if n_bad and on_bad_lines == "error":
        first = int(np.flatnonzero(bad_mask)[0]) + 2  # +1 header, +1 one-based
        raise RawDataError(
            f"{path}: line {first}: {why} ({n_bad} such lines). Fix the file, or rerun with "
            "--on-bad-lines skip to drop them (the manifest counts them)."
        )
    return n_bad


def _read_embeddings(path: Path, id_col: str, raw_dir: Path, on_bad_lines: str):
    df, info = _read_csv_checked(path, [id_col, "emb"], raw_dir, on_bad_lines)
    parts = df["emb"].str.strip_chars().str.split(" ")
    floats = parts.cast(pl.List(pl.Float32), strict=False)
    ok = (
        df[id_col].is_not_null()
        & floats.is_not_null()
        & (floats.list.len() == EMB_DIM)
        & (floats.list.eval(pl.element().is_null()).list.any() == False)  # noqa: E712
        & floats.list.eval(pl.element().is_finite()).list.all()  # no nan, inf, 1e400
    ).fill_null(False)
    n_bad = _bad_rows(
        path, ~ok.to_numpy(),
        f"the emb field must hold {EMB_DIM} space-separated finite floats", on_bad_lines,
    )  # fmt: skip
    rows = pl.DataFrame(
        {id_col: df[id_col], "features": floats, "_line": pl.int_range(df.height, eager=True)}
    ).filter(ok)
    # An id given again with another vector is a bad line (which one is right?); an exact
    # repeat is harmless and dropped.
    dups = rows.filter(pl.col(id_col).is_duplicated())  # usually none: no extra memory
    if dups.height:
        seen = dups.unique(subset=id_col, keep="first", maintain_order=True)
        dups = dups.join(seen.select(id_col, _l0="_line", _f0="features"), on=id_col, how="left")
        clash = ((dups["_line"] != dups["_l0"]) & (dups["features"] != dups["_f0"])).to_numpy()
        if clash.any():
            mask = np.zeros(df.height, bool)
            mask[dups["_line"].to_numpy()[clash]] = True
            n_bad += _bad_rows(
                path, mask, f"{id_col} given again with another vector", on_bad_lines
            )
    first = rows.unique(subset=id_col, keep="first", maintain_order=True)
    info.n_bad_lines += n_bad
    return first.select(id_col, "features"), info


def read_taobao(raw_dir: Path, on_bad_lines: str = "error"):
    """Clicks with an embedding for both user and item, themes numbered as the authors'
    `dataset/Taobao/preprocess_data.py` (`preprocess`) numbers them: by first appearance in
    the *unfiltered* click log (every line with a theme_id, before bad lines and clicks
    without embeddings are dropped), then themes left with no click are skipped. A theme
    whose first clicks all lack embeddings keeps its early place.

    Returns (clicks: user_id, item_id (raw strings), theme_no (0-based place among the themes
    that keep clicks, in that order), theme_id; user_emb; item_emb; {file name: RawInfo})."""
    _check_on_bad_lines(on_bad_lines)
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise RawDataError(f"raw folder {raw_dir} does not exist.\n" + taobao_help(raw_dir))
    missing = [n for n in TAOBAO_FILES if not (raw_dir / n).is_file()]
    if missing:
        raise RawDataError(
            f"missing Taobao file(s) in {raw_dir}: {', '.join(missing)}.\n" + taobao_help(raw_dir)
        )
    infos = {}
    name = "theme_click_log.csv"
    log, infos[name] = _read_csv_checked(raw_dir / name, TAOBAO_FILES[name], raw_dir, on_bad_lines)
    themes = log["theme_id"].drop_nulls().unique(maintain_order=True)  # unfiltered order
    ok = log["user_id"].is_not_null() & log["item_id"].is_not_null() & log["theme_id"].is_not_null()
    infos[name].n_bad_lines += _bad_rows(
        raw_dir / name, ~ok.to_numpy(), "user_id, theme_id or item_id is empty", on_bad_lines
    )
    log = log.filter(ok).select("user_id", "theme_id", "item_id")
    users, infos["user_embedding.csv"] = _read_embeddings(
        raw_dir / "user_embedding.csv", "user_id", raw_dir, on_bad_lines
    )
    items, infos["item_embedding.csv"] = _read_embeddings(
        raw_dir / "item_embedding.csv", "item_id", raw_dir, on_bad_lines
    )
    # Drop clicks whose user or item has no embedding, then skip the themes left empty.
    log = log.join(users.select("user_id"), on="user_id", how="semi", maintain_order="left")
    log = log.join(items.select("item_id"), on="item_id", how="semi", maintain_order="left")
    themes = (
        themes.to_frame()
        .join(log.select("theme_id").unique(), on="theme_id", how="semi", maintain_order="left")
        .to_series()
    )
    log = log.with_columns(
        theme_no=pl.col("theme_id").replace_strict(themes, pl.int_range(len(themes), eager=True))
    )
    return log, users, items, infos
