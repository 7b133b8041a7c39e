"""`mdrbench tune`: every method tuned on the validation split within a declared search
space and the same budget, then the selected configuration run on several seeds as
ordinary results of the "tuned" track (docs/tuning.md).

- Search spaces are data: baselines/tuning_spaces.json (`shipped`), per model and per
  method, each with a one-line source; `--space FILE` replaces or extends them
  (`load_spaces`). Every key and value is checked against the hyperparameters' declared
  types before anything runs.
- `run_space` gives one (model, method)'s space; `draw` its trials: the whole grid when it
  fits in the budget, otherwise a seeded random draw without repeats (the draw for a
  budget is the first trials of the draw for any larger one, so raising `--budget` reuses
  finished trials).
- `plan` resolves every trial of every (dataset, model, method) as a run of kind "trial"
  (`sweep.make_run`); `sweep.sweep` runs them (resumable, `--jobs`, Ray, retries, the
  progress line); `select` picks the trial with the highest validation AUC averaged over
  the selection seeds; `final_runs` makes the selected configuration's runs, each result
  carrying "track": "tuned" and its "tuning" record; `sweep.sweep` runs those too.

A trial never evaluates the test split (`trial.py`), so no test number of a trial exists
to be printed, stored or used.
"""

from __future__ import annotations

import copy
import json
import random
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from mdrbench.config import (
    FrameworkConfig,
    ModelConfig,
    TrainConfig,
    convert,
    field_types,
    type_name,
)
from mdrbench.errors import UserError
from mdrbench.sweep import Run, Source, add_run, make_run, names, sources
from mdrbench.track import best_trial, config_values

SPACES_FILE = "tuning_spaces.json"
TOP_KEYS = {"label", "notes", "common", "models", "methods"}
ENTRY_KEYS = {"source", "values", "not_used", "replace"}
NEVER_TUNED = {"train.seed", "train.device", "train.threads"}  # run-only: not hyperparameters
DEFAULT_BUDGET = 8


# ----------------------------------------------------------------------------- spaces


@lru_cache(maxsize=1)
def shipped() -> dict:
    """baselines/tuning_spaces.json as it is shipped."""
    text = resources.files("mdrbench.baselines").joinpath(SPACES_FILE).read_text("utf-8")
    return json.loads(text)


def load_spaces(space_file: Path | None = None) -> dict:
    """The shipped spaces, with `space_file`'s entries merged over them, every key and value
    checked (`check_spaces`); values converted to their hyperparameter's type."""
    spaces = copy.deepcopy(shipped())
    if space_file is not None:
        where = f"--space {space_file}"
        try:
            extra = json.loads(Path(space_file).read_text("utf-8"))
        except OSError as exc:
            raise UserError(f"{where}: cannot read it ({exc.strerror})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{where}: not a JSON file ({exc})") from None
        check_spaces(extra, where, partial=True)
        spaces = merge(spaces, extra, where)
    return check_spaces(spaces, SPACES_FILE if space_file is None else f"the spaces with {space_file}")


def merge(base: Mapping, extra: Mapping, where: str) -> dict:
    """`extra`'s entries over `base`'s: an entry with "replace": true replaces the one in
    `base`; any other's lists replace or add keys of it (and its not_used are added)."""
    out = copy.deepcopy(dict(base))
    out.setdefault("models", {})
    out.setdefault("methods", {})

    def one(old: Mapping | None, new: Mapping) -> dict:
        source = new.get("source", where)
        if old is None or new.get("replace"):
            return {"source": source, "values": dict(new.get("values", {})),
                    "not_used": list(new.get("not_used", []))}  # fmt: skip
        values = dict(old.get("values", {})) | dict(new.get("values", {}))
        not_used = list(dict.fromkeys([*old.get("not_used", []), *new.get("not_used", [])]))
        return {"source": f"{old['source']}; {source}", "values": values, "not_used": not_used}

    if "common" in extra:
        out["common"] = one(out.get("common"), extra["common"])
    for group in ("models", "methods"):
        for name, entry in extra.get(group, {}).items():
            out[group][name] = one(out[group].get(name), entry)
    return out


def _types(group: str, name: str | None) -> dict[str, dict[str, Any]]:
    """The sections an entry of `group` may set, each {name: declared type}."""
    from mdrbench.frameworks import FRAMEWORKS
    from mdrbench.models import MODELS

    train = field_types(TrainConfig)
    if group == "common":
        return {"train": train, "model": field_types(ModelConfig),
                "framework": field_types(FrameworkConfig)}  # fmt: skip
    if group == "models":
        return {"train": train, "model": field_types(MODELS.get(name).Config)}
    return {"train": train, "framework": field_types(FRAMEWORKS.get(name).Config)}


