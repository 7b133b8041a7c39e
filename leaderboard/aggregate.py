"""From validated result files to leaderboard entries: mean +- std over seeds and RANK.

One entry = one dataset build, model, method, track and config (apart from the seed). Its
numbers are the test metrics of its runs, as the one evaluator wrote them: mean and sample
standard deviation (ddof = 1) over seeds. RANK (the paper's metric): on each domain, rank the
ranked entries of the same build and the same track (paper, tuned or custom:
mdrbench/track.py; never across tracks) by their mean AUC (1 = best, ties share the mean of
their ranks), then average over the domains. Both come from `mdrbench.results` (`mean_std`,
`rank_entries`), the functions behind `mdrbench table`, so the site and the tables agree.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mdrbench.results import mean_std, rank_entries
from mdrbench.validate import LoadedResult, entry_config


@dataclass
class Stat:
    mean: float | None
    std: float | None  # None with fewer than two values
    n: int

    @classmethod
    def of(cls, values) -> Stat:
        v = [x for x in values if x is not None]
        if not v:
            return cls(None, None, 0)
        mean, std = mean_std(v)
        return cls(mean, std if len(v) > 1 else None, len(v))


@dataclass
class Entry:
    dataset: str
    manifest_sha256: str
    model: str
    method: str
    config: dict  # the resolved config without run-only keys (seed, device, threads)
    runs: list[LoadedResult]
    track: str = "custom"  # paper, tuned or custom (mdrbench/track.py; validate.entry_key)
    ranked: bool = True
    rank: float | None = None
    variant: str = ""  # set when several entries share model, method and track
    auc: Stat = field(init=False)
    val_auc: Stat = field(init=False)
    domains: dict[str, Stat] = field(init=False)

    def __post_init__(self):
        test = [r.data["metrics"]["test"] for r in self.runs]
        self.auc = Stat.of(m["auc_mean"] for m in test)
        self.val_auc = Stat.of(
            (r.data["metrics"]["val"] or {}).get("auc_mean") for r in self.runs
        )  # a submission's val may be null (`mdrbench score` without validation predictions)
        names = list(test[0]["domains"])
        self.domains = {n: Stat.of(m["domains"].get(n, {}).get("auc") for m in test) for n in names}

    @property
    def seeds(self) -> list[int]:
        return sorted(r.data["seed"] for r in self.runs)

    @property
    def id(self) -> str:
        """A file-name-safe id, stable for the same entry."""
        parts = [self.dataset, self.manifest_sha256, self.model, self.method, self.config,
                 self.track]  # fmt: skip
        key = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def tuning(self) -> dict | None:
        """A tuned entry's tuning record (its budget, space, trials and selected trial)."""
        return self.runs[0].data.get("tuning") if self.track == "tuned" else None

    @property
    def n_parameters(self) -> int:
        """Mean over the runs (the same for every seed of a model and config)."""
        return round(float(np.mean([r.data["n_parameters"] for r in self.runs])))

    @property
    def train_seconds(self) -> Stat:
        return Stat.of(r.data["train_seconds"] for r in self.runs)

    @property
    def paths(self) -> list[Path]:
        return [r.path for r in sorted(self.runs, key=lambda r: r.data["seed"])]


def aggregate(results: list[LoadedResult], *, min_seeds: int = 3) -> list[Entry]:
    """Group runs into entries and rank them; entries with fewer than `min_seeds` seeds are
    kept but unranked (the caller decides whether to show them)."""
    groups: dict[tuple, list[LoadedResult]] = defaultdict(list)
    for r in results:
        groups[r.entry_key].append(r)
    entries = []
    for (name, sha, model, method, _, track), runs in groups.items():
        cfg = entry_config(runs[0].data["config"])
        e = Entry(name, sha, model, method, cfg, runs, track=track)
        e.ranked = len({r.data["seed"] for r in runs}) >= min_seeds
        entries.append(e)
    # Several configs of one model + method in one track: tell them apart by a short hash.
    by_mm = defaultdict(list)
    for e in entries:
        by_mm[(e.manifest_sha256, e.model, e.method, e.track)].append(e)
    for group in by_mm.values():
        if len(group) > 1:
            for e in group:
                e.variant = e.id[:6]
    by_track = defaultdict(list)
    for e in entries:
        by_track[(e.manifest_sha256, e.track)].append(e)
    for group in by_track.values():
        assign_ranks([e for e in group if e.ranked])
    return entries


def assign_ranks(entries: list[Entry]) -> None:
    """RANK of each entry among `entries` (one build, one track), from their per-domain
    mean AUCs."""
    ranks = rank_entries(
        {i: {d: s.mean for d, s in e.domains.items()} for i, e in enumerate(entries)}
    )
    for i, e in enumerate(entries):
        e.rank = None if math.isnan(ranks[i]) else ranks[i]
