"""`mdrbench build`: raw files -> a reproducible dataset folder (docs/format.md).

The build writes into a temporary folder next to the target and renames it into place only
when everything (Parquet, manifest, card) is written: an interrupted or failed build never
leaves a folder that looks complete, and an existing dataset is replaced only with force.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mdrbench.atomic import recover_swap, writable_dir
from mdrbench.builders import raw as rawio
from mdrbench.builders.process import encode_ids, make_samples
from mdrbench.builders.specs import (
    AMAZON_KNOWN_FILES,
    DatasetSpec,
    amazon_file_name,
    get_spec,
)
from mdrbench.builders.write import (
    _log,
    build_lock,
    check_seed,
    default_raw_dir,
    write_samples,
)
from mdrbench.errors import UserError
from mdrbench.log import bar
from mdrbench.paths import default_data_dir

# Above this a domain gets almost no negatives (#neg = #pos / ratio per user, truncated).
MAX_CTR_RATIO = 100.0


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
    with build_lock(out, spec.name):
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
    with build_lock(out, spec.name):
        return build_field_dataset(
            spec, selected, raw_dir=raw_dir, out=out, seed=seed, force=force,
            on_bad_lines=on_bad_lines, offline=offline, progress=progress,
        )  # fmt: skip


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
    lock = build_lock(out, spec.name)
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
