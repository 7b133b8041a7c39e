"""The reference trainer: one (dataset, model, framework, seed) run -> a result record.

It never names a model or a framework: it builds what the registries give, hands the
framework a `Context` (data, options, a seeded generator), runs the framework's stages with
early stopping on validation AUC, keeps the best state in a temporary file, and computes every
number with `mdrbench.evaluate.evaluate`. See docs/training.md.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mdrbench import __version__
from mdrbench.config import RunConfig, TrainConfig, apply_overrides, check_values
from mdrbench.data import MDRData, Split, load_dataset
from mdrbench.errors import TrainingDiverged, UserError
from mdrbench.evaluate import evaluate
from mdrbench.frameworks import FRAMEWORKS, Context, Framework, Stage, set_sparse_embeddings
from mdrbench.log import bar as progress_bar
from mdrbench.log import get as get_logger
from mdrbench.models import MODELS
from mdrbench.track import profile_track

SCHEMA_VERSION = 1
_log = get_logger(__name__)


@dataclass
class RunResult:
    record: dict  # the result JSON (schema_version 1)
    history: list[dict] = field(default_factory=list)  # one entry per epoch
    framework: Framework | None = None  # the trained framework (model inside), for reuse
    test_scores: np.ndarray | None = None  # click probabilities of the test split, its order
    path: Path | None = None  # where the result was written (mdrbench.train(out=...))


# ----------------------------------------------------------------------------- config


def _framework_class(method: str | type[Framework]) -> type[Framework]:
    if isinstance(method, type) and issubclass(method, Framework):
        return method
    return FRAMEWORKS.get(method)


def _elsewhere(model: str | None, method: str | None) -> dict[str, str]:
    """Hyperparameter names of the other models/frameworks -> who has them (for errors)."""
    out: dict[str, str] = {}
    for kind, reg, mine in (("model", MODELS, model), ("framework", FRAMEWORKS, method)):
        for name in reg:
            if name == mine:
                continue
            for f in fields(reg.get(name).Config):
                out.setdefault(f.name, f"{kind} '{name}'")
    return out


def benchmark_dataset(name: str | None) -> bool:
    """True for the benchmark's dataset names (amazon-6, taobao-10, ...)."""
    from mdrbench.builders.specs import DATASETS

    return name in DATASETS


def resolve_config(
    model: str | nn.Module,
    method: str | type[Framework],
    overrides: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    profile: str = "paper",
) -> RunConfig:
    """The run's configuration: defaults of the train loop, the model and the framework;
    then, with `profile="paper"`, the authors' published values for (`dataset`, model,
    method) (baselines/paper_configs.json; nothing for a dataset name the benchmark does
    not have); then `overrides` (name -> value or string), type-checked. `profile="none"`:
    mdrbench's defaults only. What the profile set is recorded in `run.profile`."""
    from mdrbench.baselines.paper import PROFILES, paper_models, profile_settings

    if profile not in PROFILES:
        raise UserError(f"--profile: expected one of {', '.join(PROFILES)}, got '{profile}'")
    fw_cls = _framework_class(method)
    model_cfg = MODELS.get(model).Config() if isinstance(model, str) else None
    run = RunConfig(train=TrainConfig(), model=model_cfg, framework=fw_cls.Config())
    elsewhere = _elsewhere(
        model if isinstance(model, str) else None, method if isinstance(method, str) else None
    )
    applied: dict[str, Any] = {}
    if profile == "paper" and benchmark_dataset(dataset):
        applied = profile_settings(
            dataset,
            model if isinstance(model, str) else None,
            method if isinstance(method, str) else None,
        )
        apply_overrides(run, applied, elsewhere)
    in_force = {key: _setting(run, key) for key in applied}
    apply_overrides(run, overrides or {}, elsewhere)
    # The record names what the profile set and is still in force; a value `overrides`
    # replaced is listed apart, so neither the result nor the log claims a value not used.
    replaced = sorted(key for key, value in in_force.items() if _setting(run, key) != value)
    run.profile = {
        "name": profile,
        "dataset": dataset,
        "applied": {k: v for k, v in applied.items() if k not in replaced},
    }
    if replaced:
        run.profile["overridden"] = replaced
    if applied and isinstance(model, str) and model not in paper_models():
        run.profile["model_covered"] = False  # the paper never ran it: not the paper track
    t = run.train
    for name, value, low in (
        ("batch_size", t.batch_size, 1),
        ("eval_batch_size", t.eval_batch_size, 1),
        ("epochs", t.epochs, 0),
        ("patience", t.patience, 1),
        ("threads", t.threads, 0),  # 0 = torch's default
        ("shuffle_buffer", t.shuffle_buffer, 0),  # 0 = a uniform shuffle
    ):
        if value < low:
            raise UserError(f"{name} must be >= {low}, got {value}")
    if not t.lr > 0:
        raise UserError(f"lr must be > 0, got {t.lr}")
    check_values(run)
    return run


