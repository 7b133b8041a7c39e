"""One tuning trial (`mdrbench tune`, docs/tuning.md): a training run that is judged on
the validation split only and never evaluates the test split.

A trial writes a *trial record*, not a result: `{"kind": "mdrbench-trial", ...}` with the
run's dataset build, model, method, seed, resolved config, validation metrics, `val_auc`
(the average validation AUC of its selected state), its stages and history (validation
numbers only), or, for a configuration whose training diverges, `"diverged": message` and
`val_auc` null. It has no `schema_version`, so `mdrbench table`, `load_results`,
`validate` and the leaderboard never take it for a result. The sweep runs trials as it
runs results (`sweep.Run.kind == "trial"`): written in one step (a temporary file renamed
into place), so a killed trial leaves nothing that counts and is run again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mdrbench.errors import UserError
from mdrbench.track import TRIAL_KIND as KIND
from mdrbench.track import is_trial

VERSION = 1


def trial_path(out: Path, dataset: str, model: str, method: str, index: int, seed: int) -> Path:
    """`OUT/trials/<dataset>__<model>__<method>/trial<NNN>__seed<S>.json`."""
    return Path(out) / "trials" / f"{dataset}__{model}__{method}" / f"trial{index:03d}__seed{seed}.json"


def trial_document(record: Mapping[str, Any]) -> dict:
    """The trial record of a trainer record made with `test=False` (its test metrics are
    None: they are dropped, not kept as nulls)."""
    if record["metrics"]["test"] is not None:
        raise ValueError("a trial is trained with test=False: its test split is never evaluated")
    val = record["metrics"]["val"]
    doc = {"kind": KIND, "trial_version": VERSION}
    for k in ("mdrbench_version", "dataset", "model", "method", "seed", "config", "best_epoch",
              "train_seconds", "stopped_at_cap", "environment", "history"):  # fmt: skip
        doc[k] = record[k]
    doc["val_auc"] = val["auc_mean"]
    doc["diverged"] = None
    doc["val"] = val
    doc["stages"] = [
        {**{k: v for k, v in st.items() if k != "metrics"}, "val": st["metrics"]["val"]}
        for st in record["stages"]
    ]
    return doc


def read_trial(path: Path) -> dict | None:
    """The trial record at `path`; None when there is none. Any other file there raises
    UserError (it is never replaced)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"the file there is not readable JSON ({exc})") from None
    if not is_trial(doc) or doc.get("trial_version") != VERSION:
        raise UserError("the file there is not a trial record of this mdrbench")
    for key, ok in (("dataset", dict), ("model", str), ("method", str), ("seed", int),
                    ("config", dict)):  # fmt: skip
        if not isinstance(doc.get(key), ok):
            raise UserError(f"the trial record there has no valid '{key}'")
    if doc.get("diverged") is None and not isinstance(doc.get("val"), dict):
        raise UserError("the trial record there has neither validation metrics nor 'diverged'")
    return doc


def run_trial(
    dataset: str, model: str, method: str, seed: int, overrides: Mapping[str, Any],
    profile: str, path: Path,
) -> dict:  # fmt: skip
    """Train one trial (the test split never evaluated) and write its record at `path`."""
    from mdrbench import __version__
    from mdrbench.atomic import Lock, replace_file
    from mdrbench.data import load_dataset
    from mdrbench.errors import TrainingDiverged
    from mdrbench.results import lock_path
    from mdrbench.trainer import resolve_config, resolve_device, stderr_log, train

    cfg = resolve_config(model, method, overrides, profile=profile)
    data = load_dataset(dataset, resolve_device(cfg.train.device))
    info = data.info
    cfg = resolve_config(model, method, overrides, dataset=info.name, profile=profile)
    cfg.train.seed = seed
    path = Path(path)
    with Lock(lock_path(path), f"writing {path}"):
        stderr_log(f"== trial {path.name}: {info.name} {model} + {method}, seed {seed}, "
                   f"--set {dict(overrides)} (validation only)")  # fmt: skip
        try:
            res = train(data, model, method, seed=seed, run=cfg, log=stderr_log, test=False)
            doc = trial_document(res.record)
        except TrainingDiverged as exc:
            stderr_log(f"diverged: {exc}")
            doc = {
                "kind": KIND, "trial_version": VERSION, "mdrbench_version": __version__,
                "dataset": {"name": info.name, "manifest_sha256": info.manifest_sha256},
                "model": model, "method": method, "seed": seed, "config": cfg.to_dict(),
                "val_auc": None, "diverged": str(exc), "val": None,
            }  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=2) + "\n"))
        stderr_log(f"wrote {path}")
    return doc
