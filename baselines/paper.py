"""The MAMDR paper's published numbers (Tables V, VI and X) as a reference entry.

They are labelled "reported in the paper" wherever they appear and are never ranked
together with reproduced runs: the paper gives one number per cell (no seeds, no std), its
RANK was computed among its own methods, and its dataset builds carry no checksum.
The data lives in `paper_results.json` beside this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

LABEL = "reported in the paper"


@dataclass(frozen=True)
class PaperEntry:
    table: str  # "V", "VI" or "X"
    label: str  # the row's name as printed, e.g. "MLP+MAMDR" or "w/o DN"
    model: str  # mdrbench model name, e.g. "mlp"
    method: str  # mdrbench framework name, e.g. "mamdr"
    dataset: str
    auc: float
    rank: float | None  # the paper's RANK (Tables V and VI); None for Table X


@lru_cache(maxsize=1)
def load() -> dict:
    """The whole `paper_results.json` (source, notes, display names, tables)."""
    text = resources.files("mdrbench.baselines").joinpath("paper_results.json").read_text("utf-8")
    return json.loads(text)


def entries(dataset: str | None = None, tables=("V", "VI", "X")) -> list[PaperEntry]:
    """Every reported cell of `tables`, optionally for one dataset, in the paper's order."""
    out = []
    for t in tables:
        table = load()["tables"][t]
        for row in table["rows"]:
            if "results" in row:
                cells = row["results"].items()
            else:
                cells = [(table["dataset"], {"auc": row["auc"], "rank": None})]
            for ds, cell in cells:
                if dataset is None or ds == dataset:
                    out.append(
                        PaperEntry(t, row["label"], row["model"], row["method"], ds,
                                   cell["auc"], cell["rank"])
                    )  # fmt: skip
    return out


def leaderboard_entries(dataset: str) -> list[PaperEntry]:
    """One reference row per (model, method) for a dataset's leaderboard table: Table V,
    then Table VI's ablations (its DN+DR and w/o DN+DR rows repeat Table V's)."""
    seen, out = set(), []
    for e in entries(dataset, tables=("V", "VI")):
        if (e.model, e.method) not in seen:
            seen.add((e.model, e.method))
            out.append(e)
    return out


def method_model_matrix(dataset: str = "taobao-10") -> dict[tuple[str, str], float]:
    """Table X: {(model, method): average AUC}; empty for datasets other than Taobao-10."""
    return {(e.model, e.method): e.auc for e in entries(dataset, tables=("X",))}


def paper_models() -> tuple[str, ...]:
    """The models the paper ran (Table V), the only ones its profile covers: another
    registered model gets the profile's method-level entries (MAMDR's k, ...), but its
    results are not on the paper track (`track.profile_track`)."""
    return tuple(load()["model_names"])


def display_name(kind: str, name: str) -> str:
    """The paper's spelling of a model or method name ('nfm' -> 'NeurFM'), else `name`."""
    return load()[f"{kind}_names"].get(name, name)


# ----------------------------------------------------------------------------- the paper profile

PROFILES = ("paper", "none")


@lru_cache(maxsize=1)
def load_configs() -> dict:
    """The whole `paper_configs.json`: the authors' published configuration, per
    (dataset, model, method), read from their repository's config/ files."""
    text = resources.files("mdrbench.baselines").joinpath("paper_configs.json").read_text("utf-8")
    return json.loads(text)


def profile_entries(dataset: str | None, model: str | None, method: str | None) -> list[dict]:
    """The entries of the paper profile that apply to a run, in file order: those listing
    `dataset` whose model (one name or a list of names) and method are the run's or
    null."""
    out = []
    for e in load_configs()["entries"]:
        if dataset not in e["datasets"]:
            continue
        models = [e["model"]] if isinstance(e["model"], str) else e["model"]
        if models is not None and model not in models:
            continue
        if e["method"] is not None and e["method"] != method:
            continue
        out.append(e)
    return out


def profile_settings(dataset: str | None, model: str | None, method: str | None) -> dict:
    """{"section.name": value} of the paper profile for a run (later entries win)."""
    out: dict = {}
    for e in profile_entries(dataset, model, method):
        out.update(e["set"])
    return out
