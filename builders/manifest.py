"""The manifest of a built dataset: checksums, counts, verification and the statistics
tables (paper Tables I-IV) that `mdrbench stats` prints and the dataset card embeds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mdrbench.errors import UserError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def dump_manifest(manifest: dict) -> bytes:
    """Canonical bytes: sorted keys would reorder domains' fields; keep insertion order,
    fixed indent, trailing newline. No timestamps or paths go in, so equal builds are equal."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def load_manifest(path: Path) -> dict:
    path = Path(path)
    mpath = path / MANIFEST if path.is_dir() else path
    if not mpath.is_file():
        raise UserError(
            f"no {MANIFEST} in {path}: not a built mdrbench dataset "
            "(build one with: mdrbench build NAME --out DIR)."
        )
    try:
        manifest = json.loads(mpath.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{mpath} is not valid JSON ({exc}); rebuild the dataset.") from None
    for key in ("name", "domains", "totals", "files"):
        if key not in manifest:
            raise UserError(f"{mpath} lacks '{key}': not an mdrbench manifest; rebuild it.")
    return manifest


def describe_split(manifest: dict) -> str:
    """How the build's rows were split, from its manifest (spec 1.x manifests name no rule)."""
    from mdrbench.builders.process import SPLIT, SPLIT_DESCRIPTION, SPLIT_DESCRIPTIONS

    rule = (manifest.get("split") or {}).get("rule")
    if rule == SPLIT["rule"]:
        return SPLIT_DESCRIPTION
    if rule in SPLIT_DESCRIPTIONS:
        return SPLIT_DESCRIPTIONS[rule]
    if rule is None:
        return "one 60/20/20 train/val/test split per domain, stratified by label (spec 1.x)."
    return f"rule '{rule}' (not one this mdrbench knows)."


def manifest_sha256(path: Path) -> str:
    """The checksum a result uses to name the exact build it ran on."""
    path = Path(path)
    return file_sha256(path / MANIFEST if path.is_dir() else path)


def verify(path: Path, cached: bool = False) -> list[str]:
    """Re-hash every file the manifest lists, and name files it does not list. Returns the
    problems (empty when all match).

    `cached`: skip re-hashing a file whose size, mtime, ctime and inode are those recorded
    when it last matched (the fast path `check_dataset` uses before training; `mdrbench
    verify` always re-hashes)."""
    path = Path(path)
    manifest = load_manifest(path)
    problems = []
    cache, key, seen = _load_cache(path) if cached else ({}, "", {})
    for name, entry in manifest["files"].items():
        f = path / name
        if not f.is_file():
            problems.append(f"{name}: missing")
            continue
        st = f.stat()
        if st.st_size != entry["bytes"]:
            problems.append(f"{name}: {st.st_size} bytes, manifest says {entry['bytes']}")
            continue
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, entry["sha256"]]
        if cached and seen.get(name) == stamp:
            continue
        if file_sha256(f) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest")
        elif cached:
            seen[name] = stamp
    listed = set(manifest["files"]) | {MANIFEST}
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path).as_posix()
        if f.is_file() and rel not in listed:
            problems.append(f"{rel}: not in the manifest (a file the build did not write)")
    if cached and not problems:
        _save_cache(cache, key, seen)
    return problems


def _cache_file() -> Path:
    from mdrbench.paths import cache_dir

    return cache_dir() / "verified.json"


def _load_cache(path: Path) -> tuple[dict, str, dict]:
    """(whole cache, this folder's key, this folder's {file: stamp})."""
    key = f"{path.resolve()}|{file_sha256(path / MANIFEST)}"
    try:
        cache = json.loads(_cache_file().read_text("utf-8"))
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    seen = cache.get(key)
    return cache, key, dict(seen) if isinstance(seen, dict) else {}


def _save_cache(cache: dict, key: str, seen: dict) -> None:
    """Best effort (a read-only home only costs a re-hash next time); atomic replace."""
    import os
    import tempfile

    cache = {k: v for k, v in cache.items() if Path(k.rpartition("|")[0]).is_dir()}
    cache[key] = seen
    f = _cache_file()
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".verified-", dir=f.parent)
        with os.fdopen(fd, "w") as out:
            json.dump(cache, out)
        os.replace(tmp, f)
    except OSError:
        pass


def check_dataset(path: Path) -> None:
    """Refuse a dataset whose files do not match its manifest (sizes and sha256; unchanged
    files are not re-hashed, see `verify(cached=True)`): run before training on it."""
    problems = verify(path, cached=True)
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        raise UserError(
            f"dataset {path} does not match its manifest ({shown}): it was changed or damaged "
            f"after it was built. See `mdrbench verify {path}`; rebuild it with --force or "
            "download it again."
        )


# --------------------------------------------------------------------------------------
# Statistics tables


def stats_tables(manifest: dict, fmt: str = "md") -> str:
    """Table I (overall) and Tables II-IV (per domain) of the paper, from a manifest, as
    md, csv or latex (the one table renderer, `mdrbench.results.render`)."""
    from mdrbench.results import Table, render

    if fmt not in ("md", "csv", "latex"):
        raise UserError(f"--format must be md, csv or latex, not '{fmt}'")
    t = manifest["totals"]
    n_samples = t["n_train"] + t["n_val"] + t["n_test"]
    shares = "/".join(f"{100 * t[k] / max(n_samples, 1):.1f}" for k in ("n_train", "n_val", "n_test"))
    overall = Table(
        "Overall statistics (paper Table I)",
        ["Dataset", "#Domain", "#User", "#Item", "#Train", "#Val", "#Test", "Sample / Domain",
         "Train/Val/Test %"],
        [[
            manifest["name"], t["n_domains"], t["n_users"], t["n_items"], t["n_train"],
            t["n_val"], t["n_test"], n_samples // max(t["n_domains"], 1), shares,
        ]],
        align="l" + "r" * 8,
    )  # fmt: skip
    rows = []
    for d in manifest["domains"]:
        n = d["n_pos"] + d["n_neg"]
        rows.append([
            d["id"], d["name"], n, f"{100 * n / max(n_samples, 1):.2f}%", d["ctr_ratio"],
            d["n_pos"] / max(d["n_neg"], 1), d["n_users"], d["n_items"], d["n_pos"],
            d["n_neg"], d["n_train"], d["n_val"], d["n_test"],
        ])  # fmt: skip
    per_domain = Table(
        "Per-domain statistics (paper Tables II-IV)",
        ["id", "Domain", "#Samples", "Percentage", "CTR Ratio", "measured pos/neg",
         "#User", "#Item", "#Pos", "#Neg", "#Train", "#Val", "#Test"],
        rows,
        align="rl" + "r" * 11,
        digits={5: 3},
    )  # fmt: skip
    return render(overall, fmt) + "\n" + render(per_domain, fmt)
