"""`mdrbench build`: raw files -> a reproducible dataset folder (docs/format.md).

The build writes into a temporary folder next to the target and renames it into place only
when everything (Parquet, manifest, card) is written: an interrupted or failed build never
leaves a folder that looks complete, and an existing dataset is replaced only with force.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from mdrbench import __version__
from mdrbench.atomic import Lock, pid_alive, recover_swap, staged, writable_dir
from mdrbench.builders import raw as rawio
from mdrbench.builders.card import dataset_card
from mdrbench.builders.manifest import FORMAT_VERSION, MANIFEST, dump_manifest, file_sha256
from mdrbench.builders.process import SPLIT, SPLITS, encode_ids, make_samples
from mdrbench.builders.specs import (
    AMAZON_KNOWN_FILES,
    DatasetSpec,
    amazon_file_name,
    get_spec,
)
from mdrbench.errors import UserError
from mdrbench.log import bar
from mdrbench.log import get as get_logger
from mdrbench.paths import default_data_dir

_logger = get_logger(__name__)

# Above this a domain gets almost no negatives (#neg = #pos / ratio per user, truncated).
MAX_CTR_RATIO = 100.0
SAMPLE_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "domain_id": pl.Int16, "label": pl.Int8}


def default_raw_dir(kind: str) -> Path:
    return default_data_dir().parent / "raw" / kind


def _log(progress: bool, msg: str) -> None:
    """A build step's message, through logging (the CLI prints it on stderr unless -q)."""
    if progress:
        _logger.info(msg)


def _write_parquet(df: pl.DataFrame, path: Path) -> None:
    # pyarrow with fixed settings: the bytes depend on the rows only, not on thread counts.
    pq.write_table(
        df.to_arrow(), path, compression="zstd", compression_level=3,
        row_group_size=1 << 20, write_statistics=True,
    )  # fmt: skip


def _amazon_positives(spec, domains, raw_dir, on_bad_lines, offline, progress):
    from mdrbench.builders.download import ensure_amazon_files

    names = [d.name for d in domains]
    paths = ensure_amazon_files(names, raw_dir, offline=offline, progress=progress)
    frames, infos = [], {}
    for d_id, name in enumerate(bar(names, enabled=progress, desc="reading", unit="file")):
        path = Path(paths[name])
        _log(progress, f"  reading {path.name}")
        df, info = rawio.read_amazon(path, on_bad_lines)
        known = AMAZON_KNOWN_FILES.get(path.name)
        if known and known != (info.bytes, info.sha256):
            _log(progress, f"  note: {path.name} is not the original Amazon 2018 file "
                 "(size or sha256 differ); fine for synthetic files, the manifest records it")  # fmt: skip
        infos[amazon_file_name(name)] = info
        frames.append(df.with_columns(domain_id=pl.lit(d_id, pl.Int16)))
    pos = pl.concat(frames).rename({"reviewerID": "user", "asin": "item"})
    return pos.select("user", "item", "domain_id"), infos, None


def _taobao_positives(spec, domains, raw_dir, on_bad_lines, offline, progress):
    _log(progress, f"  reading Taobao files in {raw_dir}")
    log, users, items, infos = rawio.read_taobao(raw_dir, on_bad_lines)
    n_themes = int(log["theme_no"].max()) + 1 if log.height else 0
    wanted = [spec.domain_names.index(d.name) for d in domains]  # theme numbers
    if max(wanted) >= n_themes:
        raise UserError(
            f"{spec.name} needs {max(wanted) + 1} themes but {raw_dir / 'theme_click_log.csv'} "
            f"has {n_themes} with embedded users and items. Check the files are the full "
            "Cloud Theme logs, or build a smaller dataset (e.g. taobao-10, or --domains)."
        )
    theme_to_domain = pl.DataFrame(
        {"theme_no": wanted, "domain_id": list(range(len(wanted)))},
        schema={"theme_no": pl.Int64, "domain_id": pl.Int16},
    )
    pos = (
        log.with_columns(pl.col("theme_no").cast(pl.Int64))
        .join(theme_to_domain, on="theme_no", how="inner")
        .select(pl.col("user_id").alias("user"), pl.col("item_id").alias("item"), "domain_id")
        .unique()  # distinct (user, item) per theme
        .sort("domain_id", "user", "item")
    )
    theme_ids = (
        log.select("theme_no", "theme_id").unique("theme_no").sort("theme_no")["theme_id"].to_list()
    )
    return pos, infos, (users, items, [theme_ids[t] for t in wanted])


