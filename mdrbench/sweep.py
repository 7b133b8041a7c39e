"""`mdrbench sweep`: a grid of `mdrbench eval` runs, resumable, on this machine or Ray.

- `expand(...)`: datasets x models x methods x `--set` grid points x seeds -> `Run`s, each
  with its result path (the rule `mdrbench eval` uses: `results.result_path`) and its
  resolved config (`trainer.resolve_config`), so a bad name or value stops the sweep before
  anything runs.
- `run_status(run)`: "done" (its result and predictions exist and validate, and are this
  run's: same build, model, method, seed and config), "todo" (no result), "redo" (a
  result of this run whose predictions are missing, truncated or inconsistent: it does not
  count and is redone), or "conflict" (a result of another config or build, or a file that
  is not a result, holds the path: refused, as `mdrbench eval` refuses it).
- `execute(run)`: one run, through `runs.py: run_seeds` (the code `mdrbench eval` runs),
  which writes the predictions and then the JSON as one unit: a run killed mid-way leaves
  no JSON, hence nothing that counts. A run of kind "trial" (`mdrbench tune`) is a tuning
  trial instead (`trial.run_trial`: validation only, a trial record, no predictions).
- `sweep(...)`: skips what is done, runs the rest on a backend (`LocalBackend`: one process
  per run, forked from a server that has the trainer imported; `RayBackend`: one Ray task
  per run), retries failures, shows one progress line and returns a `Summary`.

`mdrbench tune` drives this same engine twice: its trials, then the selected
configuration's seeds (mdrbench/tune.py); `make_run` builds one run of either kind.

Ray is imported only by `RayBackend` (the optional extra `mdrbench[ray]`). No torch at
import time: `trainer` is imported where a run is resolved or executed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdrbench import log
from mdrbench.errors import UserError

_log = log.get(__name__)  # its level is the CLI's -q / -v

# ----------------------------------------------------------------------------- the grid


def split_values(text: str) -> list[str]:
    """`0.1,0.5` -> ["0.1", "0.5"]; commas inside brackets do not split:
    `[64,32],[128,64]` -> ["[64,32]", "[128,64]"]."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [v for v in out if v != ""]


def parse_grid_sets(items: Iterable[str]) -> dict[str, list[Any]]:
    """`["beta=0.1,0.5", "hidden=[64,32]"]` -> {"beta": ["0.1", "0.5"], "hidden": ["[64,32]"]}."""
    out: dict[str, list[Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"--set expects NAME=VALUE or NAME=V1,V2,..., got '{item}'")
        values = split_values(value)
        if not values:
            raise UserError(f"--set {name}: no value given")
        out[name] = values
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _names(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


# A grid TOML key -> (whether its value is right, what it must be): the command's options.
GRID_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dataset": (_names, "a name or folder, or a list of them"),
    "model": (_names, "a name or a list of names (\"all\": every model)"),
    "method": (_names, "a name or a list of names (\"all\": every method)"),
    "seeds": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(map(_is_int, v))),
              "a list of integers, or a string such as \"0-2\""),
    "epochs": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "profile": (lambda v: v in ("paper", "none"), "\"paper\" or \"none\""),
    "set": (lambda v: isinstance(v, dict), "a table, e.g. [set] beta = [0.1, 0.5]"),
    "out": (lambda v: isinstance(v, str) and v != "", "a folder (a string)"),
    "jobs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "backend": (lambda v: v in ("local", "ray"), "\"local\" or \"ray\""),
    "address": (lambda v: isinstance(v, str), "a string (a Ray address)"),
    "retries": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "gpus_per_run": (lambda v: (_is_int(v) or isinstance(v, float)) and 0 <= v <= 1024,
                     "a number >= 0"),
}  # fmt: skip


def check_grid(grid: Mapping[str, Any], where: str) -> None:
    """Refuse a grid file's unknown keys and values of the wrong type or range, naming the
    key and what it must be (the `--set` table's values are checked when runs resolve)."""
    unknown = sorted(set(grid) - set(GRID_TYPES))
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {', '.join(unknown)}; keys: {', '.join(sorted(GRID_TYPES))}"
        )
    for key, value in grid.items():
        ok, what = GRID_TYPES[key]
        if not ok(value):
            raise UserError(f"{where}: {key} must be {what}, got {value!r}")
    for name, values in grid.get("set", {}).items():
        if values == []:
            raise UserError(f"{where}: set.{name} is an empty list")


def grid_points(sets: Mapping[str, Sequence[Any]]) -> list[tuple[dict[str, Any], str]]:
    """Every combination of the `--set` values, as (overrides, label); the label names the
    values of the axes with more than one value ("" when there is no such axis). Results
    of a point go to a subfolder of that name, so points never share a result path."""
    for name in sets:
        if name.rpartition(".")[2] == "seed":
            raise UserError("--set seed=...: give the seeds with --seeds (e.g. --seeds 0,1,2)")
    names = list(sets)
    multi = [n for n in names if len(sets[n]) > 1]
    points = []
    for values in itertools.product(*(sets[n] for n in names)):
        overrides = dict(zip(names, values))
        label = ",".join(f"{n}={_label_value(overrides[n])}" for n in multi)
        points.append((overrides, label))
    return points


