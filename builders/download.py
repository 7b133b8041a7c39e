"""Fetch the Amazon 2018 per-category raw files, resumably, from the original URL or the mirror.

`download` streams one file to `<dest>.part`, resumes an interrupted `.part` with an HTTP
Range request, retries transient failures with exponential backoff, tries each URL in
turn, checks the size, and only then renames the file to `dest`. `ensure_amazon_files`
uses what is already in the raw folder and downloads only what is missing.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import requests
import urllib3

from mdrbench.errors import UserError
from mdrbench.log import get as get_logger

from . import specs

_logger = get_logger(__name__)
CHUNK = 1 << 20  # 1 MiB
MIB = float(1 << 20)

# What a flaky network or server looks like: worth another try, resuming from disk.
_NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError)
# ... except a URL that can never work.
_BAD_URL = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema)  # fmt: skip


class DownloadError(UserError):
    """A file could not be fetched from any of its URLs; says where to get it by hand."""

    def __init__(
        self,
        name: str,
        folder: Path,
        failures: list[tuple[str, str]],
        partial: Path | None = None,
        unreachable: bool = False,
    ):
        self.name = name
        self.folder = folder
        self.failures = failures  # (url, error) for each URL tried, in order
        self.unreachable = unreachable  # no URL could even be connected to
        urls = [url for url, _ in failures]
        tried = "\n".join(f"  {url}: {error}" for url, error in failures)
        where = urls[0] + "".join(f" (or {url})" for url in urls[1:])
        message = (
            f"could not download {name}:\n{tried}\n"
            f"Download it from {where} and put it in {folder}, "
            f"then rerun with --raw-dir {folder}"
        )
        if partial:
            message += f"\n(The partial download {partial} is kept; a rerun resumes it.)"
        super().__init__(message)


class _Retry(Exception):
    """A transient failure: try the same URL again after a backoff."""


class _Restart(_Retry):
    """The partial file cannot be resumed; it was deleted, so retry at once from zero."""


class _GiveUp(Exception):
    """This URL will not work (4xx, wrong size, retries used up): go on to the next one."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable  # no connection at all (refused, DNS, timeout)


def amazon_urls(category: str) -> list[str]:
    """The original URL and the mirror for one category's `<Category>_5.json.gz`."""
    name = specs.amazon_file_name(category)
    return [specs.AMAZON_URL + name, specs.AMAZON_MIRROR + name]


def download(
    urls: list[str],
    dest: Path,
    *,
    expected_size: int | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool = True,
    session: requests.Session | None = None,
    expected_sha256: str | None = None,
    check: Callable[[Path], str | None] | None = None,
) -> str:
    """Download `dest` from the first of `urls` that works; return the file's sha256 hex.

    A `.part` left by an earlier try is resumed. A complete file whose sha256 is not
    `expected_sha256`, or that `check(path)` finds wrong (it returns the reason), is
    deleted and the next URL tried. Raises DownloadError when every URL failed after
    `retries` retries each; no file is then left at `dest`.
    """
    if not urls:
        raise ValueError("download() needs at least one URL")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    own_session = session is None
    session = session or requests.Session()
    bar = _Progress(dest.name, progress)
    failures: list[tuple[str, str]] = []
    unreachable = True
    try:
        for url in urls:
            try:
                sha = _download_url(
                    session, url, part, expected_size, retries, backoff, timeout, bar
                )
            except _GiveUp as e:
                failures.append((url, str(e)))
                unreachable = unreachable and e.unreachable
                continue
            problem = None
            if expected_sha256 is not None and sha != expected_sha256:
                problem = (
                    f"sha256 {sha[:16]}... differs from the known file's {expected_sha256[:16]}..."
                )
            elif check is not None:
                problem = check(part)
            if problem:  # never kept under the final name, nor resumed
                part.unlink(missing_ok=True)
                failures.append((url, problem))
                unreachable = False
                continue
            os.replace(part, dest)
            return sha
    finally:
        bar.close()
        if own_session:
            session.close()
    partial = part if part.exists() else None
    raise DownloadError(dest.name, dest.parent, failures, partial, unreachable)


