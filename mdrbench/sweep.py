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
- `execute(run)`: one run, through `cli/train.py: run_seeds` (the code `mdrbench eval` runs),
  which writes the predictions and then the JSON as one unit: a run killed mid-way leaves
  no JSON, hence nothing that counts.
- `sweep(...)`: skips what is done, runs the rest on a backend (`LocalBackend`: one process
  per run, forked from a server that has the trainer imported; `RayBackend`: one Ray task
  per run), retries failures, shows one progress line and returns a `Summary`.

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
        return f"{self.dataset_name} {self.model}+{self.method}{point} seed {self.seed}"

    def to_task(self) -> dict:
        """What a worker needs (plain values: it crosses process and machine boundaries)."""
        return {
            "dataset": self.dataset,
            "model": self.model,
            "method": self.method,
            "seed": self.seed,
            "overrides": {**self.overrides, "threads": self.threads},
            "out": str(self.path.parent),
            "log": str(self.log),
            "force": self.redo,
            "profile": self.profile,
            "hub": self.hub,
            "manifest_sha256": self.manifest_sha256,
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
    entry run one after the other, so entries complete early). `hub`: a benchmark NAME may
    be fetched from its pinned Hub home by the tasks (the Ray backend; `_manifest`)."""
    from mdrbench.frameworks import FRAMEWORKS
    from mdrbench.models import MODELS
    from mdrbench.results import result_path
    from mdrbench.trainer import resolve_config

    models = names_or_all(models, MODELS, "model")
    methods = names_or_all(methods, FRAMEWORKS, "method")
    points = grid_points(sets)
    folders: dict[str, tuple[str, dict, str, bytes, str]] = {}
    for d in datasets:
        for name in split_values(d):
            folders.setdefault(str(name), _manifest(name, hub))
    if not folders:
        raise UserError("no dataset given (--dataset NAME_OR_PATH)")
    runs: list[Run] = []
    seen: dict[Path, Run] = {}
    for folder, manifest, sha, data, fetch in folders.values():
        for model, method in itertools.product(models, methods):
            for overrides, label in points:
                cfg = resolve_config(
                    model, method, overrides, dataset=manifest["name"], profile=profile
                )
                for seed in seeds:
                    cfg.train.seed = seed
                    name = manifest["name"]
                    path = result_path(out / label if label else out, name, model, method, seed)
                    run = Run(folder, name, sha, model, method, seed, dict(overrides), label,
                              path, cfg.to_dict(), profile=profile, hub=fetch,
                              manifest_bytes=data)  # fmt: skip
                    if path in seen:
                        if seen[path].manifest_sha256 != run.manifest_sha256 or (
                            seen[path].dataset != run.dataset
                        ):
                            a, b = seen[path].source, run.source
                            raise UserError(
                                f"datasets {a} and {b} are both "
                                f"named '{run.dataset_name}': their results would share "
                                f"{path}. Sweep them into different --out folders."
                            )
                        continue
                    seen[path] = run
                    runs.append(run)
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
    from mdrbench.results import config_diff, read_result
    from mdrbench.validate import Build, check_metrics, check_predictions

    try:
        d = read_result(run.path)
    except UserError as exc:  # a file there that is not a result: never replaced
        text = str(exc).partition(": move it away")[0]
        return Status("conflict", text.replace(f"{run.path} exists but ", "the file there "))
    if d is None:
        return Status("todo")
    if d["dataset"]["manifest_sha256"] != run.manifest_sha256:
        return Status("conflict", f"a result computed on another build of {run.dataset_name} "
                      f"(manifest sha256 {d['dataset']['manifest_sha256'][:12]}...)")  # fmt: skip
    theirs = {k: d[k] for k in ("model", "method", "seed")}
    if theirs != {"model": run.model, "method": run.method, "seed": run.seed}:
        return Status("conflict", f"the result of another run ({theirs})")
    diff = config_diff(d["config"], run.config)
    if diff:
        return Status("conflict", f"a result of another config ({'; '.join(diff[:3])})")
    build = Build.from_manifest_bytes(
        run.manifest_bytes or (Path(run.dataset) / "manifest.json").read_bytes(),
        Path(run.dataset) if run.dataset else None,  # None: no test split here to read
        run.source,
    )
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


def execute(task: Mapping[str, Any]) -> None:
    """One run, exactly as `mdrbench eval` does it (`cli/train.py: run_seeds`), on the dataset
    `task_dataset` gives."""
    from mdrbench.cli.train import run_seeds

    run_seeds(task_dataset(task), task["model"], task["method"], [task["seed"]],
              dict(task["overrides"]), Path(task["out"]), force=task["force"],
              profile=task["profile"])  # fmt: skip


def execute_logged(task: Mapping[str, Any], attempt: int) -> int:
    """`execute` with its output appended to the run's log; returns an exit status
    (0 ok, 2 a user error, 1 anything else). Used by the Ray backend's tasks."""
    log = Path(task["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"== attempt {attempt}: {_header(task)}", flush=True)
        return _guarded(task)


def _header(task: Mapping[str, Any]) -> str:
    return (f"{task['dataset']} {task['model']}+{task['method']} seed {task['seed']} "
            f"--set {task['overrides']}")  # fmt: skip


def _guarded(task: Mapping[str, Any]) -> int:
    log.setup()  # the trainer's progress (logger "mdrbench", INFO) into the run's log
    try:
        execute(task)
        return 0
    except UserError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        return 1


def _child(task: dict, attempt: int) -> None:
    """Body of a local backend's process: output into the run's log (at the file
    descriptor level, so torch's warnings land there too), exit status = the run's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep stops its runs itself
    log = Path(task["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    print(f"== attempt {attempt}: {_header(task)}", file=sys.stderr, flush=True)
    rc = _guarded(task)
    sys.stdout.flush()
    sys.stderr.flush()
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
    trainer imported (cheap starts; a crash or an out-of-memory kill takes down one run)."""

    name = "local"

    def __init__(self, jobs: int):
        import multiprocessing as mp

        self.slots = jobs
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self.ctx = mp.get_context(method)
        if method == "forkserver":
            self.ctx.set_forkserver_preload(PRELOAD)
        self.procs: list = []

    def start(self, run: Run, attempt: int):
        p = self.ctx.Process(target=_child, args=(run.to_task(), attempt), daemon=False)
        p.start()
        self.procs.append(p)
        return p

    def wait(self, handles: list, timeout: float) -> list[Finished]:
        from multiprocessing.connection import wait

        ready = wait([p.sentinel for p in handles], timeout=timeout)
        out = []
        for p in handles:
            if p.sentinel in ready:
                p.join()
                self.procs.remove(p)
                rc = p.exitcode
                msg = (f"killed by signal {-rc}" + (" (out of memory?)" if -rc == 9 else "")
                       if rc < 0 else "")  # fmt: skip
                out.append(Finished(p, rc, msg))
        return out

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        deadline = time.monotonic() + 10
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        self.procs = []

    def close(self) -> None:
        self.stop()


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
                out.append(Finished(ref, ray.get(ref)))
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

    def __init__(self, total: int, skipped: int, slots: int, stream=None, quiet=False):
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
            f"[sweep] {self.skipped + self.done}/{self.total} done ({self.skipped} skipped), "
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
) -> Summary:
    """Run every run of `runs` that is not done on the backend `make_backend()` returns
    (made once the runs are checked, closed at the end); see the module docstring. A failed
    run is retried `retries` times, then reported. Ctrl-C (or SIGTERM) stops the runs in
    progress (their partial files do not count) and returns what was finished."""
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
            "(mdrbench sweep --dry-run lists them)."
        )
    backend = make_backend()
    try:
        return _run(summary, backend, todo, retries, where, t0)
    finally:
        backend.close()


