"""Writing a built dataset (docs/format.md): samples -> the split Parquet files, extra
tables, the card and the manifest, atomically; shared by the MAMDR builders
(builders/build.py) and the table builders (builders/table.py: the field's datasets and
`build custom`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from mdrbench import __version__
from mdrbench.atomic import Lock, pid_alive, recover_swap, staged
from mdrbench.builders.card import dataset_card
from mdrbench.builders.manifest import FORMAT_VERSION, MANIFEST, dump_manifest, file_sha256
from mdrbench.builders.process import SPLIT, SPLITS
from mdrbench.builders.specs import DatasetSpec
from mdrbench.errors import UserError
from mdrbench.log import get as get_logger
from mdrbench.paths import default_data_dir

_logger = get_logger(__name__)

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


def check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UserError(f"--seed must be an integer from 0 to {2**32 - 1}, got {seed!r}")


def build_lock(out: Path, name: str) -> Lock:
    """Held for a whole build of `name` into `out`: a second one exits 2 at once."""
    return Lock(out / f".{name}.lock", f"building {name} into {out}")


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
