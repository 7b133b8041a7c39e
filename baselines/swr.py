"""Scenario-Wise Rec's defaults (github Xiaopengli1/Scenario-Wise-Rec) for the models it
shares with mdrbench since issue 20, as data with a source line per value:
`swr_profile.json` beside this module.

- `default(model, name)`: a dataclass field whose default is the profile's value; the model
  Configs of mdrbench/models/scenario.py declare their Scenario-Wise Rec defaults with it,
  so the code and the recorded source cannot drift apart.
- `reference(model)`: the settings under which mdrbench's module computes Scenario-Wise
  Rec's function (its way where it differs from the paper), `{name: value}`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from functools import lru_cache
from importlib import resources
from typing import Any

LABEL = "Scenario-Wise Rec's defaults"


@lru_cache(maxsize=1)
def load() -> dict:
    """The whole `swr_profile.json`."""
    text = resources.files("mdrbench.baselines").joinpath("swr_profile.json").read_text("utf-8")
    return json.loads(text)


def models() -> list[str]:
    """The models the profile covers, in Scenario-Wise Rec's order."""
    return list(load()["models"])


def _entries(model: str, part: str) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in load()["models"][model][part]}


def defaults(model: str) -> dict[str, Any]:
    """{hyperparameter: value} that `model`'s Config takes from Scenario-Wise Rec."""
    return _entries(model, "defaults")


def reference(model: str) -> dict[str, Any]:
    """{hyperparameter: value} that make `model` compute Scenario-Wise Rec's function."""
    return _entries(model, "reference")


def default(model: str, name: str) -> Any:
    """A dataclass field defaulting to the profile's value of `name` for `model` (a fresh
    copy per instance for lists)."""
    value = defaults(model)[name]
    if isinstance(value, list):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value))
    return dataclasses.field(default=value)
