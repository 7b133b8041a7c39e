"""A run, end to end, as the library does it: train one (model, method) per seed and write
each result JSON with its test predictions beside it, as one unit. `mdrbench eval`, `sweep`,
`tune`, `score` and `mdrbench.api` all go through here (the CLI is a layer above it).

No torch at import time: the trainer is imported inside `run_seeds`.
"""

from __future__ import annotations

import json
from pathlib import Path

from mdrbench.atomic import replace_file as _replace_file
from mdrbench.errors import UserError


def write_result(path: Path, record: dict, test=None, scores=None) -> None:
    """A run's result JSON and (given the test split's `(domain_id, label)` arrays and the
    `scores`) its predictions beside it, as one unit: the JSON is the commit point, so an old
    JSON is removed first and the new one renamed in last. A kill at any moment leaves
    either no result or a complete pair."""
    from mdrbench.validate import predictions_path

    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    pred = predictions_path(path)
    if test is not None:
        write_predictions(pred, *test, scores)
    else:
        pred.unlink(missing_ok=True)  # a stale file of another run must not pair with this one
    _replace_file(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))


def write_predictions(path: Path, domain_id, label, scores) -> None:
    """`<stem>.predictions.parquet` (docs/leaderboard.md): domain_id, label, score per row
    of the test split, in its order, for `mdrbench validate` to recompute every metric from."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "domain_id": pa.array(np.asarray(domain_id).astype("int16")),
            "label": pa.array(np.asarray(label).astype("int8")),
            "score": pa.array(scores, pa.float64()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_file(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def save_result(record: dict, out: Path, test=None, scores=None, force: bool = False) -> Path:
    """Write `record` into `out` (file name: `results.result_path`); given the test split's
    `(domain_id, label)` arrays and the `scores`, its predictions beside it (`write_result`).
    A result there of another config or dataset build is replaced only with `force`."""
    from mdrbench.results import config_diff, read_result, result_path

    r = record
    path = result_path(out, r["dataset"]["name"], r["model"], r["method"], r["seed"])
    old = None if force else read_result(path)
    if old is not None:
        sha = record["dataset"].get("manifest_sha256")
        diff = config_diff(old.get("config", {}), record.get("config", {}))
        if old["dataset"].get("manifest_sha256") != sha:
            diff.insert(0, "dataset build (manifest sha256) differs")
        if diff:
            raise UserError(
                f"{path} holds a result of another config or build ({'; '.join(diff[:3])}): "
                "pass force=True (--force) to replace it, or write to another folder."
            )
    write_result(path, record, test, scores)
    return path


def split_arrays(split) -> tuple:
    """A torch Split's (domain_id, label) as NumPy arrays."""
    return split.domain_id.cpu().numpy(), split.label.cpu().numpy()


def run_seeds(
    dataset: str,
    model: str,
    method: str,
    seeds: list[int],
    overrides: dict,
    out: Path | None,
    quiet: bool = False,
    verbose: bool = False,
    data=None,
    predictions: bool = True,
    force: bool = False,
    profile: str | None = None,
    runs: list | None = None,
    extra: dict | None = None,
) -> list[dict]:
    """Train one (model, method) for each seed; write one JSON per run into `out`, and
    beside it the test predictions (`predictions`), as one unit (`write_result`).
    `profile`: "paper" (the default: the authors' configuration on a benchmark dataset) or
    "none". `runs`: [(seed, RunConfig)] used as they are (`eval --config`) instead of
    `seeds`, `overrides` and `profile`. `extra`: fields every record gets besides the
    trainer's (`mdrbench tune`'s "track": "tuned" and "tuning"), part of its identity.

    Before any training: `out` must be writable; each run's result file is locked (a
    concurrent mdrbench writing the same run fails at once); a finished result of the same
    config and dataset build is kept and its seed not rerun; a result of a different config
    is refused unless `force`."""
    from mdrbench.atomic import Lock, remove_stale, writable_dir
    from mdrbench.data import load_dataset
    from mdrbench.results import (
        config_diff,
        finished_result,
        identity_diff,
        lock_path,
        read_result,
        result_path,
    )
    from mdrbench.trainer import resolve_config, resolve_device, stderr_log, train

    profile = profile or "paper"
    if runs is None:  # refuse bad options before loading data
        run = resolve_config(model, method, overrides, profile=profile)
    else:
        run = runs[0][1]
        seeds = [seed for seed, _ in runs]
    if out is not None:
        out = writable_dir(out)
        remove_stale(out)  # what a killed run left: temporary files, unheld lock files
    if data is None:
        data = load_dataset(dataset, resolve_device(run.train.device))
    name, sha = data.info.name, data.info.manifest_sha256
    locks, todo, records = [], [], {}
    try:
        conflicts = []
        given = dict(runs or [])
        for seed in seeds:
            cfg = given.get(seed) or resolve_config(
                model, method, overrides, dataset=name, profile=profile
            )
            cfg.train.seed = seed
            if out is None:
                todo.append((seed, cfg, None))
                continue
            path = result_path(out, name, model, method, seed)
            locks.append(Lock(lock_path(path), f"writing {path}"))
            if force:
                todo.append((seed, cfg, path))
                continue
            old = read_result(path)
            diff = [] if old is None else (config_diff(old["config"], cfg.to_dict())
                                           + identity_diff(old, cfg.to_dict(), extra))  # fmt: skip
            if old is not None and old["dataset"].get("manifest_sha256") != sha:
                diff.insert(0, "dataset build (manifest sha256) differs")
            if diff:
                conflicts.append(f"{path} ({'; '.join(diff[:3])})")
            elif finished_result(path, predictions) is not None:
                records[seed] = old
                if not quiet:
                    stderr_log(f"kept {path}: a finished run of this config (--force reruns it)")
            else:
                todo.append((seed, cfg, path))
        if conflicts:
            raise UserError(
                "a result of another config or build is already there: "
                + "; ".join(conflicts[:3])
                + (f"; and {len(conflicts) - 3} more" if len(conflicts) > 3 else "")
                + ". Pass --force to replace it, or --out another folder."
            )
        for seed, cfg, path in todo:
            if not quiet:
                applied = cfg.profile.get("applied") or {}
                stderr_log(
                    f"== {name}: {model} + {method}, seed {seed}, profile "
                    f"{cfg.profile.get('name')}"
                    + (f" ({', '.join(f'{k}={v}' for k, v in applied.items())})" if applied else "")
                )
            res = train(
                data, model, method, seed=seed, run=cfg,
                log=None if quiet else stderr_log, log_domains=verbose, progress=not quiet,
            )  # fmt: skip
            for st in res.record["stages"]:
                if st["stopped_by"] == "cap" and not quiet:
                    stderr_log(
                        f"note: stage {st['name']} stopped at the epoch cap after "
                        f"{st['epochs']} epochs"
                        + (", validation AUC still rising" if st["val_auc_rising"] else "")
                    )
            res.record.update(extra or {})
            if path is not None:
                test = split_arrays(data.test) if predictions else None
                write_result(path, res.record, test, res.test_scores)
                if not quiet:
                    stderr_log(f"wrote {path}")
            records[seed] = res.record
    finally:
        for lock in locks:
            lock.release()
    return [records[s] for s in seeds]