def _setting(run: RunConfig, key: str) -> Any:
    """The value of a "section.name" setting of `run`."""
    section, _, name = key.partition(".")
    return getattr(run.sections()[section], name)


def config_from_record(
    record: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> RunConfig:
    """The exact RunConfig a result was trained with (its "config"), for a rerun: no profile
    is applied again (the record holds what it set); `overrides` on top."""
    model, method = record.get("model"), record.get("method")
    if not isinstance(model, str) or not isinstance(method, str):
        raise UserError("config: the record names no model and method")
    run = resolve_config(model, method, profile="none")
    run.load_dict(record.get("config") or {})
    apply_overrides(run, overrides or {}, _elsewhere(model, method))
    return run


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"device: unknown device '{spec}' (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device: CUDA was asked for but torch sees no GPU")
    return device


# ----------------------------------------------------------------------------- the run


def _score(m: dict) -> float:
    """Selection score of a metrics dict (split or domain): AUC; -logloss when undefined."""
    a = m.get("auc_mean", m.get("auc"))
    if a is not None:
        return a
    ll = m.get("logloss")
    return -ll if ll is not None else -math.inf


class _Evaluator:
    def __init__(self, fw: Framework, data: MDRData):
        self.fw, self.names = fw, data.info.domain_names
        self.runner: Any = fw  # what predicts in the current stage (Framework.stage_runner)
        self.arrays = {
            name: (s.domain_id.cpu().numpy(), s.label.cpu().numpy())
            for name, s in data.splits.items()
        }
        self.splits: dict[str, Split] = data.splits
        self.probs: dict[str, np.ndarray] = {}  # the last predictions per split

    def __call__(self, split: str) -> dict:
        probs = self.probs[split] = self.runner.predict(self.splits[split])
        if not np.isfinite(probs).all():
            raise _diverged(f"the model's {split} predictions are not finite (NaN or inf)")
        dom, lab = self.arrays[split]
        return evaluate(dom, lab, probs, self.names)


