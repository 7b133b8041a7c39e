"""Every hyperparameter of a training run, as typed dataclasses, and `--set name=value`.

A run has three sections, each a dataclass with the paper's defaults
(../shared/docs/benchmark-spec.md, "Training protocol"):

- `train`: `TrainConfig` below (optimizer, batch, epochs, early stopping, seed, device, ...);
- `model`: the chosen model's `Config` (a subclass of `ModelConfig`: emb_dim, dropout, and
  the model's own layer sizes);
- `framework`: the chosen learning framework's `Config` (a subclass of `FrameworkConfig`).

A model or framework declares its own hyperparameters next to its code, so adding one
(issue 4's frameworks, a user's model) never touches this file. `--set name=value` finds
`name` in whichever section has it (`section.name` also works), converts `value` to the
field's declared type and refuses a wrong name or type with a message that says what is
valid. Pure Python: no torch, so the CLI can parse options before importing it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from mdrbench.errors import UserError

# ----------------------------------------------------------------------------- value types
# A field whose values are a fixed set is typed `Literal[...]`; one with a rule is
# `Annotated[str, check]`: `convert` refuses anything else when `--set` (or a grid, a
# profile, a recorded config) gives it, before any data is loaded.


def param_rule(rule: str, name: str = "specific_params") -> str | re.Pattern:
    """A rule over parameter names (`specific_params` and the like): "dense", "all",
    "none", or "re:REGEX" (the compiled pattern is returned)."""
    if rule in ("dense", "all", "none"):
        return rule
    if isinstance(rule, str) and rule.startswith("re:"):
        try:
            return re.compile(rule[3:])
        except re.error as exc:
            raise UserError(f"{name}: bad regular expression {rule[3:]!r}: {exc}") from None
    raise UserError(f"{name}: expected 'dense', 'all', 'none' or 're:REGEX', got {rule!r}")


_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


def device_spec(spec: str, name: str = "device") -> str:
    """A device a run may ask for: auto (cuda when present, else cpu), cpu, cuda, cuda:N,
    mps, xpu, xpu:N. Whether this machine has it is checked where the run starts."""
    if not _DEVICE.fullmatch(spec):
        raise UserError(f"{name}: unknown device {spec!r}; valid: auto, cpu, cuda, cuda:N, mps, xpu")
    return spec


ParamRule = Annotated[str, param_rule]
Device = Annotated[str, device_spec]
OptimizerName = Literal["sgd", "adam", "adagrad"]


@dataclass
class TrainConfig:
    """Options of the training loop, shared by every model and framework."""

    lr: float = 1e-3  # Adam learning rate (paper: 1e-3)
    batch_size: int = 1024  # paper: 1024
    eval_batch_size: int = 16384  # rows per forward pass at evaluation (no effect on numbers)
    # most epochs of a stage; 0 = no cap: early stopping ends every stage (the authors:
    # epoch 99999, patience 3). A stage stopped by a cap says so in its log and result.
    epochs: int = 0
    patience: int = 3  # epochs without a better average validation AUC before stopping
    seed: int = 0
    device: Device = "auto"  # "auto" (cuda when present, else cpu), "cpu", "cuda", "cuda:1", ...
    # Embedding tables get sparse gradients and only the rows a batch touches are updated
    # (SparseAdam); False: dense gradients and plain Adam over whole tables (DeepCTR's way).
    sparse_embeddings: bool = True
    threads: int = 0  # torch.set_num_threads when > 0
    # Rows of a domain are shuffled through a buffer of this many rows (tf.data's
    # shuffle(buffer): the authors' shuffle_buffer_size 10000, over files in a seeded
    # random order as the built splits are); 0: a uniform shuffle of the domain's rows.
    shuffle_buffer: int = 0



@dataclass
class ModelConfig:
    """Hyperparameters every registered model has; models subclass it with their own."""

    emb_dim: int = 128  # paper: 128
    dropout: float = 0.5  # paper: 0.5
    # Embedding tables' initialiser: "normal" = N(0, init_std) (DeepCTR 0.9.0's SparseFeat
    # default, stddev 1e-4) | "uniform" = U(-init_std, init_std) (Keras layers.Embedding's
    # default, +-0.05: the authors' STAR).
    emb_init: Literal["normal", "uniform"] = "normal"
    init_std: float = 1e-4  # the normal's std, or the uniform's bound
    # Keras l2(emb_l2) on each embedding table: emb_l2 * sum(w^2) over the whole table is
    # added to the loss, so every row gets 2 * emb_l2 * w at every step (DeepCTR's
    # l2_reg_embedding, 1e-5 in the authors' models). Needs sparse_embeddings=false.
    emb_l2: float = 0.0


@dataclass
class FrameworkConfig:
    """Hyperparameters every learning framework has; frameworks subclass it with their own."""

    # Which parameters are domain-specific (per-domain copies or offsets), as a rule over
    # parameter names: "dense" = every parameter that is not an embedding table (default:
    # copies of tables would cost domains x users x emb_dim floats), "all", "none", or
    # "re:REGEX" (names matching REGEX, re.search).
    specific_params: ParamRule = "dense"


@dataclass
class RunConfig:
    """The resolved configuration of one run: what a result file saves under "config"."""

    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig | None = field(default_factory=ModelConfig)  # None: a user's model
    framework: FrameworkConfig = field(default_factory=FrameworkConfig)
    # which published profile was applied and what it set (baselines/paper_configs.json)
    profile: dict = field(default_factory=lambda: {"name": "none", "applied": {}})

    def to_dict(self) -> dict:
        return {
            "train": dataclasses.asdict(self.train),
            "model": {} if self.model is None else dataclasses.asdict(self.model),
            "framework": dataclasses.asdict(self.framework),
            "profile": json.loads(json.dumps(self.profile)),
        }

    def load_dict(self, data: Mapping[str, Any], what: str = "config") -> RunConfig:
        """Set every value of a recorded `to_dict()` on these sections (in place; returns
        self), each converted to its field's type. A section or name this run does not
        have is refused: the record was made by another model, method or version."""
        if not isinstance(data, Mapping):
            raise UserError(f"{what}: expected an object with train/model/framework sections")
        sections = self.sections()
        for sec_name, values in data.items():
            if sec_name == "profile":
                if isinstance(values, Mapping):
                    self.profile = dict(values)
                continue
            sec = sections.get(sec_name)
            if not isinstance(values, Mapping) or (sec is None and values):
                raise UserError(f"{what}: unexpected section '{sec_name}'")
            if sec is None:
                continue
            types_ = field_types(type(sec))
            for name, value in values.items():
                if name not in types_:
                    raise UserError(
                        f"{what}: '{sec_name}.{name}' is not a hyperparameter of this "
                        f"{sec_name} (recorded by another version?); valid: {', '.join(types_)}"
                    )
                setattr(sec, name, convert(value, types_[name], f"{what}: {sec_name}.{name}"))
        return self

    def sections(self) -> dict[str, Any]:
        secs = {"train": self.train, "model": self.model, "framework": self.framework}
        return {k: v for k, v in secs.items() if v is not None}


# ----------------------------------------------------------------------------- overrides


def parse_sets(items: Iterable[str]) -> dict[str, str]:
    """`["lr=0.01", "hidden=[64,32]"]` -> `{"lr": "0.01", "hidden": "[64,32]"}`."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"--set expects NAME=VALUE, got '{item}'")
        out[name] = value.strip()
    return out


