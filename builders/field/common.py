"""What the field's dataset builders share: reading a delimited raw file with its checks,
fetching a public archive into the raw folder, and the synthetic writers' helpers."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.raw import RawDataError, RawInfo, _check_on_bad_lines, _drop_ragged
from mdrbench.errors import UserError

SEP_BYTE = 0x1F  # a multi-byte separator ("::") is rewritten to this byte before parsing


def read_delimited(
    path: Path,
    columns: list[str],
    *,
    sep: bytes = b",",
    header: bool = False,
    encoding: str = "utf-8",
    on_bad_lines: str = "error",
    help_text: str = "",
) -> tuple[pl.DataFrame, RawInfo]:
    """Every field of an unquoted delimited file as strings (`columns` names them; with
    `header`, the file's first line must hold exactly them). A line with another number of
    fields is an error naming the file and line, or (skip) dropped and counted."""
    _check_on_bad_lines(on_bad_lines)
    if not path.is_file():
        raise RawDataError(f"missing raw file {path}." + (f"\n{help_text}" if help_text else ""))
    data = path.read_bytes()
    info = RawInfo(hashlib.sha256(data).hexdigest(), len(data))
    if encoding != "utf-8":
        data = data.decode(encoding).encode("utf-8")
    elif b"\xef\xbb\xbf" == data[:3]:
        data = data[3:]
    if data.endswith(b"\r\n") or b"\r\n" in data[:65536]:
        data = data.replace(b"\r\n", b"\n")
    if len(sep) > 1:
        data = data.replace(sep, bytes([SEP_BYTE]))
        sep = bytes([SEP_BYTE])
    if header:
        first = data[: data.find(b"\n") if b"\n" in data else len(data)]
        got = first.decode("utf-8", "replace").strip().split(sep.decode())
        if got != columns:
            raise RawDataError(
                f"{path}: header is {sep.decode().join(got)!r}, expected "
                f"{sep.decode().join(columns)!r}." + (f"\n{help_text}" if help_text else "")
            )
    data, info.n_bad_lines = _drop_ragged(path, data, len(columns), on_bad_lines, sep[0], header)
    try:
        df = pl.read_csv(
            io.BytesIO(data), has_header=header, new_columns=None if header else columns,
            separator=sep.decode(), quote_char=None, schema={c: pl.String for c in columns},
            truncate_ragged_lines=False,
        )  # fmt: skip
    except pl.exceptions.PolarsError as exc:
        raise RawDataError(f"{path}: not a well-formed file ({str(exc).splitlines()[0]}).") from None
    if df.height == 0:
        raise RawDataError(f"{path} holds no rows: delete it and fetch it again.")
    return df, info


def read_quoted(path: Path, columns: list[str], *, sep: str = ",", help_text: str = ""
                ) -> tuple[pl.DataFrame, RawInfo]:  # fmt: skip
    """The named `columns` (strings) of a delimited file with a header line and fields in
    double quotes where needed (pandas' `to_csv`); other columns may exist, in any order.
    A malformed file is an error (polars' reason; no line skipping for quoted files)."""
    if not path.is_file():
        raise RawDataError(f"missing raw file {path}." + (f"\n{help_text}" if help_text else ""))
    data = path.read_bytes()
    info = RawInfo(hashlib.sha256(data).hexdigest(), len(data))
    try:
        df = pl.read_csv(io.BytesIO(data), separator=sep, quote_char='"', infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise RawDataError(f"{path}: not a well-formed file ({str(exc).splitlines()[0]})."
                           + (f"\n{help_text}" if help_text else "")) from None  # fmt: skip
    df = df.rename({c: c.strip().strip('"') for c in df.columns})
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RawDataError(f"{path}: no column {', '.join(missing)} (has: {', '.join(df.columns)})."
                           + (f"\n{help_text}" if help_text else ""))  # fmt: skip
    if df.height == 0:
        raise RawDataError(f"{path} holds no rows: delete it and fetch it again.")
    return df.select(columns), info


def as_int(df: pl.DataFrame, cols: list[str], path: Path, on_bad_lines: str, info: RawInfo,
           first_line: int = 1) -> pl.DataFrame:  # fmt: skip
    """`cols` parsed as Int64; a line with a non-integer there is an error naming it, or
    (skip) dropped and counted."""
    parsed = df.with_columns(pl.col(c).str.strip_chars().cast(pl.Int64, strict=False) for c in cols)
    bad = parsed.select(pl.any_horizontal(pl.col(c).is_null() for c in cols))[:, 0]
    return drop_bad(parsed, bad, f"{' / '.join(cols)} must be integers", path, on_bad_lines,
                    info, first_line)  # fmt: skip


def drop_bad(df: pl.DataFrame, bad: pl.Series, why: str, path: Path, on_bad_lines: str,
             info: RawInfo, first_line: int = 1) -> pl.DataFrame:  # fmt: skip
    """Rows flagged `bad`: an error naming the first one's line, or dropped and counted."""
    bad = bad.fill_null(True)
    n = int(bad.sum())
    if not n:
        return df
    if on_bad_lines == "error":
        line = int(bad.arg_true()[0]) + first_line
        raise RawDataError(
            f"{path}: line {line}: {why} ({n} such lines). Fix the file, or rerun with "
            "--on-bad-lines skip to drop them (the manifest counts them)."
        )
    info.n_bad_lines += n
    return df.filter(~bad)


def ensure_files(raw_dir: Path, names: list[str], url: str, members: dict[str, str], *,
                 offline: bool, progress: bool, help_text: str) -> None:  # fmt: skip
    """Place `names` in raw_dir: missing ones are extracted from the zip archive at `url`
    (downloaded into raw_dir once; `members`: file name -> path inside the archive)."""
    missing = [n for n in names if not (raw_dir / n).is_file()]
    if not missing:
        return
    if offline:
        raise UserError(
            f"missing {', '.join(missing)} in {raw_dir} and --offline was given.\n{help_text}"
        )
    from mdrbench.builders.download import download

    raw_dir.mkdir(parents=True, exist_ok=True)
    archive = raw_dir / url.rsplit("/", 1)[-1]
    if not archive.is_file():
        download([url], archive, progress=progress, check=_zip_problem)
    try:
        with zipfile.ZipFile(archive) as z:
            for n in missing:
                tmp = raw_dir / f".{n}.part"
                tmp.write_bytes(z.read(members[n]))
                tmp.replace(raw_dir / n)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise UserError(
            f"{archive}: cannot extract {', '.join(missing)} ({exc}); delete it and rerun the "
            f"build to download it again.\n{help_text}"
        ) from None


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        return f"member {bad} is corrupt" if bad else None
    except (zipfile.BadZipFile, OSError) as exc:
        return f"not a zip archive ({exc})"


def need_raw_dir(raw_dir: Path | None, name: str, help_text: str) -> Path:
    if raw_dir is None:
        raise UserError(f"{name}'s files cannot be downloaded by a program: pass --raw-dir.\n"
                        + help_text)  # fmt: skip
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise UserError(f"raw folder {raw_dir} does not exist.\n{help_text}")
    return raw_dir


# ------------------------------------------------------------------- synthetic writers


def write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Atomic: a half-written raw file never keeps the final name."""
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(text.encode(encoding))
    tmp.replace(path)


def planted_labels(rng: np.random.Generator, user: np.ndarray, item: np.ndarray,
                   domain: np.ndarray, n_users: int, n_items: int, n_domains: int) -> np.ndarray:  # fmt: skip
    """A score per row with planted structure: a shared user x item taste, a per-domain
    twist and noise (what makes a synthetic set learnable; docs/synth.md's idea, small).
    Call it once for all rows: each call draws new user and item latents."""
    k = 4
    a_u = rng.normal(size=(n_users, k))
    a_i = rng.normal(size=(n_items, k))
    twist = rng.normal(size=(n_domains, k))
    shared = (a_u[user] * a_i[item]).sum(1) / np.sqrt(k)
    specific = (a_u[user] * a_i[item] * twist[domain]).sum(1) / np.sqrt(k)
    return shared + specific + rng.normal(scale=0.5, size=user.size)