def build_dataset(
    name: str,
    *,
    raw_dir: Path | None = None,
    out: Path | None = None,
    domains: list[str] | None = None,
    ctr_ratios: list[float] | None = None,
    seed: int = 0,
    force: bool = False,
    on_bad_lines: str = "error",
    offline: bool = False,
    progress: bool = False,
) -> Path:
    """Build dataset `name` into `out/name` and return that folder."""
    spec: DatasetSpec = get_spec(name)
    selected = spec.select(domains)
    if spec.kind not in ("amazon", "taobao"):  # the field's datasets (builders/field/)
        return _build_field(spec, selected, raw_dir, out, ctr_ratios, seed, force, on_bad_lines,
                            offline, progress)  # fmt: skip
    if ctr_ratios is not None:
        if len(ctr_ratios) != len(selected):
            raise UserError(
                f"--ctr-ratios has {len(ctr_ratios)} values for {len(selected)} domains "
                f"({', '.join(d.name for d in selected)}): give one per domain."
            )
        if any(not (0 < r <= MAX_CTR_RATIO) for r in ctr_ratios):  # NaN and inf fail too
            raise UserError(
                f"every CTR ratio (#pos / #neg) must be a number above 0 and at most "
                f"{MAX_CTR_RATIO:g} (the paper's are 0.2 to 0.47), got "
                f"{', '.join(f'{r:g}' for r in ctr_ratios)}"
            )
    check_seed(seed)
    ratios = list(ctr_ratios) if ctr_ratios is not None else [d.ctr_ratio for d in selected]
    if spec.kind == "taobao" and raw_dir is None:
        raise UserError(
            "Taobao files cannot be downloaded by a program (login required): pass --raw-dir.\n"
            + rawio.taobao_help(Path("<folder>"))
        )
    raw_dir = Path(raw_dir) if raw_dir is not None else default_raw_dir(spec.kind)
    out = writable_dir(Path(out) if out is not None else default_data_dir())
    with _build_lock(out, spec.name):
        return _build(spec, selected, ratios, raw_dir, out, seed, force, on_bad_lines, offline,
                      progress)  # fmt: skip


def _build_field(spec, selected, raw_dir, out, ctr_ratios, seed, force, on_bad_lines, offline,
                 progress) -> Path:  # fmt: skip
    from mdrbench.builders.field import build_field_dataset

    if ctr_ratios is not None:
        raise UserError(
            f"{spec.name} has its own labels (no sampled negatives): --ctr-ratios does not apply"
        )
    check_seed(seed)
    out = writable_dir(Path(out) if out is not None else default_data_dir())
    with _build_lock(out, spec.name):
        return build_field_dataset(
            spec, selected, raw_dir=raw_dir, out=out, seed=seed, force=force,
            on_bad_lines=on_bad_lines, offline=offline, progress=progress,
        )  # fmt: skip


def check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UserError(f"--seed must be an integer from 0 to {2**32 - 1}, got {seed!r}")


def _build_lock(out: Path, name: str) -> Lock:
    """Held for a whole build of `name` into `out`: a second one exits 2 at once."""
    return Lock(out / f".{name}.lock", f"building {name} into {out}")


def _build(spec, selected, ratios, raw_dir, out, seed, force, on_bad_lines, offline, progress):
    target = out / spec.name
    recover_swap(target)  # a --force build killed between its two renames
    if target.exists() and not force:
        raise UserError(f"{target} already exists: pass --force to replace it.")

    # Read and process first, then write into a temporary folder next to the target.
    _log(progress, f"building {spec.name} ({len(selected)} domains) into {target}")
    read = _amazon_positives if spec.kind == "amazon" else _taobao_positives
    pos, raw_infos, taobao_extra = read(spec, selected, raw_dir, on_bad_lines, offline, progress)
    pos, user_keys, item_keys = encode_ids(pos, "user", "item")
    features, domain_fields = None, None
    if taobao_extra is not None:
        users, items, theme_ids = taobao_extra
        features = {
            kind: pl.DataFrame({f"{kind}_id": pl.int_range(len(keys), eager=True), "key": keys})
            .join(table.rename({f"{kind}_id": "key"}), on="key", how="left")
            .sort(f"{kind}_id")
            .select(
                pl.col(f"{kind}_id").cast(pl.Int64),
                pl.col("features").list.to_array(rawio.EMB_DIM),
            )
            for kind, table, keys in (("user", users, user_keys), ("item", items, item_keys))
        }
        domain_fields = [{"theme_id": t} for t in theme_ids]
    return write_dataset(
        spec, selected, ratios, pos, out=out, seed=seed, on_bad_lines=on_bad_lines,
        raw_infos=raw_infos, features=features, domain_fields=domain_fields, force=True,
        progress=progress,
    )  # fmt: skip