def distinct_values(
    sets: Mapping[str, Sequence[Any]], models: Sequence[str], methods: Sequence[str]
) -> dict[str, list[Any]]:
    """Each `--set` axis without repeats: two values that every model and method of the
    grid parse to the same config (`lr=0.001,1e-3`) are one grid point (the first kept)."""
    from mdrbench.trainer import resolve_config

    out: dict[str, list[Any]] = {}
    for name, values in sets.items():
        if name.rpartition(".")[2] == "seed":  # refused by grid_points: seeds are --seeds
            out[name] = list(values)
            continue
        seen: dict[tuple, Any] = {}
        for v in values:
            key = tuple(
                json.dumps(resolve_config(m, f, {name: v}, profile="none").to_dict())
                for m in models for f in methods
            )  # fmt: skip
            seen.setdefault(key, v)
        out[name] = list(seen.values())
    return out


def _label_value(v: Any) -> str:
    text = json.dumps(v, separators=(",", ":")) if not isinstance(v, str) else v
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "_"


@dataclass
class Run:
    """One `mdrbench eval` run: dataset x model x method x config x seed."""

    dataset: str  # the built dataset's folder ("" when this machine has no copy: see `hub`)
    dataset_name: str  # from its manifest
    manifest_sha256: str
    model: str
    method: str
    seed: int
    overrides: dict[str, Any]  # --set values for this run (strings or TOML values)
    label: str  # the grid point's label ("" without a --set grid)
    path: Path  # the result JSON
    config: dict = field(default_factory=dict)  # the resolved config (RunConfig.to_dict)
    threads: int = 1
    redo: bool = False  # replace the files there (a result of this run that does not count)
    profile: str = "paper"  # eval's --profile: the authors' configuration, or "none"
    # A benchmark given by NAME to a Ray sweep: a task whose node has no copy of the build
    # (at `dataset`, or in its data directory) fetches it from the pinned Hub home.
    hub: str = ""
    manifest_bytes: bytes = field(default=b"", repr=False)  # the build's manifest.json
    kind: str = "result"  # "result" (an eval run) or "trial" (a tuning trial: trial.py)
    # Fields the result record gets besides the trainer's (a tuned run's "track" and
    # "tuning"): part of the run's identity, as its config is.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions(self) -> Path:
        from mdrbench.validate import predictions_path

        return predictions_path(self.path)

    @property
    def source(self) -> str:
        """Where the dataset comes from, for messages."""
        return self.dataset or f"{self.hub} (from the Hub)"

    @property
    def log(self) -> Path:
        return self.path.with_suffix(".log")

    def describe(self) -> str:
        point = f" [{self.label}]" if self.label else ""
        what = f" {self.path.stem.partition('__')[0]}" if self.kind == "trial" else ""
        return f"{self.dataset_name} {self.model}+{self.method}{point}{what} seed {self.seed}"

    def to_task(self) -> dict:
        """What a worker needs (plain values: it crosses process and machine boundaries)."""
        return {
            "dataset": self.dataset,
            "model": self.model,
            "method": self.method,
            "seed": self.seed,
            "overrides": {**self.overrides, "threads": self.threads},
            "out": str(self.path.parent),
            "path": str(self.path),
            "log": str(self.log),
            "force": self.redo,
            "profile": self.profile,
            "hub": self.hub,
            "manifest_sha256": self.manifest_sha256,
            "kind": self.kind,
            "extra": self.extra,
        }