def _run(summary: Summary, backend, todo: list[Run], retries: int, where: str, t0: float):
    _log.info(f"Sweep: {len(summary.runs)} runs ({len(summary.skipped)} already done) "
              f"{where} · {backend.name} backend, {backend.slots} at once")  # fmt: skip
    progress = Progress(
        len(summary.runs),
        len(summary.skipped),
        backend.slots,
        quiet=not _log.isEnabledFor(logging.INFO),
    )
    progress.pending_methods = [r.method for r in todo]
    pending = deque((r, 1) for r in todo)
    running: dict[Any, tuple[Run, int, float]] = {}
    old_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise _Stop

    with contextlib.suppress(ValueError):  # not the main thread: no SIGTERM handling
        signal.signal(signal.SIGTERM, on_term)
    progress.event()
    try:
        while pending or running:
            while pending and len(running) < backend.slots:
                run, attempt = pending.popleft()
                running[backend.start(run, attempt)] = (run, attempt, time.monotonic())
                progress.running += 1
                progress.event()
            for fin in backend.wait(list(running), timeout=1.0):
                run, attempt, started = running.pop(fin.handle)
                progress.running -= 1
                progress.pending_methods.remove(run.method)
                seconds = time.monotonic() - started
                reason = fin.message or (f"exit status {fin.rc}" if fin.rc else "")
                if not reason:
                    st = run_status(run)
                    if st.state != "done":
                        reason = f"finished, but its result does not validate: {st.reason}"
                if not reason:
                    summary.done.append(run)
                    progress.done += 1
                    progress.durations.setdefault(run.method, []).append(seconds)
                    progress.event(f"done   {run.describe()} ({fmt_seconds(seconds)})")
                    continue
                _append_log(run, f"== attempt {attempt} failed: {reason}")
                if attempt <= retries:
                    run.redo = run_status(run).state == "redo"
                    pending.append((run, attempt + 1))
                    progress.pending_methods.append(run.method)
                    progress.event(f"retry  {run.describe()}: {reason} (log {run.log})")
                else:
                    summary.failed.append((run, reason))
                    progress.failed += 1
                    progress.event(f"FAILED {run.describe()}: {reason} (log {run.log})")
            progress.tick()
    except (KeyboardInterrupt, _Stop):
        summary.interrupted = True
        if hasattr(backend, "cancel"):
            backend.cancel(list(running))
        backend.stop()
        summary.not_run = [r for r, _, _ in running.values()] + [r for r, _ in pending]
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, old_term)
        progress.close()
    summary.seconds = time.monotonic() - t0
    return summary


def _append_log(run: Run, line: str) -> None:
    run.log.parent.mkdir(parents=True, exist_ok=True)
    with open(run.log, "a") as f:
        f.write(line + "\n")