def _download_url(session, url, part, expected_size, retries, backoff, timeout, bar) -> str:
    """Fetch one URL into `part` with retries; the complete file's sha256, or _GiveUp."""
    for attempt in range(retries + 1):
        unreachable = False
        try:
            return _fetch(session, url, part, expected_size, timeout, bar)
        except _Restart as e:
            error = str(e)
            continue  # the bad part is gone: no reason to wait
        except _Retry as e:
            error = str(e)
        except _BAD_URL as e:
            raise _GiveUp(_describe(e)) from e
        except _NETWORK_ERRORS as e:
            error = _describe(e)
            unreachable = isinstance(e, (requests.ConnectionError, requests.Timeout))
        if attempt < retries:
            delay = backoff * 2**attempt
            bar.note(f"{error}; retrying in {delay:g}s")
            time.sleep(delay)
    raise _GiveUp(f"{error} (gave up after {retries + 1} tries)", unreachable=unreachable)


def _describe(e: Exception) -> str:
    """A short reason for a network error: requests' own text nests three exceptions deep."""
    text = str(e)
    for pattern in (r"\[Errno -?\d+\][^'\")]*", r"Connection broken: [^'\"(]*", r"Read timed out"):
        if m := re.search(pattern, text):
            text = m[0].strip()
            break
    return f"{type(e).__name__}: {text[:200]}"


def _fetch(session, url, part, expected_size, timeout, bar) -> str:
    """One HTTP request: resume or (re)start `part`, stream it, check it; the sha256 hex."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # the bytes as stored, so ranges line up
    if have:
        headers["Range"] = f"bytes={have}-"
    with session.get(url, headers=headers, stream=True, timeout=timeout) as r:
        if r.status_code == 416:  # nothing after `have`: complete already, or too big
            total = _content_range_total(r.headers.get("Content-Range"))
            if total is not None and have == total:
                _check_size(have, total, expected_size, part)
                return _sha256_of(part).hexdigest()
            part.unlink(missing_ok=True)
            raise _Restart(f"partial file of {have} bytes does not fit; restarting from zero")
        if r.status_code >= 500:
            raise _Retry(f"HTTP {r.status_code} {r.reason}")
        if r.status_code not in (200, 206):
            raise _GiveUp(f"HTTP {r.status_code} {r.reason}")

        length = r.headers.get("Content-Length")
        if r.status_code == 206:
            start, total = _content_range(r.headers.get("Content-Range"))
            if start != have:
                part.unlink(missing_ok=True)
                raise _Restart(f"server resumed at byte {start}, not {have}; restarting")
            if total is None and length is not None:
                total = have + int(length)
        else:  # 200: a fresh download, either asked for or because the server ignored Range
            have = 0
            total = int(length) if length is not None else None
        if total is not None and expected_size is not None and total != expected_size:
            part.unlink(missing_ok=True)
            raise _GiveUp(f"server says {total} bytes, expected {expected_size}")

        sha = _sha256_of(part) if have else hashlib.sha256()
        done = have
        bar.start(done, total)
        with open(part, "ab" if have else "wb") as f:
            for chunk in r.raw.stream(CHUNK, decode_content=False):
                f.write(chunk)
                sha.update(chunk)
                done += len(chunk)
                bar.update(done)
    if total is not None and done < total:
        raise _Retry(f"transfer cut off at {done} of {total} bytes")
    _check_size(done, total, expected_size, part)
    return sha.hexdigest()


def _check_size(size: int, total: int | None, expected: int | None, part: Path):
    """The size must match every size we know; a wrong file is deleted, never kept."""
    for want in (total, expected):
        if want is not None and size != want:
            part.unlink(missing_ok=True)
            raise _GiveUp(f"got {size} bytes, expected {want}")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); total None for '/*'."""
    m = re.fullmatch(r"bytes\s+(\d+)-\d+/(\d+|\*)", (value or "").strip())
    if not m:
        return None, None
    return int(m[1]), (int(m[2]) if m[2] != "*" else None)