def _manifest(dataset: str, hub: bool = False) -> tuple[str, dict, str, bytes, str]:
    """(folder or "", manifest, its sha256, its bytes, the benchmark name a task may fetch
    or ""). With `hub` (the Ray backend), a benchmark NAME with no copy here is read from
    its pinned Hub home's manifest (`hub.pinned_manifest`): that build is the one expected."""
    import hashlib

    from mdrbench.builders.specs import DATASETS
    from mdrbench.paths import resolve_dataset

    name = str(dataset)
    benchmark = hub and not Path(name).expanduser().exists() and name in DATASETS
    try:
        folder = str(resolve_dataset(dataset).resolve())
        source = Path(folder) / "manifest.json"
        data = source.read_bytes()
    except UserError:
        if not benchmark:
            raise
        from mdrbench.hub import pinned_manifest

        folder, source = "", f"the Hub's manifest of {name}"
        data = pinned_manifest(name)
    try:
        manifest = json.loads(data)
        manifest["name"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{source} is not a readable manifest") from None
    if benchmark and manifest["name"] != name:
        raise UserError(f"{source} names dataset '{manifest['name']}', not '{name}'")
    sha = hashlib.sha256(data).hexdigest()
    return folder, manifest, sha, data, name if benchmark else ""


def names_or_all(values: Sequence[str], registry, kind: str) -> list[str]:
    """Comma lists joined; "all" = every registered name."""
    out: list[str] = []
    for v in values:
        for name in split_values(v):
            out += registry.names() if name == "all" else [name]
    if not out:
        raise UserError(f"no {kind} given")
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Source:
    """A dataset a sweep runs on (`sources`)."""

    folder: str  # the built dataset's folder ("" when this machine has no copy)
    name: str  # from its manifest
    sha: str  # its manifest's sha256
    manifest: bytes = field(repr=False)
    fetch: str  # a benchmark name the tasks may fetch from the Hub, or ""


def sources(datasets: Sequence[str], hub: bool = False) -> list[Source]:
    """The datasets of `--dataset` values (comma lists allowed), each read once. `hub`: a
    benchmark NAME may be fetched from its pinned Hub home by the tasks (the Ray backend;
    `_manifest`)."""
    out: dict[str, Source] = {}
    for d in datasets:
        for name in split_values(d):
            if str(name) not in out:
                folder, manifest, sha, data, fetch = _manifest(name, hub)
                out[str(name)] = Source(folder, manifest["name"], sha, data, fetch)
    if not out:
        raise UserError("no dataset given (--dataset NAME_OR_PATH)")
    return list(out.values())


def make_run(src: Source, model: str, method: str, seed: int, overrides: Mapping[str, Any],
             path: Path, profile: str = "paper", label: str = "", kind: str = "result",
             extra: Mapping[str, Any] | None = None) -> Run:  # fmt: skip
    """One run, its config resolved as `mdrbench eval` resolves it (a bad name or value is
    a UserError before anything runs)."""
    from mdrbench.trainer import resolve_config

    cfg = resolve_config(model, method, overrides, dataset=src.name, profile=profile)
    cfg.train.seed = seed
    return Run(src.folder, src.name, src.sha, model, method, seed, dict(overrides), label,
               path, cfg.to_dict(), profile=profile, hub=src.fetch, manifest_bytes=src.manifest,
               kind=kind, extra=dict(extra or {}))  # fmt: skip


def add_run(runs: list[Run], seen: dict[Path, Run], run: Run) -> None:
    """Append `run` unless a run of the same dataset build already has its path; two
    datasets of one name whose results would share a path are refused."""
    first = seen.get(run.path)
    if first is None:
        seen[run.path] = run
        runs.append(run)
    elif first.manifest_sha256 != run.manifest_sha256 or first.dataset != run.dataset:
        raise UserError(
            f"datasets {first.source} and {run.source} are both named '{run.dataset_name}': "
            f"their results would share {run.path}. Sweep them into different --out folders."
        )


def names(models: Sequence[str], methods: Sequence[str]) -> tuple[list[str], list[str]]:
    """The model and method names of `--model` / `--method` values (`names_or_all`)."""
    from mdrbench.frameworks import FRAMEWORKS
    from mdrbench.models import MODELS

    return names_or_all(models, MODELS, "model"), names_or_all(methods, FRAMEWORKS, "method")


def expand(
    datasets: Sequence[str],
    models: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    sets: Mapping[str, Sequence[Any]],
    out: Path,
    profile: str = "paper",
    hub: bool = False,
) -> list[Run]:
    """Every run of the grid, in order dataset, model, method, point, seed (the seeds of an
    entry run one after the other, so entries complete early). `hub`: see `sources`."""
    from mdrbench.results import result_path

    models, methods = names(models, methods)
    points = grid_points(distinct_values(sets, models, methods))
    runs: list[Run] = []
    seen: dict[Path, Run] = {}
    for src in sources(datasets, hub):
        for model, method in itertools.product(models, methods):
            for overrides, label in points:
                for seed in seeds:
                    path = result_path(out / label if label else out, src.name, model, method, seed)
                    add_run(runs, seen, make_run(src, model, method, seed, overrides, path,
                                                 profile, label))  # fmt: skip
    return runs


# ----------------------------------------------------------------------------- status


@dataclass
class Status:
    state: str  # "done", "todo", "redo" or "conflict"
    reason: str = ""


def run_status(run: Run, recompute: bool = False) -> Status:
    """Whether `run` is finished (see the module docstring), by the rules of `mdrbench
    eval` (`results.read_result`, `same_run`) and of `mdrbench validate` (`check_metrics`;
    with `recompute`, every test metric recomputed from the predictions; otherwise the
    predictions file is checked for its columns and row count only)."""
    from mdrbench.results import config_diff, identity_diff, read_result
    from mdrbench.trial import read_trial
    from mdrbench.validate import Build, check_metrics, check_predictions

    what = "trial record" if run.kind == "trial" else "result"
    try:
        json.loads(run.path.read_bytes())
    except FileNotFoundError:
        return Status("todo")
    except OSError:
        pass  # not readable here: read_result says so (a conflict, never replaced)
    except ValueError as exc:  # cut off (or garbled): a result that never counted
        return Status("redo", f"the {what} JSON is cut off or not JSON ({exc})")
    try:
        d = read_trial(run.path) if run.kind == "trial" else read_result(run.path)
    except UserError as exc:  # a file there that is not one: never replaced
        text = str(exc).partition(": move it away")[0]
        return Status("conflict", text.replace(f"{run.path} exists but ", "the file there "))
    if d is None:
        return Status("todo")
    if d["dataset"]["manifest_sha256"] != run.manifest_sha256:
        return Status("conflict", f"a {what} computed on another build of {run.dataset_name} "
                      f"(manifest sha256 {d['dataset']['manifest_sha256'][:12]}...)")  # fmt: skip
    theirs = {k: d[k] for k in ("model", "method", "seed")}
    if theirs != {"model": run.model, "method": run.method, "seed": run.seed}:
        return Status("conflict", f"the {what} of another run ({theirs})")
    diff = config_diff(d["config"], run.config)
    if run.kind == "result":
        diff += identity_diff(d, run.config, run.extra)
    if diff:
        return Status("conflict", f"a {what} of another config ({'; '.join(diff[:3])})")
    build = Build.from_manifest_bytes(
        run.manifest_bytes or (Path(run.dataset) / "manifest.json").read_bytes(),
        Path(run.dataset) if run.dataset else None,  # None: no test split here to read
        run.source,
    )
    if run.kind == "trial":  # validation numbers only; no predictions
        errs = check_metrics({"metrics": {"val": d["val"], "test": None}}, build) if d["val"] else []
        return Status("redo", errs[0]) if errs else Status("done")
    errs = check_metrics(d, build)
    if errs:
        return Status("redo", errs[0])
    pred = run.predictions
    if not pred.is_file():
        return Status("redo", f"no predictions file {pred.name}")
    if recompute:
        errs = check_predictions(d, build, pred)
        return Status("redo", errs[0]) if errs else Status("done")
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(pred)
    except Exception as exc:  # pyarrow raises several types for a truncated file
        return Status("redo", f"predictions file {pred.name} is not readable ({exc})")
    n_test = sum(build.n_split["test"].values())
    if meta.num_rows != n_test or set(meta.schema.names) < {"domain_id", "label", "score"}:
        return Status("redo", f"predictions file {pred.name} is incomplete")
    return Status("done")


# ----------------------------------------------------------------------------- one run


def task_dataset(task: Mapping[str, Any]) -> str:
    """The dataset folder a task runs on: the driver's folder; for a benchmark given by
    NAME to a Ray sweep (`task["hub"]`), that folder when this node sees it holding the
    expected build, else the build in this node's data directory, fetched from the pinned
    Hub home when it is not there (`hub.ensure_dataset`: one download per node, verified)."""
    folder, name = task["dataset"], task.get("hub")
    if not name:
        return folder
    from mdrbench.builders.manifest import file_sha256

    if folder and (Path(folder) / "manifest.json").is_file():
        if file_sha256(Path(folder) / "manifest.json") == task["manifest_sha256"]:
            return folder
    from mdrbench.hub import ensure_dataset

    return str(ensure_dataset(name, task["manifest_sha256"]))


def execute(task: Mapping[str, Any]) -> bool:
    """One run, exactly as `mdrbench eval` does it (`runs.py: run_seeds`), on the
    dataset `task_dataset` gives; a task of kind "trial", one tuning trial
    (`trial.run_trial`). Returns False when it wrote nothing: the finished result (or trial
    record) of this run was there when it took the lock (another process did it), and is
    kept."""
    from mdrbench.atomic import Lock
    from mdrbench.results import lock_path
    from mdrbench.runs import run_seeds
    from mdrbench.trial import run_trial

    path = Path(task["path"])
    with Lock(lock_path(path), f"writing {path}"):  # the writer takes it again (re-entrant)
        before = _stamp(path)
        if task.get("kind") == "trial":
            if before is not None and not task["force"]:
                return False
            run_trial(task_dataset(task), task["model"], task["method"], task["seed"],
                      dict(task["overrides"]), task["profile"], path)  # fmt: skip
            return True
        run_seeds(task_dataset(task), task["model"], task["method"], [task["seed"]],
                  dict(task["overrides"]), Path(task["out"]), force=task["force"],
                  profile=task["profile"], extra=task.get("extra"))  # fmt: skip
        return before is None or _stamp(path) != before


# Exit status of a run another process is doing right now (its result's lock is held):
# not a failure, the sweep waits for it (EX_TEMPFAIL).
BUSY = 75
# The reason sent back with exit status 0 when the run found its result finished by
# another process (and kept it) instead of writing it.
KEPT = "kept the result another process finished"


def execute_logged(task: Mapping[str, Any], attempt: int) -> tuple[int, str]:
    """`execute` with its output appended to the run's log; returns (exit status, reason):
    0 ok, 2 a user error, BUSY another process is doing this run, 1 anything else; the
    reason is the `Error:` line's text. Used by the Ray backend's tasks."""
    log = Path(task["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"== attempt {attempt} (pid {os.getpid()}): {_header(task)}", flush=True)
        return _guarded(task)


def _header(task: Mapping[str, Any]) -> str:
    return (f"{task['dataset']} {task['model']}+{task['method']} seed {task['seed']} "
            f"--set {task['overrides']}")  # fmt: skip


def _say(msg: str) -> None:
    """A line into the run's log; a full disk must not hide the reason from the summary."""
    with contextlib.suppress(OSError, ValueError):
        print(msg, file=sys.stderr, flush=True)


def _guarded(task: Mapping[str, Any]) -> tuple[int, str]:
    """(exit status, reason) of `execute(task)`; the reason (one line) is also written to
    the log as `Error: ...`, and a traceback of an unexpected error too."""
    from mdrbench.errors import Busy

    log.setup()  # the trainer's progress (logger "mdrbench", INFO) into the run's log
    try:
        return 0, "" if execute(task) else KEPT
    except UserError as exc:
        rc, reason = (BUSY if isinstance(exc, Busy) else 2), str(exc)
    except OSError as exc:  # a full disk, a folder gone: may pass on a retry
        what = exc.strerror or type(exc).__name__
        reason = f"{exc.filename}: {what}" if exc.filename else f"{type(exc).__name__}: {exc}"
        rc = 1
    except Exception as exc:
        with contextlib.suppress(OSError, ValueError):
            traceback.print_exc()
        rc, reason = 1, f"{type(exc).__name__}: {exc}"
    reason = " ".join(reason.split())  # one line
    _say(f"Error: {reason}")
    return rc, reason


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class _Terminated(BaseException):
    """SIGTERM in a run's process (the sweep stops it, or the sweep is gone): unwinds the
    run so its temporary files and lock are removed on the way out."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _watch_sweep(alive) -> None:
    """In a run's process: block on the pipe only the sweep's process writes to; its end
    (the sweep exited or was killed, even with SIGKILL) stops this run as SIGTERM would,
    so no run outlives the sweep. Should the run not stop within 30 s, it is ended."""
    with contextlib.suppress(EOFError, OSError):
        alive.recv_bytes()  # nothing is ever sent: returns at end of file
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
    os._exit(143)


def _child(task: dict, attempt: int, alive=None, reply=None) -> None:
    """Body of a local backend's process: output into the run's log (at the file
    descriptor level, so torch's warnings land there too), exit status = the run's, and
    (exit status, reason) sent back on `reply`. Stops when `alive` ends (`_watch_sweep`)."""
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep stops its runs itself
    signal.signal(signal.SIGTERM, _on_sigterm)
    if alive is not None:
        threading.Thread(target=_watch_sweep, args=(alive,), daemon=True).start()
    from tqdm import tqdm

    # tqdm's default lock is a multiprocessing semaphore, which the run's process would
    # leave behind (os._exit): the sweep's resource tracker then warns of leaked semaphores.
    tqdm.set_lock(threading.RLock())
    rc, reason = 1, ""
    try:
        path = Path(task["log"])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            reason = f"cannot write its log {path}: {exc.strerror or exc}"
        else:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            _say(f"== attempt {attempt} (pid {os.getpid()}): {_header(task)}")
            rc, reason = _guarded(task)
    except _Terminated:
        rc, reason = 143, "stopped by SIGTERM"
        _say("== stopped (SIGTERM: the sweep stopped this run, or is gone); nothing of it counts")
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        if reply is not None:
            with contextlib.suppress(OSError, ValueError):
                reply.send((rc, reason))
        os._exit(rc)


# ----------------------------------------------------------------------------- backends


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class Finished:
    handle: Any
    rc: int
    message: str = ""


# Imported once by the local backend's fork server, not by each run: torch, the trainer,
# and torch._dynamo (which torch.optim imports on first use: ~2 s per process).
PRELOAD = ["mdrbench.cli.train", "mdrbench.trainer", "torch._dynamo", "pyarrow.parquet"]


class LocalBackend:
    """One process per run on this machine, forked from a server process that has the
    trainer imported (cheap starts; a crash or an out-of-memory kill takes down one run).

    No run outlives the sweep: each holds the read end of a pipe whose only write end is
    this process's (`_watch_sweep`), and a run stopped by SIGTERM unwinds (its temporary
    files and lock go with it). Each run sends back (exit status, reason) on a pipe of its
    own, so the reason reaches the summary even when its log cannot be written."""

    name = "local"

    def __init__(self, jobs: int):
        import multiprocessing as mp

        self.slots = jobs
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self.ctx = mp.get_context(method)
        if method == "forkserver":
            self.ctx.set_forkserver_preload(PRELOAD)
        self.alive, self._alive_w = self.ctx.Pipe(duplex=False)
        self.procs: dict[Any, Any] = {}  # process -> the read end of its reply pipe

    def start(self, run: Run, attempt: int):
        reply, reply_w = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(
            target=_child, args=(run.to_task(), attempt, self.alive, reply_w), daemon=False
        )
        p.start()
        reply_w.close()  # the run's copy is the only one left
        self.procs[p] = reply
        return p

    def wait(self, handles: list, timeout: float) -> list[Finished]:
        from multiprocessing.connection import wait

        ready = wait([p.sentinel for p in handles], timeout=timeout)
        out = []
        for p in handles:
            if p.sentinel in ready:
                p.join()
                rc, reason = p.exitcode, ""
                reply = self.procs.pop(p)
                with contextlib.suppress(EOFError, OSError):
                    if reply.poll():
                        rc, reason = reply.recv()
                reply.close()
                if rc < 0:
                    reason = f"killed by signal {-rc}" + (" (out of memory?)" if -rc == 9 else "")
                out.append(Finished(p, rc, reason))
        return out

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()  # SIGTERM: the run unwinds (`_Terminated`)
        deadline = time.monotonic() + 10
        for p, reply in self.procs.items():
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
            reply.close()
        self.procs = {}

    def close(self) -> None:
        self.stop()
        self._alive_w.close()
        self.alive.close()


class RayBackend:
    """One Ray task per run, asking for the run's threads as CPUs (and `gpus` GPUs). `--out`
    must be a path every node sees; so must a dataset given as a folder, while a benchmark
    given by NAME is fetched by a node without it (`task_dataset`). `mdrbench[ray]` only."""

    name = "ray"

    def __init__(self, address: str | None, jobs: int | None, threads: int, gpus: float | None):
        try:
            import ray
        except ImportError:
            raise UserError(
                "--backend ray needs Ray, an optional extra: pip install 'mdrbench[ray]'"
            ) from None
        self.ray = ray
        self.started = False
        address = address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif jobs:
                kwargs["num_cpus"] = jobs * threads
            try:
                ray.init(**kwargs)
            except Exception as exc:  # Ray raises ConnectionError, TimeoutError, RuntimeError
                raise UserError(
                    f"--address {address}: cannot reach a Ray cluster ({exc})"
                ) from None
            self.started = True
        res = ray.cluster_resources()
        cpus, n_gpus = int(res.get("CPU", 1)), float(res.get("GPU", 0))
        # Without --gpus-per-run: one GPU per run on a cluster that has GPUs (a task given no
        # GPU sees none: its run would fall back to the CPU), none elsewhere.
        self.gpus = gpus if gpus is not None else (1.0 if n_gpus > 0 else 0.0)
        slots = cpus // max(threads, 1)
        if self.gpus > 0:
            slots = min(slots, int(n_gpus / self.gpus))
        self.slots = jobs or max(1, slots)
        self.task = ray.remote(max_retries=0)(execute_logged)

    def start(self, run: Run, attempt: int):
        return self.task.options(num_cpus=run.threads, num_gpus=self.gpus).remote(
            run.to_task(), attempt
        )

    def wait(self, handles: list, timeout: float) -> list[Finished]:
        ray = self.ray
        done, _ = ray.wait(handles, num_returns=len(handles), timeout=timeout)
        out = []
        for ref in done:
            try:
                out.append(Finished(ref, *ray.get(ref)))
            except ray.exceptions.RayError as exc:
                out.append(Finished(ref, 1, f"Ray: {type(exc).__name__}: {str(exc)[:300]}"))
        return out

    def stop(self) -> None:
        pass

    def cancel(self, handles: Iterable) -> None:
        for ref in handles:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


# ----------------------------------------------------------------------------- progress


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """One status line: done / running / failed / left and an ETA. On a terminal it is
    redrawn in place; elsewhere one line per finished run."""

    def __init__(self, total: int, skipped: int, slots: int, stream=None, quiet=False,
                 name: str = "sweep"):  # fmt: skip
        self.name = name  # the line's tag: "[sweep]", "[tune trials]", ...
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty() and not quiet
        self.quiet = quiet  # -q: only failures and retries
        self.total, self.skipped, self.slots = total, skipped, slots
        self.done = self.failed = self.running = 0
        self.t0 = time.monotonic()
        self.durations: dict[str, list[float]] = {}  # method -> seconds of finished runs
        self.pending_methods: list[str] = []
        self.last_draw = 0.0

    def eta(self) -> float | None:
        all_d = [s for v in self.durations.values() for s in v]
        if not all_d:
            return None
        mean = sum(all_d) / len(all_d)
        cost = sum(
            (sum(self.durations[m]) / len(self.durations[m])) if m in self.durations else mean
            for m in self.pending_methods
        )
        return cost / max(self.slots, 1)

    def line(self) -> str:
        left = self.total - self.skipped - self.done - self.failed - self.running
        eta = self.eta()
        return (
            f"[{self.name}] {self.skipped + self.done}/{self.total} done ({self.skipped} skipped), "
            f"{self.running} running, {self.failed} failed, {left} left · "
            f"{fmt_seconds(time.monotonic() - self.t0)} elapsed"
            + (f" · ETA {fmt_seconds(eta)}" if eta is not None and left + self.running else "")
        )

    def event(self, msg: str | None = None) -> None:
        if self.tty:
            if msg:
                self.stream.write("\r\033[K" + msg + "\n")
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
        elif msg and not (self.quiet and msg.startswith("done")):
            self.stream.write(f"{msg}  {self.line()}\n")
            self.stream.flush()
        self.last_draw = time.monotonic()

    def tick(self) -> None:
        if self.tty and time.monotonic() - self.last_draw >= 1.0:
            self.event()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


# ----------------------------------------------------------------------------- the sweep


@dataclass
class Summary:
    runs: list[Run]
    skipped: list[Run] = field(default_factory=list)
    done: list[Run] = field(default_factory=list)
    elsewhere: list[Run] = field(default_factory=list)  # finished by another process
    failed: list[tuple[Run, str]] = field(default_factory=list)  # (run, last reason)
    not_run: list[Run] = field(default_factory=list)  # left when interrupted
    interrupted: bool = False
    seconds: float = 0.0


class _Stop(Exception):
    pass


def sweep(
    runs: list[Run],
    make_backend: Callable[[], Any],
    retries: int = 1,
    recompute: bool = False,
    where: str = "",
    name: str = "sweep",
    close: bool = True,
) -> Summary:
    """Run every run of `runs` that is not done on the backend `make_backend()` returns
    (made once the runs are checked; closed at the end unless `close` is False, for a
    caller that runs more on it); see the module docstring. `name` tags the progress line
    and the log.

    Before anything runs: a result of another config in the way stops the sweep
    (UserError); every result folder must be writable (checked without creating
    anything); what killed runs left there (temporary files, unheld lock files) is
    removed. A run that fails is retried `retries` times, unless it failed with a user
    error (exit status 2: it would fail the same way again); a run another process is
    doing waits for it, and one another process finished is reported as such. Ctrl-C
    (or SIGTERM) stops the runs in progress (their partial files do not count) and
    returns what was finished."""
    from mdrbench.atomic import check_writable, remove_stale

    summary = Summary(runs)
    t0 = time.monotonic()
    todo: list[Run] = []
    conflicts: list[tuple[Run, Status]] = []
    for run in runs:
        st = run_status(run, recompute)
        if st.state == "conflict":
            conflicts.append((run, st))
        run.redo = st.state == "redo"
        (summary.skipped if st.state == "done" else todo).append(run)
    if conflicts:
        run, st = conflicts[0]
        raise UserError(
            f"{len(conflicts)} run(s) would replace what is at their result path, e.g. "
            f"{run.path}: {st.reason}. Use another --out, or move those files away "
            f"(mdrbench {name.split()[0]} --dry-run lists them)."
        )
    folders = sorted({r.path.parent for r in todo})
    for folder in folders:
        check_writable(folder, "--out")
    if not todo:
        return _finish(summary, t0)
    for folder in folders:
        remove_stale(folder)
    backend = make_backend()
    try:
        return _run(summary, backend, todo, retries, where, t0, name)
    finally:
        if close:
            backend.close()


def _finish(summary: Summary, t0: float) -> Summary:
    summary.seconds = time.monotonic() - t0
    return summary


def _run(summary: Summary, backend, todo: list[Run], retries: int, where: str, t0: float,
         name: str = "sweep"):  # fmt: skip
    from mdrbench.atomic import lock_held
    from mdrbench.results import lock_path

    _log.info(f"{name.capitalize()} (pid {os.getpid()}): {len(summary.runs)} runs "
              f"({len(summary.skipped)} already done) {where} · {backend.name} backend, "
              f"{backend.slots} at once")  # fmt: skip
    progress = Progress(
        len(summary.runs),
        len(summary.skipped),
        backend.slots,
        quiet=not _log.isEnabledFor(logging.INFO),
        name=name,
    )
    progress.pending_methods = [r.method for r in todo]
    pending = deque((r, 1) for r in todo)
    waiting: list[tuple[Run, int]] = []  # runs another process is doing right now
    running: dict[Any, tuple[Run, int, float]] = {}
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise _Stop

    def by_another(run: Run) -> None:
        summary.elsewhere.append(run)
        progress.done += 1
        progress.pending_methods.remove(run.method)
        progress.event(f"done   {run.describe()} (by another process)")

    def failed(run: Run, reason: str) -> None:
        summary.failed.append((run, reason))
        progress.failed += 1
        progress.pending_methods.remove(run.method)
        progress.event(f"FAILED {run.describe()}: {reason} (log {run.log})")

    with contextlib.suppress(ValueError):  # not the main thread: no SIGTERM handling
        signal.signal(signal.SIGTERM, on_term)
    progress.event()
    try:
        while pending or running or waiting:
            for item in list(waiting):  # free again: finished (or given up) by the other
                if not lock_held(lock_path(item[0].path)):
                    waiting.remove(item)
                    pending.append(item)
            while pending and len(running) < backend.slots:
                run, attempt = pending.popleft()
                st = run_status(run)  # another sweep may have finished it meanwhile
                if st.state == "done":
                    by_another(run)
                    continue
                if st.state == "conflict":
                    failed(run, f"another process wrote a result of another config there: {st.reason}")
                    continue
                run.redo = st.state == "redo"
                handle = backend.start(run, attempt)
                running[handle] = (run, attempt, time.monotonic())
                progress.running += 1
                progress.event()
            if not running:
                time.sleep(1.0)
                progress.tick()
                continue
            for fin in backend.wait(list(running), timeout=1.0):
                run, attempt, started = running.pop(fin.handle)
                progress.running -= 1
                seconds = time.monotonic() - started
                if fin.rc == BUSY:  # another process holds this run: wait for it
                    waiting.append((run, attempt))
                    progress.event(f"wait   {run.describe()}: another process is running it")
                    continue
                kept = fin.rc == 0 and fin.message == KEPT
                reason = "" if kept else fin.message or (f"exit status {fin.rc}" if fin.rc else "")
                if not reason:
                    st = run_status(run)
                    if st.state != "done":
                        reason = f"finished, but its result does not validate: {st.reason}"
                    elif kept:
                        by_another(run)
                        continue
                if not reason:
                    summary.done.append(run)
                    progress.done += 1
                    progress.pending_methods.remove(run.method)
                    progress.durations.setdefault(run.method, []).append(seconds)
                    progress.event(f"done   {run.describe()} ({fmt_seconds(seconds)})")
                    continue
                _append_log(run, f"== attempt {attempt} failed: {reason}")
                if run_status(run).state == "done":  # another process finished it meanwhile
                    by_another(run)
                elif attempt <= retries and fin.rc != 2:  # exit 2: a user error, deterministic
                    pending.append((run, attempt + 1))
                    progress.event(f"retry  {run.describe()}: {reason} (log {run.log})")
                else:
                    failed(run, reason)
            progress.tick()
    except (KeyboardInterrupt, _Stop):
        summary.interrupted = True
        if hasattr(backend, "cancel"):
            backend.cancel(list(running))
        backend.stop()
        summary.not_run = (
            [r for r, *_ in running.values()] + [r for r, _ in pending] + [r for r, _ in waiting]
        )
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, old_term)
        progress.close()
    return _finish(summary, t0)


def check_engine(backend: str, jobs: int | None, address: str | None, gpus: float | None,
                 retries: int) -> None:  # fmt: skip
    """Refuse engine options no sweep can use (the options of `sweep` and `tune`)."""
    if backend not in ("local", "ray"):
        raise UserError(f"backend '{backend}': expected local or ray")
    if gpus is not None and gpus < 0:
        raise UserError(f"--gpus-per-run must be >= 0, got {gpus}")
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    if retries < 0:
        raise UserError(f"--retries must be >= 0, got {retries}")
    if address and backend != "ray":
        raise UserError("--address is for --backend ray")


def assign_threads(runs: Sequence[Run], default: int = 1) -> int:
    """Each run's torch threads: its `--set threads=T` when T > 0, else `default`. Returns
    the most any run uses."""
    for run in runs:
        t = run.overrides.get("threads", run.overrides.get("train.threads"))
        run.threads = int(t) if t is not None and int(t) > 0 else default
    return max((r.threads for r in runs), default=default)


def engine(runs: Sequence[Run], backend: str, jobs: int | None, address: str | None,
           gpus: float | None, out: Path) -> tuple[Callable[[], Any], str]:  # fmt: skip
    """Give each run its torch threads (`--set threads=T`, else one) and return the backend
    factory for `sweep` and the log's "where". One torch thread per run and as many runs as
    cores by default: on a busy machine two threads made an 8-run sweep 6x slower than one
    (docs/sweep.md, "Measured"). Warns when jobs x threads exceed the cores here."""
    cores = usable_cores()
    default_threads = 1
    if backend == "local":
        jobs = jobs or cores
    most = assign_threads(runs, default_threads)
    if backend == "local" and jobs * most > cores:
        _log.warning(f"warning: {jobs} jobs x {most} threads > {cores} cores: runs will "
                     "compete for the CPUs (fewer --jobs or --set threads=1)")  # fmt: skip

    def make_backend():  # after the sweep has checked the runs: no Ray started for nothing
        if backend == "local":
            return LocalBackend(jobs)
        return RayBackend(address, jobs, default_threads, gpus)

    return make_backend, f"into {out}, {default_threads} thread(s) per run ({cores} cores here)"


def check_devices(runs: Sequence[Run]) -> None:
    """Every device the runs ask for exists on this machine (the local backend: a run
    asking for `cuda` where torch sees no GPU would fail at run time, every one of them)."""
    from mdrbench.trainer import resolve_device

    for device in sorted({r.config["train"]["device"] for r in runs}):
        try:
            resolve_device(device)
        except UserError as exc:
            raise UserError(
                f"--set {exc}: run on a machine that has it, or --set device=cpu"
            ) from None


def next_commands(summary: Summary, out: Path) -> list[str]:
    """The commands to run after this sweep, each runnable as printed: a table per grid
    point, `validate` and `leaderboard build` of `--out` with the datasets to check against
    (and, where an entry has fewer than the leaderboard's 3 seeds, the options that accept
    it). None when no run is finished."""
    from mdrbench.log import command
    from mdrbench.results import load_results
    from mdrbench.validate import MIN_SEEDS, entry_key

    finished = summary.skipped + summary.done + summary.elsewhere
    if not finished:
        return []
    try:
        records = load_results(out)
    except UserError:  # validate names the bad file
        records = []
    seeds: dict[tuple, set[int]] = {}
    for r in records:
        seeds.setdefault(entry_key(r), set()).add(r["seed"])
    fewest = min((len(v) for v in seeds.values()), default=MIN_SEEDS)
    datasets = [x for d in dict.fromkeys(map(_local_copy, finished)) if d
                for x in ("--dataset", d)]  # fmt: skip
    few = fewest < MIN_SEEDS
    site = out.with_name(out.name + "-site") if out.name not in ("", ".", "..") else (
        out.resolve().with_name(out.resolve().name + "-site"))  # fmt: skip
    return [
        *(command("table", f) for f in sorted({r.path.parent for r in finished})),
        command("validate", out, *datasets, *(["--min-seeds", fewest] if few else []),
                "--require-predictions"),
        command("leaderboard", "build", out, *datasets, *(["--allow-few-seeds"] if few else []),
                "--out", site),
    ]  # fmt: skip


def _local_copy(run: Run) -> str:
    """The run's dataset folder on this machine: the one it ran on, or for a benchmark the
    Ray tasks fetched, the copy in this machine's data directory ("" when there is none)."""
    if run.dataset or not run.hub:
        return run.dataset
    from mdrbench.paths import default_data_dir

    folder = default_data_dir() / run.hub
    return str(folder) if (folder / "manifest.json").is_file() else ""


def _append_log(run: Run, line: str) -> None:
    with contextlib.suppress(OSError):  # a full disk: the summary still says it
        run.log.parent.mkdir(parents=True, exist_ok=True)
        with open(run.log, "a") as f:
            f.write(line + "\n")
