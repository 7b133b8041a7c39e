"""`mdrbench validate`: which results files can be trusted (and ranked on the leaderboard).

A result (issue 3's JSON, `schema_version` 1) passes when:

1. it has the schema's fields with the right types;
2. its dataset is a *known build*: a `manifest.json` whose sha256 is the result's
   `dataset.manifest_sha256`, found among the builds this mdrbench was pointed at
   (`--dataset PATH`, the default data directory) or in the shipped table of official
   builds; that build has the result's dataset name, and its spec version has the major
   version of this mdrbench's spec for that name (a 1.x build, split the old way, is never
   ranked with 2.x ones; the message says why). A result computed on any other build is
   rejected;
3. its per-domain metrics name exactly the build's domains, with the build's split sizes;
4. each average equals the mean (and the sample-weighted mean) of its per-domain AUCs;
5. when a predictions Parquet sits beside it (`<stem>.predictions.parquet`: `domain_id`,
   `label`, `score` for every row of the test split, in the split's order), every test
   metric recomputed from it by the one evaluator (`mdrbench.evaluate`) matches;
6. its entry (same dataset build, model, method, track and config apart from the seed)
   has at least `min_seeds` distinct seeds, the minimum for a ranked entry;
7. its "track" and, for a tuned result, its "tuning" record are whole and consistent
   (`track.check_track`).

Tuning trials' records (`mdrbench tune`'s OUT/trials/, trial.py) are not results: they are
skipped.

Each violation is reported on its own, with the file it concerns.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mdrbench.config import MAX_SEED
from mdrbench.errors import UserError, name_problem
from mdrbench.evaluate import evaluate, is_close
from mdrbench.track import check_track, is_trial, result_track

SCHEMA_VERSION = 1
MIN_SEEDS = 3
# A reported average versus the mean of the reported per-domain AUCs (same floats, so only
# summation order can differ).
AVERAGE_TOL = 1e-9
# A reported metric versus the one recomputed from the predictions Parquet (scores may have
# been rounded to float32 on the way).
PREDICTION_TOL = 1e-6
# Config keys (at any depth: the trainer nests them under "train") that do not make two runs
# different entries.
RUN_ONLY_KEYS = frozenset({"seed", "device", "threads"})
PREDICTIONS_SUFFIX = ".predictions.parquet"

# sha256 of manifest.json -> {"name", "spec_version", "domains": [...], "n_val": {...},
# "n_test": {...}} of the official builds. None yet: the real raw data is not here, so no
# official build has been made. Fill this in when the reference builds are published.
OFFICIAL_BUILDS: dict[str, dict] = {}

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Build:
    """A built dataset that results may refer to."""

    name: str
    manifest_sha256: str
    spec_version: str
    domains: tuple[str, ...]
    n_split: dict  # {"val": {domain: n}, "test": {domain: n}}
    path: Path | None  # the local folder, None for an official build not present here
    source: str  # where it was found, for messages

    @classmethod
    def from_manifest_bytes(cls, data: bytes, path: Path | None, source: str) -> Build:
        m = json.loads(data)
        names = tuple(d["name"] for d in m["domains"])
        return cls(
            name=m["name"],
            manifest_sha256=hashlib.sha256(data).hexdigest(),
            spec_version=str(m["spec_version"]),
            domains=names,
            n_split={
                s: {d["name"]: int(d[f"n_{s}"]) for d in m["domains"]} for s in ("val", "test")
            },
            path=path,
            source=source,
        )


class KnownBuilds:
    """The builds this mdrbench knows, by manifest sha256."""

    def __init__(self, builds: Iterable[Build] = (), searched: Sequence[str] = ()):
        self.by_sha: dict[str, Build] = {}
        for b in builds:
            # A local copy (with files to check predictions against) wins over a table row.
            if b.manifest_sha256 not in self.by_sha or b.path is not None:
                self.by_sha[b.manifest_sha256] = b
        self.searched = list(searched)

    def get(self, sha: str) -> Build | None:
        return self.by_sha.get(sha)

    def __len__(self) -> int:
        return len(self.by_sha)

    @classmethod
    def discover(
        cls,
        paths: Iterable[os.PathLike | str] = (),
        *,
        data_dir: os.PathLike | str | None = None,
        use_default_data_dir: bool = True,
        official: bool = True,
    ) -> KnownBuilds:
        """Builds from `paths` (each a built dataset's folder, or a folder of them), the
        data directory (default: `mdrbench.paths.default_data_dir()`), and the official table."""
        from mdrbench.paths import default_data_dir

        builds: list[Build] = []
        searched: list[str] = []
        roots = [(Path(p).expanduser(), True) for p in paths]
        if data_dir is not None:
            roots.append((Path(data_dir).expanduser(), True))
        elif use_default_data_dir:
            roots.append((default_data_dir(), False))
        for root, explicit in roots:
            searched.append(str(root))
            found = [f / "manifest.json" for f in dataset_folders(root)]
            if explicit and not found:
                raise UserError(
                    f"no built dataset at '{root}' (no manifest.json in it or in its "
                    "subfolders). Pass a dataset folder made by `mdrbench build`, or a folder "
                    "holding such folders."
                )
            for mpath in found:
                try:
                    builds.append(
                        Build.from_manifest_bytes(
                            mpath.read_bytes(), mpath.parent, str(mpath.parent)
                        )
                    )
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise UserError(f"unreadable manifest '{mpath}': {exc}") from exc
        if official:
            searched.append("the official builds table (empty in this version)")
            for sha, row in OFFICIAL_BUILDS.items():
                builds.append(
                    Build(row["name"], sha, row["spec_version"], tuple(row["domains"]),
                          {"val": row["n_val"], "test": row["n_test"]}, None, "official table")
                )  # fmt: skip
        return cls(builds, searched)


def dataset_folders(root: Path) -> list[Path]:
    """`root` when it is a built dataset (holds manifest.json), else the ones directly in it."""
    if (root / "manifest.json").is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())


@dataclass(frozen=True)
class Violation:
    where: str  # a file, or an entry for seed-count violations
    message: str
    kind: str = "result"  # "result", "duplicate_seed" or "few_seeds"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class LoadedResult:
    path: Path
    data: dict
    build: Build | None = None

    @property
    def track(self) -> str:
        return result_track(self.data)

    @property
    def entry_key(self) -> tuple:
        """Runs that differ only by seed form one leaderboard entry (`entry_key`)."""
        return entry_key(self.data)


def entry_key(record: Mapping) -> tuple:
    """The one grouping rule of `mdrbench table`, `validate` and the leaderboard: results
    are averaged over seeds together only when they share the dataset build, model,
    method, resolved config (the run-only keys seed, device and threads aside) and track
    (`track.result_track`: a tuned run is never one entry with a paper-profile run of the
    same config). (dataset name, manifest sha256, model, method, config key, track)."""
    d = record
    return (d["dataset"]["name"], d["dataset"].get("manifest_sha256", ""), d["model"],
            d["method"], config_key(d.get("config") or {}), result_track(d))  # fmt: skip


def entry_variants(entries: Mapping[tuple, Mapping]) -> dict[tuple, str]:
    """For entries (`entry_key` -> one result of it) that share dataset build, model, method
    and track, a short label of what sets each apart: where a result came from
    (`config.source`: `mdrbench score`; `mdrbench eval` when absent) and the config values
    that differ ("lr=0.01, epochs=2"). "" for an entry alone of its kind. The track is not
    in the label: tables and the leaderboard show it on every entry, and rank within it."""
    groups: dict[tuple, list[tuple]] = defaultdict(list)
    for key in entries:
        groups[(*key[:4], key[5])].append(key)
    out = {key: "" for key in entries}
    for keys in groups.values():
        if len(keys) < 2:
            continue
        flat = {k: flat_config(entry_config(dict(entries[k].get("config") or {}))) for k in keys}
        source = {k: json.loads(flat[k].pop("source", '"mdrbench eval"')) for k in keys}
        for k in keys:
            parts = []
            if len(set(source.values())) > 1:
                parts.append(source[k])
            kin = [o for o in keys if source[o] == source[k]]
            names = sorted({n for o in kin for n in flat[o]})
            differ = [n for n in names if len({flat[o].get(n) for o in kin}) > 1]
            # what the profile applied or saw overridden follows from the values: not shown
            mine = [f"{_short(n)}={_shown(flat[k][n])}" for n in differ
                    if n in flat[k] and not n.startswith(("profile.applied.", "profile.overridden"))]  # fmt: skip
            parts += mine[:3] + ([f"+{len(mine) - 3} more"] if len(mine) > 3 else [])
            if differ and not mine:
                parts.append("config " + hashlib.sha256(k[4].encode()).hexdigest()[:6])
            out[k] = ", ".join(parts)
    return out


def flat_config(d: Mapping, prefix: str = "") -> dict[str, str]:
    """A nested config as {"train.lr": "0.001", "profile.name": '"paper"', ...}: each leaf
    at its dotted path, its value as compact JSON."""
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out |= flat_config(v, f"{prefix}{k}.")
        else:
            out[prefix + k] = json.dumps(v, separators=(",", ":"))
    return out


def _shown(value: str) -> str:
    """A JSON value for a label: a string bare, anything else as JSON."""
    return json.loads(value) if value.startswith('"') else value


def _short(name: str) -> str:
    """`train.lr` -> `lr` (a hyperparameter's --set name); other paths stay whole."""
    head, _, tail = name.partition(".")
    return tail if head in ("train", "model", "framework", "hyperparameters") and tail else name


def entry_config(config):
    """The config without run-only keys (seed, device, threads), at every depth."""
    if isinstance(config, dict):
        return {k: entry_config(v) for k, v in config.items() if k not in RUN_ONLY_KEYS}
    return config


def config_key(config: dict) -> str:
    return json.dumps(entry_config(config), sort_keys=True)


def _config_seeds(config: dict) -> list:
    """Where a resolved config records the seed: top level, or the trainer's `train` section."""
    out = [config["seed"]] if "seed" in config else []
    train = config.get("train")
    if isinstance(train, dict) and "seed" in train:
        out.append(train["seed"])
    return out


@dataclass
class Report:
    results: list[LoadedResult] = field(default_factory=list)  # every file with a valid schema
    violations: list[Violation] = field(default_factory=list)
    n_files: int = 0
    n_predictions_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def bad_paths(self) -> set[str]:
        return {v.where for v in self.violations}


def find_results(paths: Iterable[os.PathLike | str]) -> list[Path]:
    """Files as given; folders searched recursively for `*.json`."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.json") if q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"no results file or folder at '{p}'")
    return out


def predictions_path(result_path: Path) -> Path:
    return result_path.with_name(result_path.stem + PREDICTIONS_SUFFIX)


# ---------------------------------------------------------------- schema


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_schema(d) -> list[str]:
    """Messages for every schema problem of a parsed results JSON (empty when valid)."""
    if not isinstance(d, dict):
        return [f"not a results object (a JSON {type(d).__name__})"]
    if "schema_version" not in d:
        return ["no 'schema_version': not an mdrbench results file"]
    if d["schema_version"] != SCHEMA_VERSION:
        return [
            f"schema_version is {d['schema_version']!r}; this mdrbench reads version "
            f"{SCHEMA_VERSION}. Upgrade mdrbench, or rerun with this version."
        ]
    errs: list[str] = []

    def need(key, ok, what, obj=d, prefix=""):
        if key not in obj:
            errs.append(f"missing field '{prefix}{key}' ({what})")
            return False
        if not ok(obj[key]):
            errs.append(f"field '{prefix}{key}' must be {what}, got {obj[key]!r:.80}")
            return False
        return True

    def nonempty_str(x):
        return isinstance(x, str) and x != ""

    def name(x):
        return name_problem(x) is None

    need("mdrbench_version", nonempty_str, "a version string")
    if need("dataset", lambda x: isinstance(x, dict), "an object {name, manifest_sha256}"):
        need("name", name, "a dataset name without control characters", d["dataset"],
             "dataset.")  # fmt: skip
        need("manifest_sha256", lambda x: isinstance(x, str) and bool(_SHA256.match(x)),
             "64 lowercase hex digits", d["dataset"], "dataset.")  # fmt: skip
    need("model", name, "a model name without control characters")
    need("method", name, "a method (framework) name without control characters")
    need("seed", lambda x: _is_int(x) and 0 <= x <= MAX_SEED, f"an integer from 0 to {MAX_SEED}")
    need("config", lambda x: isinstance(x, dict), "an object (the resolved config)")
    need("best_epoch", lambda x: x is None or (_is_int(x) and x >= 0), "an integer >= 0")
    need("train_seconds", lambda x: _is_num(x) and x >= 0, "a number >= 0")
    need("samples_per_second", lambda x: x is None or (_is_num(x) and x >= 0), "a number >= 0")
    need("n_parameters", lambda x: _is_int(x) and x >= 0, "an integer >= 0")
    if "history" in d:  # optional: per-epoch training history (mdrbench eval writes it)
        need("history", lambda x: isinstance(x, list) and all(
            isinstance(e, dict) and _is_int(e.get("epoch")) and e["epoch"] >= 1 for e in x
        ), "a list of objects with an integer 'epoch' >= 1")  # fmt: skip
    if need("metrics", lambda x: isinstance(x, dict), "an object {val, test}"):
        for split in ("val", "test"):
            p = f"metrics.{split}."
            # val may be null: a submission (`mdrbench score`) without validation predictions
            nullable = split == "val"
            if not need(
                split, lambda x, ok_none=nullable: isinstance(x, dict) or (ok_none and x is None),
                "an object" + (" or null" if nullable else ""), d["metrics"], "metrics.",
            ):  # fmt: skip
                continue
            m = d["metrics"][split]
            if m is None:
                continue
            for k in ("auc_mean", "auc_weighted"):
                need(
                    k,
                    lambda x: x is None or (_is_num(x) and 0 <= x <= 1),
                    "a number in [0, 1]",
                    m,
                    p,
                )
            need("logloss", lambda x: x is None or (_is_num(x) and x >= 0), "a number >= 0", m, p)
            if need("domains", lambda x: isinstance(x, dict) and len(x) > 0,
                    "a non-empty object {domain name: {auc, logloss, n}}", m, p):  # fmt: skip
                for name, dm in m["domains"].items():
                    q = f"{p}domains[{name!r}]."
                    if not isinstance(dm, dict):
                        errs.append(f"field '{q[:-1]}' must be an object {{auc, logloss, n}}")
                        continue
                    need(
                        "auc",
                        lambda x: x is None or (_is_num(x) and 0 <= x <= 1),
                        "a number in [0, 1] or null",
                        dm,
                        q,
                    )
                    need(
                        "logloss",
                        lambda x: x is None or (_is_num(x) and x >= 0),
                        "a number >= 0 or null",
                        dm,
                        q,
                    )
                    need("n", lambda x: _is_int(x) and x >= 0, "an integer >= 0", dm, q)
    if not errs:
        for s in _config_seeds(d["config"]):
            if s != d["seed"]:
                errs.append(f"seed is {d['seed']} but the config's seed is {s!r}")
        errs += check_track(d)
    return errs


# ---------------------------------------------------------------- checks on one result


def check_build(d: dict, builds: KnownBuilds) -> tuple[Build | None, list[str]]:
    """The result's build, and what is wrong with it (unknown, other name, old spec)."""
    from mdrbench.builders.specs import DATASETS, SPEC_CHANGES, spec_major

    name, sha = d["dataset"]["name"], d["dataset"]["manifest_sha256"]
    errs: list[str] = []
    build = builds.get(sha)
    # A name that is not a benchmark's (the field's datasets, a custom table) is known by its
    # build alone: a result on such a build is checked like any other.
    if name not in DATASETS and (build is None or build.name != name):
        from mdrbench.errors import unknown_name

        errs.append(str(unknown_name("dataset", name, DATASETS.names())))
    if build is None:
        where = "; ".join(builds.searched) or "nowhere"
        errs.append(
            f"dataset '{name}' build {sha[:12]}... is not a build this mdrbench knows (no "
            f"manifest.json with that sha256 in: {where}). A result computed on another build "
            "is rejected: pass the dataset folder it was computed on with --dataset PATH, or "
            "rerun on a known build."
        )
        return None, errs
    if build.name != name:
        errs.append(
            f"dataset.name is '{name}' but the build with that manifest sha256 "
            f"({build.source}) is '{build.name}'"
        )
    if name in DATASETS:
        current = DATASETS.get(name).version
        if spec_major(build.spec_version) != spec_major(current):
            newer = max(spec_major(build.spec_version), spec_major(current), key=_version_key)
            why = SPEC_CHANGES.get(newer, "a new major spec version changes the rows of a build")
            errs.append(
                f"dataset '{name}' build {sha[:12]}... was made with spec version "
                f"{build.spec_version}, but this mdrbench's spec for '{name}' is version "
                f"{current}; results on builds of different major spec versions are never "
                f"ranked together: {why}. Rebuild the dataset with this mdrbench and rerun."
            )
    return build, errs


def _version_key(major: str) -> tuple:
    return (0, int(major), "") if major.isdigit() else (1, 0, major)


def check_metrics(d: dict, build: Build | None) -> list[str]:
    """Averages equal the means of the per-domain AUCs; domains and sizes match the build."""
    errs: list[str] = []
    for split in ("val", "test"):
        m = d["metrics"][split]
        if m is None:  # a submission's val (check_schema allows it)
            continue
        doms = m["domains"]
        if build is not None:
            missing = [n for n in build.domains if n not in doms]
            extra = [n for n in doms if n not in build.domains]
            if missing:
                errs.append(
                    f"metrics.{split} lacks the build's domain(s) {', '.join(map(repr, missing))}"
                )
            if extra:
                errs.append(
                    f"metrics.{split} has domain(s) {', '.join(map(repr, extra))} that the build does not have"
                )
            for n in build.domains:
                if n in doms and doms[n]["n"] != build.n_split[split][n]:
                    errs.append(
                        f"metrics.{split}.domains[{n!r}].n is {doms[n]['n']} but the build's "
                        f"{split} split has {build.n_split[split][n]} rows in that domain"
                    )
        defined = [(v["auc"], v["n"]) for v in doms.values() if v["auc"] is not None]
        aucs = [a for a, _ in defined]
        mean = float(np.mean(aucs)) if aucs else None
        weighted = (
            float(np.average(aucs, weights=[n for _, n in defined]))
            if aucs and sum(n for _, n in defined)
            else None
        )
        for key, want, how in (
            ("auc_mean", mean, "mean"),
            ("auc_weighted", weighted, "sample-weighted mean"),
        ):
            got = m[key]
            if not is_close(got, want, AVERAGE_TOL):
                errs.append(
                    f"metrics.{split}.{key} is {_fmt(got)} but the {how} of the "
                    f"{len(aucs)} defined per-domain AUCs is {_fmt(want)}"
                )
    return errs


def _fmt(x) -> str:
    return "null" if x is None else f"{x:.6f}"


def check_predictions(
    d: dict, build: Build, pred_path: Path, test_splits: dict | None = None
) -> list[str]:
    """Recompute every test metric from the predictions Parquet with the one evaluator.
    `test_splits` caches each build's test (domain_id, label) across the results of a run."""
    import polars as pl

    try:
        df = pl.read_parquet(pred_path)
    except Exception as exc:  # polars raises several error types for bad files
        return [f"predictions file {pred_path.name} is not readable Parquet: {exc}"]
    missing = [c for c in ("domain_id", "label", "score") if c not in df.columns]
    if missing:
        return [f"predictions file {pred_path.name} lacks column(s) {', '.join(missing)} "
                "(needs domain_id, label, score)"]  # fmt: skip
    try:
        dom = df["domain_id"].cast(pl.Int64, strict=True).to_numpy()
        lab = df["label"].cast(pl.Int64, strict=True).to_numpy()
        score = df["score"].cast(pl.Float64, strict=True).to_numpy()
    except Exception as exc:
        return [f"predictions file {pred_path.name}: columns must be numeric ({exc})"]
    errs: list[str] = []
    if not np.isin(lab, (0, 1)).all():
        errs.append(f"predictions file {pred_path.name}: label holds values other than 0 and 1")
    if build.path is not None and (build.path / "test.parquet").is_file():
        cache = {} if test_splits is None else test_splits
        if build.manifest_sha256 not in cache:
            t = pl.read_parquet(build.path / "test.parquet", columns=["domain_id", "label"])
            cache[build.manifest_sha256] = (t["domain_id"].to_numpy(), t["label"].to_numpy())
        t_dom, t_lab = cache[build.manifest_sha256]
        if len(t_dom) != len(dom):
            errs.append(
                f"predictions file {pred_path.name} has {len(dom)} rows but the build's test "
                f"split has {len(t_dom)}: write one prediction per test row, in the split's order"
            )
            return errs
        bad = int(((t_dom != dom) | (t_lab != lab)).sum())
        if bad:
            errs.append(
                f"predictions file {pred_path.name}: domain_id/label differ from the build's "
                f"test split in {bad} row(s): the predictions are not of this test split"
            )
            return errs
    if errs:
        return errs
    try:
        got = evaluate(dom, lab, score, build.domains)
    except ValueError as exc:
        return [f"predictions file {pred_path.name}: {exc}"]
    rep = d["metrics"]["test"]
    for key in ("auc_mean", "auc_weighted", "logloss"):
        if not is_close(rep.get(key), got[key], PREDICTION_TOL):
            errs.append(
                f"metrics.test.{key} is {_fmt(rep.get(key))} but recomputed from "
                f"{pred_path.name} it is {_fmt(got[key])}"
            )
    for name, g in got["domains"].items():
        r = rep["domains"].get(name)
        if r is None:
            continue  # already reported by check_metrics
        if r["n"] != g["n"]:
            errs.append(
                f"metrics.test.domains[{name!r}].n is {r['n']} but {pred_path.name} has {g['n']} rows in it"
            )
        for key in ("auc", "logloss"):
            if not is_close(r[key], g[key], PREDICTION_TOL):
                errs.append(
                    f"metrics.test.domains[{name!r}].{key} is {_fmt(r[key])} but recomputed "
                    f"from {pred_path.name} it is {_fmt(g[key])}"
                )
    return errs


# ---------------------------------------------------------------- the whole set


def entry_label(key: tuple) -> str:
    name, sha, model, method, _, track = key
    return f"entry {name}@{sha[:8]} ({track} track) {model} + {method}"


def validate(
    paths: Iterable[os.PathLike | str],
    builds: KnownBuilds,
    *,
    min_seeds: int = MIN_SEEDS,
    require_predictions: bool = False,
) -> Report:
    """Check every results file under `paths`; see the module docstring for the rules."""
    report = Report()
    test_splits: dict = {}
    files = find_results(paths)
    for path in files:
        where = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            report.violations.append(Violation(where, f"not a readable JSON file: {exc}"))
            report.n_files += 1
            continue
        if is_trial(data):  # a tuning trial's record: not a result
            continue
        report.n_files += 1
        errs = check_schema(data)
        if errs:
            report.violations += [Violation(where, e) for e in errs]
            continue
        build, errs = check_build(data, builds)
        errs += check_metrics(data, build)
        pred = predictions_path(path)
        if pred.is_file():
            if build is not None:
                errs += check_predictions(data, build, pred, test_splits)
                report.n_predictions_checked += 1
        elif require_predictions:
            errs.append(f"no predictions file {pred.name} beside it (--require-predictions)")
        report.violations += [Violation(where, e) for e in errs]
        report.results.append(LoadedResult(path, data, build))

    groups: dict[tuple, list[LoadedResult]] = defaultdict(list)
    for r in report.results:
        groups[r.entry_key].append(r)
    for key, runs in groups.items():
        seeds: dict[int, list[Path]] = defaultdict(list)
        for r in runs:
            seeds[r.data["seed"]].append(r.path)
        for seed, ps in sorted(seeds.items()):
            if len(ps) > 1:
                report.violations.append(
                    Violation(
                        entry_label(key),
                        f"seed {seed} appears in {len(ps)} files: " + ", ".join(map(str, ps)),
                        "duplicate_seed",
                    )  # fmt: skip
                )
        if len(seeds) < min_seeds:
            report.violations.append(
                Violation(
                    entry_label(key),
                    f"has {len(seeds)} seed(s) ({', '.join(map(str, sorted(seeds)))}); a ranked "
                    f"entry needs at least {min_seeds}: run more seeds (e.g. --seeds "
                    f"{','.join(str(i) for i in range(min_seeds))})",
                    "few_seeds",
                )
            )
    return report