def _typed(value: Any, tp: Any) -> bool:
    """Whether a JSON value has the declared type as it is (no string standing for a
    number, no number for a string, no bool for a number)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:  # its checks run in `convert`
        return _typed(value, args[0])
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return (value is None and type(None) in args) or any(
            _typed(value, a) for a in args if a is not type(None)
        )
    if origin in (list, tuple):
        return isinstance(value, list) and all(_typed(v, args[0] if args else str) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return False


def check_spaces(spaces: Any, where: str, partial: bool = False) -> dict:
    """Refuse a spaces document with an unknown key, section, model, method or
    hyperparameter, a value of the wrong type or an empty or repeating list; returns it
    with every value converted to its type (`partial`: a --space FILE, whose entries need
    no source)."""
    from mdrbench.errors import unknown_name
    from mdrbench.frameworks import FRAMEWORKS
    from mdrbench.models import MODELS

    if not isinstance(spaces, dict):
        raise UserError(f"{where}: expected a JSON object with common/models/methods entries")
    _known_keys(spaces, TOP_KEYS, where)
    entries: list[tuple[str, str | None, Any]] = []
    if "common" in spaces:
        entries.append(("common", None, spaces["common"]))
    for group, reg, kind in (("models", MODELS, "model"), ("methods", FRAMEWORKS, "method")):
        block = spaces.get(group, {})
        if not isinstance(block, dict):
            raise UserError(f"{where}: '{group}' must be an object {{{kind} name: entry}}")
        for name, entry in block.items():
            if name not in reg:
                raise UserError(f"{where}: {group}: {unknown_name(kind, name, reg.names())}")
            entries.append((group, name, entry))
    for group, name, entry in entries:
        label = f"{where}: {group}" + (f".{name}" if name else "")
        _check_entry(entry, label, _types(group, name), partial)
    return spaces


def _known_keys(obj: dict, keys: set[str], label: str) -> None:
    unknown = sorted(set(obj) - keys)
    if unknown:
        raise UserError(f"{label}: unknown key(s) {', '.join(unknown)}; keys: "
                        f"{', '.join(sorted(keys))}")  # fmt: skip


def _check_entry(entry: Any, label: str, sections: dict, partial: bool) -> None:
    if not isinstance(entry, dict):
        raise UserError(f"{label}: expected an object {{source, values, not_used}}")
    _known_keys(entry, ENTRY_KEYS, label)
    if not isinstance(entry.get("source", "" if partial else None), str):
        raise UserError(f"{label}: 'source' must be a one-line string saying where the values come from")
    if not isinstance(entry.get("replace", False), bool):
        raise UserError(f"{label}: 'replace' must be true or false")
    values = entry.get("values", {})
    if not isinstance(values, dict):
        raise UserError(f"{label}: 'values' must be an object {{section.name: [candidates]}}")
    not_used = entry.get("not_used", [])
    if not isinstance(not_used, list):
        raise UserError(f"{label}: 'not_used' must be a list of section.name keys")
    for key in not_used:
        _key_type(key, sections, f"{label}: not_used")
    for key, cands in values.items():
        tp = _key_type(key, sections, f"{label}: values")
        if not isinstance(cands, list) or not cands:
            raise UserError(f"{label}: {key} must be a non-empty list of candidate values")
        for v in cands:
            if not _typed(v, tp):
                what = type_name(tp)
                what = what if what.startswith("one of") else f"a {what} value"
                raise UserError(f"{label}: {key}: {json.dumps(v)} is not {what}")
        converted = [convert(v, tp, f"{label}: {key}") for v in cands]
        texts = [json.dumps(v) for v in converted]
        if len(set(texts)) != len(texts):
            raise UserError(f"{label}: {key} lists a value twice")
        values[key] = converted


def _key_type(key: Any, sections: dict, label: str) -> Any:
    """The declared type of `section.name` in `sections`; UserError for any other key."""
    sec, dot, name = str(key).partition(".")
    if not isinstance(key, str) or not dot or sec not in sections:
        raise UserError(
            f"{label}: '{key}' must be written section.name with section one of "
            f"{', '.join(sections)}"
        )
    if key in NEVER_TUNED:
        raise UserError(f"{label}: {key} is not tuned (seeds are --select-seeds and --seeds)")
    if name not in sections[sec]:
        raise UserError(
            f"{label}: '{key}' is not a hyperparameter here; {sec} has: "
            f"{', '.join(sections[sec])}"
        )
    return sections[sec][name]


@dataclass
class Space:
    """One (model, method)'s search space: candidates per key, in order, and sources."""

    values: dict[str, list]
    sources: list[str]

    @property
    def size(self) -> int:
        n = 1
        for v in self.values.values():
            n *= len(v)
        return n

    def point(self, index: int) -> dict[str, Any]:
        """The grid's point `index` (the last key varies fastest)."""
        out: dict[str, Any] = {}
        for key in reversed(list(self.values)):
            index, r = divmod(index, len(self.values[key]))
            out[key] = self.values[key][r]
        return {k: out[k] for k in self.values}