def field_types(cls: type) -> dict[str, Any]:
    """Declared (resolved) types of a dataclass's fields, `Annotated` checks kept."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is Annotated:
        return type_name(typing.get_args(tp)[0])
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    args = ", ".join(type_name(a) for a in typing.get_args(tp))
    name = "list" if origin is list else getattr(origin, "__name__", str(origin))
    return f"{name}[{args}]"


def convert(value: Any, tp: Any, name: str = "value") -> Any:
    """`value` (a string from the command line, or a Python value) as type `tp`.

    Supports bool, int, float, str, list[T], tuple[T, ...] and Optional[T]. Raises
    UserError naming the expected type.
    """

    def bad() -> UserError:
        return UserError(f"{name}: expected {type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:  # a type, then checks that raise UserError
        out = convert(value, args[0], name)
        for check in args[1:]:
            check(out, name)
        return out
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise bad()
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(value, a, name)
            except UserError:
                pass
        raise bad()
    if origin in (list, tuple):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    raise bad() from None
            else:
                value = [v for v in (p.strip() for p in text.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise bad()
        inner = args[0] if args else str
        items = [convert(v, inner, name) for v in value]
        return items if origin is list else tuple(items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise bad() from None
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(str(value).strip())
        except ValueError:
            raise bad() from None
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad()


def apply_overrides(
    run: RunConfig,
    overrides: Mapping[str, Any],
    elsewhere: Mapping[str, str] | None = None,
) -> RunConfig:
    """Set `name=value` pairs on the sections of `run` (in place; returns it).

    `name` is a field of exactly one section, or `section.name`. `elsewhere` maps names that
    belong to other models/frameworks to who owns them, for a clearer error.
    """
    sections = run.sections()
    owners: dict[str, list[str]] = {}
    for sec_name, sec in sections.items():
        for f in dataclasses.fields(sec):
            owners.setdefault(f.name, []).append(sec_name)
    for key, value in overrides.items():
        sec_name, dot, name = key.rpartition(".")
        if dot:
            if sec_name not in sections:
                raise UserError(
                    f"--set {key}: unknown section '{sec_name}'; sections: {', '.join(sections)}"
                )
            where = [sec_name] if name in owners and sec_name in owners[name] else []
        else:
            where = owners.get(name, [])
        if not where:
            raise _unknown_setting(key, name, owners, elsewhere or {})
        if len(where) > 1:
            raise UserError(
                f"--set {key}: '{name}' is in sections {', '.join(where)}; "
                f"write e.g. {where[0]}.{name}=..."
            )
        sec = sections[where[0]]
        tp = field_types(type(sec))[name]
        setattr(sec, name, convert(value, tp, f"--set {key}"))
    return run


MAX_SEED = 2**32 - 1  # numpy, torch and CUDA all take it
MAX_FLOAT = 1e30  # torch keeps hyperparameters as float32 (max 3.4e38)


def check_values(run: RunConfig) -> None:
    """Refuse values no run can use, before any data is loaded: a float in any section that
    is not finite or is beyond +-MAX_FLOAT; a seed outside 0..MAX_SEED; in the model, a size (any int, or any int of a
    list such as `hidden`) below 1, a dropout outside [0, 1), an `init_std` not above 0, an
    L2 strength (`*_l2`) below 0."""
    for sec in run.sections().values():
        for f in dataclasses.fields(sec):
            v = getattr(sec, f.name)
            if isinstance(v, float) and not abs(v) <= MAX_FLOAT:  # inf and NaN too
                raise UserError(
                    f"{f.name} must be a finite number (at most {MAX_FLOAT:g}), got {v}"
                )
    if not 0 <= run.train.seed <= MAX_SEED:
        raise UserError(f"seed must be from 0 to {MAX_SEED}, got {run.train.seed}")
    m = run.model
    if m is None:
        return
    for f in dataclasses.fields(m):
        v = getattr(m, f.name)
        if f.name.endswith("dropout") and not 0 <= v < 1:
            raise UserError(f"{f.name} is a probability: from 0 up to (not including) 1, got {v}")
        if isinstance(v, int) and not isinstance(v, bool) and v < 1:
            raise UserError(f"{f.name} must be >= 1, got {v}")
        if isinstance(v, (list, tuple)) and any(isinstance(x, int) and x < 1 for x in v):
            raise UserError(f"{f.name}: every layer size must be >= 1, got {list(v)}")
    if not m.init_std > 0:
        raise UserError(f"init_std must be > 0, got {m.init_std}")
    for f in dataclasses.fields(m):
        if f.name.endswith("_l2") and not getattr(m, f.name) >= 0:
            raise UserError(f"{f.name} must be >= 0, got {getattr(m, f.name)}")


def _unknown_setting(key, name, owners, elsewhere) -> UserError:
    valid = sorted(owners)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    if name in elsewhere:
        msg = f"--set {key}: '{name}' is a hyperparameter of {elsewhere[name]}, not of this run."
    else:
        msg = f"--set {key}: unknown hyperparameter '{name}'"
        msg += f"; did you mean '{close[0]}'?" if close else "."
    return UserError(f"{msg} Valid names: {', '.join(valid)}")
