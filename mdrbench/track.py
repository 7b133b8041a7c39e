"""The track of a result: which comparison it belongs to (docs/tuning.md).

- `paper`: the paper profile applied (the authors' published configuration for a
  benchmark dataset, baselines/paper_configs.json) and no `--set` replaced a value it set;
- `tuned`: the configuration `mdrbench tune` selected on validation AUC within a declared
  search space and budget; the result carries its `tuning` record;
- `custom`: anything else (mdrbench's defaults, a profile with values replaced, a
  submission scored by `mdrbench score`).

Entries are ranked only within one track, never across tracks. A result records its track
under "track"; one written before tracks existed gets the track its config implies
(`result_track`). Pure Python (no torch, no NumPy): the trainer, the result tables,
`validate` and the leaderboard all use it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

TRACKS = ("paper", "tuned", "custom")
SEARCHES = ("grid", "random")
TRIAL_KIND = "mdrbench-trial"  # a tuning trial's record (mdrbench/trial.py): not a result


def is_trial(obj: Any) -> bool:
    """Whether a parsed JSON is a tuning trial's record (which tables, `validate` and the
    leaderboard skip: it is not a result)."""
    return isinstance(obj, dict) and obj.get("kind") == TRIAL_KIND


def profile_track(profile: Mapping | None) -> str:
    """"paper" when the recorded profile (`RunConfig.profile`) is the paper profile, it
    set something, nothing it set was replaced, and it covers the model (the paper ran it:
    `model_covered` is not false); else "custom"."""
    if not isinstance(profile, Mapping) or profile.get("name") != "paper":
        return "custom"
    if not profile.get("applied") or profile.get("overridden"):
        return "custom"
    if profile.get("model_covered") is False:
        return "custom"
    return "paper"


def result_track(record: Mapping) -> str:
    """A result's track: the one it records, else the one its config's profile implies."""
    track = record.get("track")
    if isinstance(track, str):
        return track
    config = record.get("config")
    return profile_track(config.get("profile") if isinstance(config, Mapping) else None)


def config_values(config: Mapping) -> dict[str, Any]:
    """{"section.name": value} of a recorded config's train/model/framework sections."""
    out: dict[str, Any] = {}
    for section, values in config.items():
        if section != "profile" and isinstance(values, Mapping):
            out |= {f"{section}.{name}": v for name, v in values.items()}
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def best_trial(trials: list[Mapping]) -> int | None:
    """Index of the trial with the highest val_auc (the first of equals); None when no
    trial has one."""
    best = None
    for i, t in enumerate(trials):
        v = t.get("val_auc")
        if _is_number(v) and (best is None or v > trials[best]["val_auc"]):
            best = i
    return best


def selected_values(record: Mapping) -> dict[str, Any]:
    """The tuned keys' selected values of a tuned result ({} for any other)."""
    tuning = record.get("tuning")
    if result_track(record) != "tuned" or not isinstance(tuning, Mapping):
        return {}
    return dict(tuning["trials"][tuning["selected"]]["config"])


def check_track(record: Mapping) -> list[str]:
    """What is wrong with a result's "track" and "tuning" fields (empty when fine; both
    are optional). A tuned result's record must be whole: each trial {config, val_auc}
    only (no other metric, so no test number), the selected trial the best by val_auc,
    and the result's config equal to the selected trial's on every tuned key."""
    errs: list[str] = []
    track = record.get("track")
    if track is None:
        if "tuning" in record:
            errs.append("has a 'tuning' record but no \"track\": \"tuned\"")
        return errs
    if track not in TRACKS:
        return [f"field 'track' must be one of {', '.join(TRACKS)}, got {track!r:.40}"]
    config = record.get("config") if isinstance(record.get("config"), Mapping) else {}
    if track == "paper" and profile_track(config.get("profile")) != "paper":
        errs.append(
            "track is 'paper' but its config is not the paper profile as published (another "
            "profile, nothing applied, or a value it set replaced): its track is 'custom'"
        )
    if track != "tuned":
        if "tuning" in record:
            errs.append(f"has a 'tuning' record but its track is '{track}', not 'tuned'")
        return errs
    t = record.get("tuning")
    if not isinstance(t, Mapping):
        return errs + ["track is 'tuned' but there is no 'tuning' object"]
    if not (isinstance(t.get("budget"), int) and not isinstance(t["budget"], bool)
            and t["budget"] >= 1):  # fmt: skip
        errs.append("tuning.budget must be an integer >= 1")
    if t.get("search") not in SEARCHES:
        errs.append(f"tuning.search must be one of {', '.join(SEARCHES)}")
    if not isinstance(t.get("seed"), int) or isinstance(t.get("seed"), bool):
        errs.append("tuning.seed must be an integer")
    if not isinstance(t.get("space"), Mapping) or not t["space"]:
        errs.append("tuning.space must be a non-empty object {section.name: [values]}")
    trials = t.get("trials")
    if not isinstance(trials, list) or not trials:
        return errs + ["tuning.trials must be a non-empty list"]
    for i, tr in enumerate(trials):
        if not isinstance(tr, Mapping) or set(tr) != {"config", "val_auc"}:
            keys = sorted(tr) if isinstance(tr, Mapping) else type(tr).__name__
            errs.append(f"tuning.trials[{i}] must hold exactly config and val_auc, has {keys}")
            continue
        if not isinstance(tr["config"], Mapping):
            errs.append(f"tuning.trials[{i}].config must be an object")
        if tr["val_auc"] is not None and not (_is_number(tr["val_auc"])
                                              and 0 <= tr["val_auc"] <= 1):  # fmt: skip
            errs.append(f"tuning.trials[{i}].val_auc must be a number in [0, 1] or null")
    if errs:
        return errs
    sel = t.get("selected")
    if not isinstance(sel, int) or isinstance(sel, bool) or not 0 <= sel < len(trials):
        return [f"tuning.selected must be the index of a trial (0 to {len(trials) - 1})"]
    if best_trial(trials) != sel:
        errs.append(
            f"tuning.selected is trial {sel} but the best by val_auc is trial {best_trial(trials)}"
        )
    flat = config_values(config)
    for key, value in trials[sel]["config"].items():
        if key not in flat or not _same(flat[key], value):
            errs.append(
                f"config {key} is {json.dumps(flat.get(key))} but the selected trial's is "
                f"{json.dumps(value)}"
            )
    return errs