def run_space(spaces: Mapping, model: str, method: str, fixed: Sequence[str] = ()) -> Space:
    """The space of (model, method): common, then the model's entry, then the method's
    (later lists replace earlier ones), less the method's not_used keys and the keys
    `fixed` by --set (written name or section.name)."""
    values: dict[str, list] = {}
    srcs: list[str] = []
    drop: set[str] = set()
    for label, entry in (("common", spaces.get("common")),
                         (f"model {model}", spaces.get("models", {}).get(model)),
                         (f"method {method}", spaces.get("methods", {}).get(method))):  # fmt: skip
        if entry is None:
            srcs.append(f"{label}: none (no entry: nothing of its own is tuned)")
            continue
        values |= entry.get("values", {})
        drop |= set(entry.get("not_used", []))
        srcs.append(f"{label}: {entry['source']}")

    def is_fixed(key: str) -> bool:
        return any(f in (key, key.partition(".")[2]) for f in fixed)

    return Space({k: v for k, v in values.items() if k not in drop and not is_fixed(k)}, srcs)


def draw(space: Space, budget: int, search: str | None, seed: int) -> tuple[str, list[dict]]:
    """The trials' configurations and the search used: "grid" (every point, in order) when
    the space fits in the budget or `search` asks for it; otherwise "random": `budget`
    distinct points, each a point index drawn uniformly with `random.Random(seed)`, a
    repeat drawn again (so a budget's draw is the start of any larger budget's)."""
    if budget < 1:
        raise UserError(f"--budget must be >= 1, got {budget}")
    size = space.size
    search = search or ("grid" if size <= budget else "random")
    if search == "grid":
        if size > budget:
            raise UserError(
                f"--search grid: the space has {size} points, more than --budget {budget}; "
                "raise --budget, narrow the space (--space FILE) or use --search random"
            )
        return search, [space.point(i) for i in range(size)]
    if search != "random":
        raise UserError(f"--search: expected grid or random, got '{search}'")
    rng = random.Random(seed)
    seen: set[int] = set()
    order: list[int] = []
    while len(order) < min(budget, size):
        i = rng.randrange(size)
        if i not in seen:
            seen.add(i)
            order.append(i)
    return search, [space.point(i) for i in order]


# ----------------------------------------------------------------------------- the plan


@dataclass
class Study:
    """The tuning of one (dataset, model, method)."""

    src: Source
    model: str
    method: str
    space: Space
    search: str
    budget: int
    seed: int
    select_seeds: list[int]
    trials: list[list[Run]]  # per trial, one run per selection seed
    configs: list[dict] = field(default_factory=list)  # per trial, the tuned keys' values
    val_auc: list[float | None] = field(default_factory=list)
    diverged: list[str | None] = field(default_factory=list)
    selected: int | None = None

    def describe(self) -> str:
        return f"{self.src.name} {self.model}+{self.method}"

    def record(self) -> dict:
        """The "tuning" record every tuned result of this study carries."""
        return {
            "budget": self.budget,
            "search": self.search,
            "seed": self.seed,
            "select_seeds": self.select_seeds,
            "space": self.space.values,
            "sources": self.space.sources,
            "trials": [{"config": c, "val_auc": v} for c, v in zip(self.configs, self.val_auc)],
            "selected": self.selected,
        }