def environment(device: torch.device) -> dict:
    """Where a run ran: the device used, its model name, torch/mdrbench/Python versions,
    torch's thread count."""
    import platform

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return {
        "device": str(device),
        "device_name": name,
        "torch_version": torch.__version__,
        "mdrbench_version": __version__,
        "python_version": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def _read(path: Path) -> Any:
    # our own file, written by _BestStates.save: any picklable state a framework returns
    return torch.load(path, weights_only=False)


class _Parts(Sequence):
    """A list entry of a kept state (one element per domain, as MAMDR's theta_d), each
    element read from its own file when it is asked for and not kept here: a framework's
    `load_state_dict`, iterating, holds one domain's loaded copy at a time."""

    def __init__(self, files: list[Path]):
        self._files = files

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [_read(f) for f in self._files[i]]
        return _read(self._files[i])


class _BestStates:
    """The best states so far, kept on disk rather than in memory, as the authors' Keras
    `ModelCheckpoint(save_best_only=True)` keeps them, and read back exactly (bit for bit).
    A key is the stage's state or a domain's. States are written with `torch.save` straight
    from the live tensors (a framework's `state_dict` gives references, no copy), in parts:
    each entry of a state dict in its own file, and each element of a list entry in its
    own (`_Parts`). Putting a state back so never holds a second full copy beside the live
    one, only one part at a time: at Amazon-6's id space MAMDR's state holds its theta_d
    tables, each domain's about 0.1 to 0.2 GiB (docs/benchmarks.md). The folder is a fresh
    temporary one, removed by `close` at the end of training and, should training fail,
    when this object is collected or at the latest when Python exits; one a killed run
    left is removed by the next run on this machine (`atomic.temp_dir`)."""

    def __init__(self) -> None:
        from mdrbench.atomic import temp_dir

        self.dir = temp_dir(Path(tempfile.gettempdir()), "mdrbench-best")
        self._files: set[Path] = set()  # removed one by one: the folder itself only if empty
        # key -> (its file, or {entry: file | [files]}; every file of it)
        self._layout: dict[str, tuple[Any, list[Path]]] = {}
        self._serial = 0
        self._cleanup = weakref.finalize(self, _remove_files, self.dir, self._files)

    def save(self, key: str, state: Any) -> None:
        written: list[Path] = []

        def write(obj: Any) -> Path:
            self._serial += 1
            path = self.dir / f"{key}.{self._serial}.pt"
            self._files.add(path)
            written.append(path)
            torch.save(obj, path)
            return path

        if isinstance(state, dict):
            layout: Any = {
                k: [write(x) for x in v] if isinstance(v, list) else write(v)
                for k, v in state.items()
            }
        else:
            layout = write(state)
        self.drop(key)  # the previous best, once the new one is complete
        self._layout[key] = (layout, written)

    def has(self, key: str) -> bool:
        return key in self._layout

    def load(self, key: str) -> Any:
        layout, _ = self._layout[key]
        if not isinstance(layout, dict):
            return _read(layout)
        return {k: _Parts(v) if isinstance(v, list) else _read(v) for k, v in layout.items()}

    def drop(self, key: str) -> None:
        _, files = self._layout.pop(key, (None, []))
        for f in files:
            f.unlink(missing_ok=True)
            self._files.discard(f)

    def close(self) -> None:
        self._cleanup()


def _remove_files(folder: Path, files: set[Path]) -> None:
    for f in files:
        f.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # not empty: not only ours
        pass


def _out_of_memory_is_a_user_error(fn):
    """A run that cannot allocate its model or batch (`--set hidden=[100000000]`: 153 GB)
    ends with one Error line naming the sizes to lower, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (MemoryError, RuntimeError) as exc:
            text = str(exc)
            if not isinstance(exc, MemoryError) and not any(  # CUDA's: "CUDA out of memory"
                s in text for s in ("can't allocate memory", "not enough memory", "out of memory")
            ):
                raise
            what = " ".join(text.split("\n")[0].split())[:300] or type(exc).__name__
            raise UserError(
                f"out of memory: {what}. The model or a batch is too large for this machine: "
                "use smaller sizes (--set emb_dim=..., hidden=[...]) or a smaller batch_size / "
                "eval_batch_size."
            ) from None

    return wrapper


@_out_of_memory_is_a_user_error
def train(
    dataset: str | Path | MDRData,
    model: str | nn.Module = "mlp",
    method: str | type[Framework] = "alternate",
    *,
    seed: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    run: RunConfig | None = None,
    profile: str = "paper",
    log: Callable[[str], None] | None = None,
    log_domains: bool = False,
    progress: bool = False,
    test: bool = True,
) -> RunResult:
    """Train `model` (a registered name, or any nn.Module with forward(batch) -> logits)
    with framework `method` (a registered name, or a Framework subclass) on `dataset`;
    each stage trains to early stopping on validation AUC (no epoch cap unless `epochs`
    sets one); test metrics of the best state, and of each stage's best (`stages`).
    `profile`: "paper" applies the authors' configuration for a benchmark dataset
    (`resolve_config`); `run`: a resolved config used as it is. `log` receives progress
    lines (None: silent); `progress` shows a tqdm bar of training rows per epoch (on a
    terminal). `test=False` (a tuning trial, docs/tuning.md): the test split is never
    evaluated; every test metric of the record is None and there are no test scores."""
    given = run is not None
    run = run if given else resolve_config(model, method, overrides, profile=profile)
    if run.train.threads > 0:
        torch.set_num_threads(run.train.threads)
    device = resolve_device(run.train.device)
    log = log or (lambda msg: None)
    data = dataset.to(device) if isinstance(dataset, MDRData) else load_dataset(dataset, device)
    info = data.info
    if not given:  # now that the dataset's name is known: its paper profile
        run = resolve_config(model, method, overrides, dataset=info.name, profile=profile)
    tc = run.train
    if seed is not None:
        tc.seed = seed

    # 1. Model and framework, from the seed (same seed + same data = same numbers on CPU).
    torch.manual_seed(tc.seed)
    net = MODELS.get(model)(info, run.model) if isinstance(model, str) else model
    set_sparse_embeddings(net, tc.sparse_embeddings)
    net.to(device)
    generator = torch.Generator().manual_seed(tc.seed)
    ctx = Context(data=data, train=tc, device=device, generator=generator, log=log)
    fw = _framework_class(method)(net, ctx, run.framework)

    # 2. Stages, each with early stopping; the best state is kept on disk.
    t = _Training(fw, _Evaluator(fw, data), log, log_domains, progress, test)
    t_start = time.perf_counter()
    stage_records = [t.train_stage(si, stage) for si, stage in enumerate(fw.stages())]
    t.kept.close()
    train_seconds = time.perf_counter() - t_start

    # 3. Numbers of the selected state, from the one evaluator (the last stage's).
    metrics = stage_records[-1]["metrics"]
    per_domain = fw.stages()[-1].select == "domain"
    log(f"{_selected(t.best_epoch, per_domain)}: {_aucs(metrics)}")
    capped = [s["name"] for s in stage_records if s["stopped_by"] == "cap"]
    record = {
        "schema_version": SCHEMA_VERSION,
        "mdrbench_version": __version__,
        "dataset": {"name": info.name, "manifest_sha256": info.manifest_sha256},
        "model": model if isinstance(model, str) else type(model).__name__,
        "method": method if isinstance(method, str) else method.__name__,
        "seed": tc.seed,
        "track": profile_track(run.profile),
        "config": run.to_dict(),
        "best_epoch": t.best_epoch,
        "metrics": metrics,
        "stages": stage_records,
        "stopped_at_cap": capped,
        "environment": environment(device),
        "train_seconds": train_seconds,
        "samples_per_second": t.samples / t.train_time if t.train_time > 0 else 0.0,
        "n_parameters": int(t.runner.n_parameters()),
        "history": t.history,  # one entry per epoch: epoch, stage, loss, samples, seconds, val_auc
    }
    return RunResult(
        record=record, history=t.history, framework=fw, test_scores=t.evaluator.probs.get("test")
    )


class _Training:
    """A run's stages, one after the other (`train_stage`), and what they add up: the epoch
    count across stages, the best epoch, samples and training time, the history (one entry
    per epoch) and the best states kept on disk (`kept`)."""

    def __init__(
        self,
        fw: Framework,
        evaluator: _Evaluator,
        log: Callable[[str], None],
        log_domains: bool,
        progress: bool,
        test: bool = True,
    ):
        self.fw, self.evaluator, self.log = fw, evaluator, log
        self.log_domains, self.progress = log_domains, progress
        self.test = test  # False: a tuning trial, the test split never evaluated
        self.tc: TrainConfig = fw.ctx.train
        self.data: MDRData = fw.ctx.data
        self.history: list[dict] = []
        self.epoch = self.best_epoch = self.samples = 0
        self.train_time = 0.0
        self.runner: Any = fw  # what trains and predicts in the current stage
        self.kept = _BestStates()  # the best states, on disk

    def train_stage(self, si: int, stage: Stage) -> dict:
        """Stage `si`: train to early stopping (or the epoch cap), put its best state back;
        returns the stage's record (epochs, best epoch, why it stopped, its metrics)."""
        fw, log = self.fw, self.log
        fw.begin_stage(stage)
        runner = self.runner = self.evaluator.runner = fw.stage_runner(stage)
        stopper = _EarlyStopping(stage, self.data.info.domain_names, self.tc.patience,
                                 runner, self.kept)  # fmt: skip
        if si > 0 and stage.keep_start:  # the previous stage's result: a first candidate
            stopper.start_from(self.evaluator("val"))
        cap = stage.max_epochs or self.tc.epochs or None
        n_epochs, stopped = 0, "early_stop"
        while stopper.active:
            if cap is not None and n_epochs >= cap:
                stopped = "cap"
                break
            self.epoch += 1
            n_epochs += 1
            stop = stopper.update(self.epoch, self.train_epoch(stage, stopper.active))
            if stopper.stage_best == self.epoch:
                self.best_epoch = self.epoch
            if stop:
                break
        stopper.restore_best(self.epoch, n_epochs)
        rising = stopper.rising()
        if stopped == "cap":
            still = f", validation AUC still rising ({', '.join(rising)})" if rising else ""
            log(f"stage {stage.name}: stopped at the epoch cap ({cap}){still}")
        metrics = {"val": self.evaluator("val"),
                   "test": self.evaluator("test") if self.test else None}  # fmt: skip
        if len(fw.stages()) > si + 1:
            log(f"stage {stage.name}: {_selected(stopper.stage_best, stopper.per_domain)}, "
                f"{_aucs(metrics)}")
        return {
            "name": stage.name,
            "epochs": n_epochs,
            "best_epoch": stopper.stage_best,
            "stopped_by": stopped,
            "val_auc_rising": bool(stopped == "cap" and rising),
            "metrics": metrics,
        }

    def train_epoch(self, stage: Stage, active: list[int]) -> dict:
        """One epoch of the runner over the `active` domains, timed, logged and added to
        the history; returns the validation metrics after it."""
        epoch, data, log = self.epoch, self.data, self.log
        self.fw.model.train()
        t0 = time.perf_counter()
        bar = progress_bar(desc=f"epoch {epoch} [{stage.name}]", unit=" rows",
                           unit_scale=True, enabled=self.progress)  # fmt: skip
        if not bar.disable:
            data.train.on_take = bar.update
        try:
            stats = self.runner.train_epoch(epoch, list(active))
        finally:
            data.train.on_take = None
            bar.close()
        dt = time.perf_counter() - t0
        if not math.isfinite(stats.loss) and stats.samples:
            raise _diverged(f"the training loss is {stats.loss} at epoch {epoch}")
        self.train_time += dt
        self.samples += stats.samples
        val = self.evaluator("val")
        self.history.append(
            {
                "epoch": epoch,
                "stage": stage.name,
                "loss": stats.loss,
                "samples": stats.samples,
                "seconds": dt,
                "val_auc": val["auc_mean"],
            }
        )
        log(
            f"epoch {epoch:3d} [{stage.name}] loss {stats.loss:.4f}  val auc "
            f"{_fmt(val['auc_mean'])}  {dt:.1f}s  {stats.samples / max(dt, 1e-9):,.0f} samples/s"
        )
        if self.log_domains:
            for d, name in enumerate(data.info.domain_names):
                dl = stats.domain_loss.get(d)
                log(
                    f"    domain {d:3d} {name[:30]:30s} loss {_fmt(dl)}  val auc "
                    f"{_fmt(val['domains'][name]['auc'])}"
                )
        return val


class _EarlyStopping:
    """A stage's early stopping and best state (`Stage`). select="mean": the state of the
    best average validation AUC is kept ("stage"), and the stage stops after `patience`
    epochs that did not beat the patience reference by more than `min_delta`.
    select="domain": the same for each domain on its own validation AUC ("domain<d>"), and
    a domain that stops drops out of `active` (the stage ends when none is left). Best
    states go to `kept` (on disk); `restore_best` puts them back into the runner."""

    def __init__(
        self, stage: Stage, names: list[str], patience: int, runner: Any, kept: _BestStates
    ):
        if stage.select not in ("mean", "domain"):
            raise ValueError(f"stage {stage.name}: select must be 'mean' or 'domain'")
        self.stage, self.names, self.patience = stage, names, patience
        self.runner, self.kept = runner, kept
        n_dom = len(names)
        self.per_domain = per_domain = stage.select == "domain"
        self.best: Any = {d: -math.inf for d in range(n_dom)} if per_domain else -math.inf
        self.gate: Any = dict(self.best) if per_domain else self.best  # patience reference
        self.kept_best = False  # a stage's best state is in `kept` ("stage"; "domain<d>")
        self.bad: Any = dict.fromkeys(range(n_dom), 0) if per_domain else 0
        self.active = list(range(n_dom))
        # the epoch each domain last trained in, and the one its kept state is from: the
        # same, and the live state is the kept one (nothing to load back)
        self.trained_at = dict.fromkeys(range(n_dom), 0)
        self.kept_at = dict.fromkeys(range(n_dom), -1)
        self.stage_best = 0  # the stage's best epoch (0: none trained beat the start)

    def start_from(self, val: dict) -> None:
        """The state before the stage's first epoch (`val`: its validation metrics) is the
        first candidate (`Stage.keep_start`)."""
        if self.per_domain:
            for d, name in enumerate(self.names):
                self.best[d] = self.gate[d] = _score(val["domains"][name])
                self.kept.save(f"domain{d}", self.runner.domain_state(d))
        else:
            self.best, self.kept_best = _score(val), True
            self.kept.save("stage", self.runner.state_dict())
            self.gate = self.best

    def update(self, epoch: int, val: dict) -> bool:
        """After `epoch` (`val`: its validation metrics): keep what improved, count the
        patience; True = the stage stops (select="mean")."""
        if self.per_domain:
            for d in list(self.active):
                self.trained_at[d] = epoch
                sc = _score(val["domains"][self.names[d]])
                if sc > self.best[d]:
                    self.best[d], self.kept_at[d] = sc, epoch
                    self.kept.save(f"domain{d}", self.runner.domain_state(d))
                    self.stage_best = epoch
                if sc - self.stage.min_delta > self.gate[d]:
                    self.gate[d], self.bad[d] = sc, 0
                else:
                    self.bad[d] += 1
                    if self.bad[d] >= self.patience:
                        self.active.remove(d)
            return False
        sc = _score(val)
        if sc > self.best:
            self.best, self.kept_best, self.stage_best = sc, True, epoch
            self.kept.save("stage", self.runner.state_dict())
        if sc - self.stage.min_delta > self.gate:
            self.gate, self.bad = sc, 0
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore_best(self, epoch: int, n_epochs: int) -> None:
        """The best state back into the runner (each domain's, for select="domain"), unless
        it is the live state already (kept at the last epoch trained); `kept` released."""
        if self.per_domain:
            for d in range(len(self.names)):
                if self.kept.has(f"domain{d}"):
                    if self.kept_at[d] != self.trained_at[d]:
                        self.runner.load_domain_state(d, self.kept.load(f"domain{d}"))
                    self.kept.drop(f"domain{d}")
        elif self.kept_best:
            if self.stage_best != epoch or n_epochs == 0:
                self.runner.load_state_dict(self.kept.load("stage"))
            self.kept.drop("stage")

    def rising(self) -> list[str]:
        """What was still improving at the last epoch: domains, or ["average"]."""
        if self.per_domain:
            return [self.names[d] for d in self.active if self.bad[d] == 0]
        return [] if self.bad else ["average"]


def _selected(epoch: int, per_domain: bool) -> str:
    """The selected state, as the log names it. A stage that keeps each domain's best
    (`select="domain"`) ends on a state no epoch line showed (each domain at its own best
    epoch), so its validation AUC is not any epoch's: the line must not pin it to one."""
    if per_domain:
        return f"selected state (each domain at its own best epoch, the latest {epoch})"
    return f"best epoch {epoch}"


def _diverged(what: str) -> TrainingDiverged:
    return TrainingDiverged(
        f"training diverged: {what}. Use a smaller learning rate (--set lr=...) or check the "
        "hyperparameters; no result was written for this run."
    )


def _aucs(metrics: dict) -> str:
    """"val auc x, test auc y" (without the test split when it was not evaluated)."""
    out = f"val auc {_fmt(metrics['val']['auc_mean'])}"
    return out + (f", test auc {_fmt(metrics['test']['auc_mean'])}" if metrics["test"] else "")


def _fmt(x: float | None) -> str:
    return "  n/a " if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.4f}"


def stderr_log(msg: str) -> None:
    """A progress message, through logging (logger "mdrbench.trainer"; the CLI prints INFO
    messages on stderr unless -q)."""
    _log.info(msg)


def result_filename(record: dict) -> str:
    """`<dataset>__<model>__<method>__seed<seed>.json` (one file per run; the rule is
    `mdrbench.results.result_stem`)."""
    from mdrbench.results import result_stem

    d = record
    return f"{result_stem(d['dataset']['name'], d['model'], d['method'], d['seed'])}.json"
