"""The field's multi-domain datasets beyond MAMDR's five, each built as Scenario-Wise Rec
(github Xiaopengli1/Scenario-Wise-Rec) builds it: its domain definitions, label rules and
feature columns, read from its `scripts/` (docs/datasets.md lists every difference).

Each dataset has a module here with `read(raw_dir, on_bad_lines=, offline=, progress=)`
-> (table, fields, raw infos) in `builders/table.py`'s input form, and `synthesize(out,
seed=)`, which writes raw files in the real format (`mdrbench synth NAME`). They live in
their own registry, FIELD_DATASETS: the MAMDR benchmarks' registry (DATASETS) is what
the paper profile, the Hub home and the leaderboard's paper columns are about.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import polars as pl

from mdrbench.builders.specs import FIELD_DATASETS, DatasetSpec

MODULES = {"movielens-1m": "movielens", "amazon-swr": "amazon_swr", "mind": "mind", "douban": "douban", "kuairand-1k": "kuairand", "ali-ccp": "ali_ccp"}  # dataset name -> module here


def module(name: str):
    return importlib.import_module(f"mdrbench.builders.field.{MODULES[name]}")


def build_field_dataset(spec: DatasetSpec, selected, *, raw_dir: Path | None, out: Path,
                        seed: int, force: bool, on_bad_lines: str, offline: bool,
                        progress: bool) -> Path:  # fmt: skip
    """Build one of the field's datasets (its registered recipe) into out/NAME."""
    from mdrbench.builders.table import build_table
    from mdrbench.builders.write import _log, default_raw_dir

    mod = module(spec.name)
    if raw_dir is not None:
        raw_dir = Path(raw_dir)
    elif not getattr(mod, "USER_SUPPLIED", False):  # douban and ali-ccp: need_raw_dir says why
        raw_dir = default_raw_dir(spec.name)
    _log(progress, f"building {spec.name} ({len(selected)} domains) from {raw_dir}")
    table, fields, infos, *more = mod.read(raw_dir, on_bad_lines=on_bad_lines, offline=offline,
                                           progress=progress, seed=seed)  # fmt: skip
    extra = more[0] if more else {}  # domain_fields (manifest keys per domain), split_info
    keep = [spec.domains.index(d) for d in selected]
    if len(selected) != len(spec.domains):  # --domains: keep those, renumbered in spec order
        table = table.filter(pl.col("domain_id").is_in(keep)).with_columns(
            pl.col("domain_id").replace_strict(keep, list(range(len(keep))), return_dtype=pl.Int16)
        )
    domain_fields = [extra["domain_fields"][i] for i in keep] if "domain_fields" in extra else None
    spec = dataclasses.replace(spec, domains=tuple(selected))
    return build_table(
        spec, table, fields, split="given" if "split" in table.columns else "random", out=out,
        seed=seed, raw_infos=infos, on_bad_lines=on_bad_lines, domain_fields=domain_fields,
        split_info=extra.get("split_info"), force=force, progress=progress,
    )  # fmt: skip


SIZES = ("tiny", "small")


def synth_field(name: str, out: Path, *, n_domains=None, size="small", seed: int = 0) -> Path:
    """`mdrbench synth NAME` for the field's datasets: raw files in the real format."""
    from mdrbench.atomic import writable_dir
    from mdrbench.errors import UserError, unknown_name

    if name not in FIELD_DATASETS:
        raise unknown_name("synth kind", name, ["amazon", "taobao", *FIELD_DATASETS.names()])
    if n_domains is not None:
        raise UserError(f"--domains does not apply to {name}: its domains are fixed")
    if size not in SIZES:
        raise UserError(f"--size for {name} is one of {', '.join(SIZES)}, not '{size}'")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"bad seed {seed!r}: give an int >= 0")
    out = writable_dir(Path(out))
    return module(name).synthesize(out, scale=1 if size == "tiny" else 4, seed=seed)