def plan(
    datasets: Sequence[str], models: Sequence[str], methods: Sequence[str], *, out: Path,
    budget: int = DEFAULT_BUDGET, search: str | None = None, space_file: Path | None = None,
    seed: int = 0, select_seeds: Sequence[int] = (0,), sets: Mapping[str, Any] | None = None,
    profile: str = "paper", hub: bool = False,
) -> list[Study]:  # fmt: skip
    """Every study and its trial runs, resolved and checked before anything runs."""
    from mdrbench.trial import trial_path

    spaces = load_spaces(space_file)
    sets = dict(sets or {})
    for name in sets:
        if name.rpartition(".")[2] == "seed":
            raise UserError("--set seed=...: seeds are --select-seeds (trials) and --seeds")
    if search not in (None, "grid", "random"):
        raise UserError(f"--search: expected grid or random, got '{search}'")
    models, methods = names(models, methods)
    studies: list[Study] = []
    seen: dict[Path, Run] = {}
    flat: list[Run] = []
    for src in sources(datasets, hub):
        for model in models:
            for method in methods:
                space = run_space(spaces, model, method, list(sets))
                used, points = draw(space, budget, search, seed)
                study = Study(src, model, method, space, used, budget, seed, list(select_seeds), [])
                for i, point in enumerate(points):
                    runs = []
                    for s in select_seeds:
                        path = trial_path(out, src.name, model, method, i, s)
                        run = make_run(src, model, method, s, {**sets, **point}, path, profile,
                                       kind="trial")  # fmt: skip
                        add_run(flat, seen, run)
                        runs.append(run)
                    study.trials.append(runs)
                    resolved = config_values(runs[0].config)
                    study.configs.append({k: resolved[k] for k in point})
                studies.append(study)
    return studies


def trial_runs(studies: Sequence[Study]) -> list[Run]:
    return [r for st in studies for runs in st.trials for r in runs]


def select(study: Study) -> None:
    """Read the study's finished trials: each trial's val_auc is the mean of its selection
    seeds' validation AUC (null when any seed diverged); the selected trial has the
    highest (the first of equals). Only validation numbers are read."""
    from mdrbench.trial import read_trial

    study.val_auc, study.diverged = [], []
    for runs in study.trials:
        docs = [read_trial(r.path) for r in runs]
        aucs = [d.get("val_auc") for d in docs]
        why = next((d["diverged"] for d in docs if d.get("diverged")), None)
        ok = all(isinstance(a, (int, float)) for a in aucs)
        study.val_auc.append(sum(aucs) / len(aucs) if ok else None)
        study.diverged.append(why if why else None if ok else "no validation AUC")
    study.selected = best_trial([{"val_auc": v} for v in study.val_auc])
    if study.selected is None:
        raise UserError(
            f"{study.describe()}: no trial trained (every one diverged; see "
            f"{study.trials[0][0].log}): lower the learning rates in the space (--space FILE)"
        )


def final_runs(studies: Sequence[Study], seeds: Sequence[int], out: Path,
               sets: Mapping[str, Any] | None = None, profile: str = "paper") -> list[Run]:  # fmt: skip
    """The selected configuration of each study on `seeds`: ordinary result runs into
    `out`, each record with "track": "tuned" and the study's "tuning" record."""
    from mdrbench.results import result_path

    runs: list[Run] = []
    seen: dict[Path, Run] = {}
    for st in studies:
        point = st.configs[st.selected]
        extra = {"track": "tuned", "tuning": st.record()}
        for s in seeds:
            path = result_path(out, st.src.name, st.model, st.method, s)
            add_run(runs, seen, make_run(st.src, st.model, st.method, s, {**(sets or {}), **point},
                                         path, profile, extra=extra))  # fmt: skip
    return runs


# ----------------------------------------------------------------------------- reports


def _cell(v: Any) -> str:
    return json.dumps(v, separators=(",", ":")) if not isinstance(v, str) else v


def trials_table(study: Study, states: Sequence[str] | None = None) -> str:
    """The study's trials as a Markdown table: each tuned key's value and the validation
    AUC (or its state / "diverged"), the selected trial marked. No test number exists."""
    keys = list(study.space.values)
    head = ["trial", *keys, "val AUC"]
    rows = []
    for i, cfg in enumerate(study.configs):
        if states is not None:
            val = states[i]
        elif study.val_auc and study.val_auc[i] is not None:
            val = f"{study.val_auc[i]:.4f}" + (" (selected)" if i == study.selected else "")
        else:
            val = "diverged" if study.diverged and study.diverged[i] else "-"
        rows.append([str(i), *(_cell(cfg[k]) for k in keys), val])
    widths = [max(len(r[j]) for r in [head, *rows]) for j in range(len(head))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, rows)])  # fmt: skip


def describe_space(study: Study) -> str:
    sp = study.space
    keys = ", ".join(f"{k} {_cell(v)}" for k, v in sp.values.items()) or "(nothing to tune)"
    return (f"{study.describe()}: {sp.size} point(s), {len(study.configs)} trial(s) "
            f"({study.search}, budget {study.budget}, seed {study.seed}, selection seeds "
            f"{','.join(map(str, study.select_seeds))}); space: {keys}")  # fmt: skip