def write_dataset(
    spec: DatasetSpec,
    selected: list,
    ratios: list[float],
    pos: pl.DataFrame,
    *,
    out: Path,
    seed: int = 0,
    on_bad_lines: str = "error",
    raw_infos: dict | None = None,
    features: dict[str, pl.DataFrame] | None = None,
    domain_fields: list[dict] | None = None,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Positives with dense ids (`user_id`, `item_id`, `domain_id` = index into `selected`)
    -> negatives, split, Parquet, manifest and card in `out/spec.name`, written atomically.
    `features`: {"user"|"item": frame of `<kind>_id`, `features`} for datasets with fixed
    features; `domain_fields`: extra manifest keys per domain (Taobao's theme ids)."""
    out = writable_dir(Path(out))
    lock = _build_lock(out, spec.name)
    try:
        return _write(spec, selected, ratios, pos, out, seed, on_bad_lines, raw_infos, features,
                      domain_fields, force, progress)  # fmt: skip
    finally:
        lock.release()


def _write(spec, selected, ratios, pos, out, seed, on_bad_lines, raw_infos, features,
           domain_fields, force, progress) -> Path:  # fmt: skip
    target = out / spec.name
    recover_swap(target)
    if target.exists() and not force:
        raise UserError(f"{target} already exists: pass --force to replace it.")
    counts = pos["domain_id"].value_counts().to_dicts() if pos.height else []
    have = {int(c["domain_id"]): int(c["count"]) for c in counts}
    empty = [d.name for i, d in enumerate(selected) if not have.get(i)]
    if empty:  # a domain without rows would shift every later domain's name and ratio
        raise UserError(
            f"no interactions for domain(s) {', '.join(empty)} of {spec.name}: check their "
            "raw files (empty or truncated?) and rebuild, or leave them out with --domains."
        )
    if progress:
        users, items = pos["user_id"].n_unique(), pos["item_id"].n_unique()
        _log(progress, f"  {pos.height:,} positives, {users:,} users, {items:,} items")
    samples = make_samples(pos.select("user_id", "item_id", "domain_id"), ratios, seed)
    n_neg = samples.filter(pl.col("label") == 0)["domain_id"].value_counts().to_dicts()
    has_neg = {int(c["domain_id"]) for c in n_neg if c["count"]}
    no_neg = [f"{d.name} (ratio {r:g})" for i, (d, r) in enumerate(zip(selected, ratios))
              if i not in has_neg]  # fmt: skip
    if no_neg:  # AUC needs both labels
        raise UserError(
            f"no negatives could be sampled for domain(s) {', '.join(no_neg)}: give a lower "
            "--ctr-ratios value (the paper's are 0.2 to 0.47)."
        )

    return write_samples(
        spec, selected, ratios, pos, samples, out=out, seed=seed, on_bad_lines=on_bad_lines,
        raw_infos=raw_infos,
        tables={f"{kind}_features.parquet": feats for kind, feats in (features or {}).items()},
        domain_fields=domain_fields, force=True, progress=progress,
    )  # fmt: skip


def write_samples(
    spec: DatasetSpec,
    selected: list,
    ratios: list,
    pos: pl.DataFrame,
    samples: pl.DataFrame,
    *,
    out: Path,
    seed: int,
    on_bad_lines: str = "error",
    raw_infos: dict | None = None,
    tables: dict[str, pl.DataFrame] | None = None,
    row_columns: list[str] = (),
    domain_fields: list[dict] | None = None,
    split_info: dict = SPLIT,
    extra: dict | None = None,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Samples (user_id, item_id, domain_id, label, split and `row_columns`) -> the split
    Parquet files, the extra `tables` (file name -> frame), the card and the manifest in
    `out/spec.name`, written atomically. `pos` is what the manifest counts users and items
    of; `split_info` is the manifest's `split`; `extra` keys follow it in the manifest."""
    target = out / spec.name
    recover_swap(target)
    if target.exists() and not force:
        raise UserError(f"{target} already exists: pass --force to replace it.")
    _remove_stale(out, spec.name)
    with staged(target) as tmp:
        files = {}
        for s, split in enumerate(SPLITS):
            part = samples.filter(pl.col("split") == s).select(*SAMPLE_SCHEMA, *row_columns)
            _write_parquet(part.cast(SAMPLE_SCHEMA), tmp / f"{split}.parquet")
            files[f"{split}.parquet"] = part.height
        for fname, table in (tables or {}).items():
            _write_parquet(table, tmp / fname)
            files[fname] = table.height
        manifest = _manifest(
            spec, selected, ratios, seed, on_bad_lines, pos, samples, raw_infos or {},
            split_info, extra or {},
        )  # fmt: skip
        for d, more in zip(manifest["domains"], domain_fields or []):
            d.update(more)
        (tmp / "README.md").write_text(dataset_card(spec, manifest), "utf-8")
        files["README.md"] = None
        manifest["files"] = {
            f: {"sha256": file_sha256(tmp / f), "bytes": (tmp / f).stat().st_size}
            | ({"rows": rows} if rows is not None else {})
            for f, rows in sorted(files.items())
        }
        (tmp / MANIFEST).write_bytes(dump_manifest(manifest))
    _log(progress, f"done: {target} ({samples.height:,} samples)")
    return target


def _remove_stale(out: Path, name: str) -> None:
    """Delete temporary folders left by an interrupted build of `name` (not a running one)."""
    for stale in list(out.glob(f".{name}.tmp-*")) + list(out.glob(f".{name}.old-*")):
        pid = stale.name[len(name) + 6 :].split("-", 1)[0]  # .<name>.tmp-<pid>[-<random>]
        if not (pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)


def _manifest(spec, selected, ratios, seed, on_bad_lines, pos, samples, raw_infos, split_info,
              extra) -> dict:  # fmt: skip
    per_pos = pos.group_by("domain_id").agg(
        n_users=pl.col("user_id").n_unique(), n_items=pl.col("item_id").n_unique()
    )
    per_split = samples.group_by("domain_id").agg(
        n_pos=(pl.col("label") == 1).sum(),
        n_neg=(pl.col("label") == 0).sum(),
        n_train=(pl.col("split") == 0).sum(),
        n_val=(pl.col("split") == 1).sum(),
        n_test=(pl.col("split") == 2).sum(),
    )
    stats = per_pos.join(per_split, on="domain_id").sort("domain_id").to_dicts()
    if [int(st["domain_id"]) for st in stats] != list(range(len(selected))):
        raise ValueError("every domain must have rows: the manifest would mislabel domains")
    domains = []
    for d, (dom, ratio, st) in enumerate(zip(selected, ratios, stats)):
        domains.append(
            {"id": d, "name": dom.name, "ctr_ratio": ratio}
            | {
                k: int(st[k])
                for k in ("n_users", "n_items", "n_pos", "n_neg", "n_train", "n_val", "n_test")
            }
        )
    totals = {
        "n_domains": len(domains),
        "n_users": int(pos["user_id"].n_unique()),
        "n_items": int(pos["item_id"].n_unique()),
    } | {k: sum(d[k] for d in domains) for k in ("n_pos", "n_neg", "n_train", "n_val", "n_test")}
    totals["n_samples"] = totals["n_pos"] + totals["n_neg"]
    return {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "kind": spec.kind,
        "spec_version": spec.version,
        "mdrbench_version": __version__,
        "seed": seed,
        "on_bad_lines": on_bad_lines,
        "split": split_info,
        **extra,
        "domains": domains,
        "totals": totals,
        "files": {},
        "raw_files": {k: v.as_dict() for k, v in sorted(raw_infos.items())},
    }