def _content_range_total(value: str | None) -> int | None:
    """'bytes */1000' (a 416's Content-Range) -> 1000."""
    m = re.fullmatch(r"bytes\s+\*/(\d+)", (value or "").strip())
    return int(m[1]) if m else None


def _sha256_of(path: Path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
    return sha


class _Progress:
    """One tqdm bar per file, in bytes, starting at the bytes already on disk (a resumed
    `.part` shows where it resumed, and its rate counts only new bytes); shown on a terminal
    unless -q. Messages (which file, retries) go through logging."""

    def __init__(self, name: str, enabled: bool):
        self.name = name
        self.enabled = enabled
        self.bar = None

    def start(self, done: int, total: int | None):
        from mdrbench.log import bar

        if self.bar is None:
            if self.enabled:
                _logger.info(f"  downloading {self.name}"
                             + (f" (resuming at {done / MIB:.1f} MiB)" if done else ""))  # fmt: skip
            self.bar = bar(total=total, initial=done, desc=f"  {self.name}", unit="B",
                           unit_scale=True, unit_divisor=1024, enabled=self.enabled)  # fmt: skip
        else:  # a retry: same bar, from what is on disk now
            self.bar.reset(total=total)
            self.bar.update(done)

    def update(self, done: int):
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def note(self, message: str):
        if self.enabled:
            _logger.info(f"  {self.name}: {message}")

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def gzip_problem(path: Path) -> str | None:
    """Why `path` is not a complete gzip file (an HTML error page, a cut-off body), or None.
    Decompresses it all: gzip's trailer (CRC and length) catches a truncated end."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:2] != b"\x1f\x8b":
        shown = head[:24].decode("ascii", "replace").replace("\n", " ")
        return f"not a gzip file (it starts with {shown!r}: an error page?)"
    try:
        with gzip.open(path, "rb") as g:
            while g.read(1 << 24):
                pass
    except (EOFError, OSError, zlib.error) as exc:
        return f"a truncated or corrupt gzip file ({type(exc).__name__}: {exc})"
    return None


def ensure_amazon_files(
    categories: list[str], raw_dir: Path, *, offline: bool = False, progress: bool = True
) -> dict[str, Path]:
    """category -> path of its `<Category>_5.json.gz` in `raw_dir`, downloading what is missing.

    Files already in `raw_dir` are used as they are. With `offline`, or when downloads fail,
    raises one UserError naming each missing file, its two URLs and the folder to put it in.
    """
    raw_dir = Path(raw_dir)
    paths = {c: raw_dir / specs.amazon_file_name(c) for c in categories}
    missing = [c for c, path in paths.items() if not path.is_file()]
    errors: dict[str, DownloadError | None] = {}  # None: not tried
    if not offline:
        unreachable = False
        for c in missing:
            if unreachable:  # the next files would only wait out the same retries
                errors[c] = None
                continue
            size, sha = specs.AMAZON_KNOWN_FILES.get(paths[c].name, (None, None))
            try:
                download(
                    amazon_urls(c), paths[c], progress=progress, expected_size=size,
                    expected_sha256=sha, check=gzip_problem,
                )  # fmt: skip
            except DownloadError as e:
                errors[c] = e
                unreachable = e.unreachable
        missing = list(errors)
    if missing:
        raise _missing_files_error(missing, raw_dir, offline, errors)
    return paths


def _missing_files_error(missing, raw_dir, offline, errors) -> UserError:
    why = "offline, so nothing was downloaded" if offline else "downloading failed"
    lines = [f"{len(missing)} Amazon raw file(s) missing from {raw_dir} ({why}):"]
    for c in missing:
        lines.append(f"  {specs.amazon_file_name(c)}  ({c})")
        if errors.get(c):
            lines += [f"    {url}  -> {error}" for url, error in errors[c].failures]
        else:
            lines += [f"    {url}" for url in amazon_urls(c)]
            if c in errors:
                lines.append("    (not tried: the servers could not be reached)")
    lines.append(
        f"Download each file from one of its URLs and put it in {raw_dir}, "
        f"then rerun with --raw-dir {raw_dir}"
    )
    return UserError("\n".join(lines))
