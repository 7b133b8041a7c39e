"""The learning-framework interface: how a model's parameters are trained across domains.

A framework wraps any `nn.Module` whose `forward(batch)` returns logits; it never edits the
model and never asks what model it is. It works on named parameter dicts
(`dict(model.named_parameters())`) and evaluates a domain with its own parameters through
`torch.func.functional_call(model, params, (batch,))`, so the model's own parameters stay
as they are. The trainer knows frameworks only through this class:

    for stage in fw.stages():                  # most frameworks: one stage
        fw.begin_stage(stage)
        for epoch ...:                         # early stopping, driven by the trainer
            fw.train_epoch(epoch, domains)     # the framework's training, its optimizers
            fw.predict(val)                    # params_for_domain(d) for each domain d
            fw.state_dict() / fw.domain_state(d)   # the best state, saved to disk

A stage selects its best state on the average validation AUC (`select="mean"`) or, for
per-domain parameter sets (fine-tuning, separate models), each domain on its own validation
AUC (`select="domain"`). The tools below (batches, loss, optimizers with sparse embedding
updates, the specific-parameter rule) are what issue 4's frameworks (DN, DR, MAMDR, MAML,
Reptile, MLDG, PCGrad, weighted loss) are built from.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mdrbench.config import (
    FrameworkConfig,
    OptimizerName,
    ParamRule,
    TrainConfig,
    param_rule,
)
from mdrbench.data import MDRData, Split
from mdrbench.errors import UserError
from mdrbench.frameworks.params import DomainOffsets, Params
from mdrbench.registry import Registry

FRAMEWORKS: Registry[type[Framework]] = Registry("framework")

# Stage name -> what trains, predicts and keeps states in that stage instead of the framework
# (`Framework.stage_runner`): finetune.py registers `DomainFinetune` as "finetune". It is
# built from this module's tools, so this module finds it here rather than importing it.
STAGE_RUNNERS: Registry[Callable[[Framework, Stage], Any]] = Registry("stage runner")


@dataclass(frozen=True)
class Stage:
    """A phase of training with its own early stopping.

    select: "mean" = keep the state of the best average validation AUC (`state_dict`);
            "domain" = keep each domain's best (`domain_state(d)`), a domain stops training
            once it has not improved for `patience` epochs.
    max_epochs: None = the run's `epochs` (0 there: no cap, early stopping ends it).
    keep_start: False = only states this stage trained are candidates (the authors' finetune
            stage: Keras ModelCheckpoint saves after an epoch, never before the first).
    min_delta: Keras EarlyStopping's: patience counts epochs that did not beat the best by
            more than this (the best state itself is any strictly better epoch).
    """

    name: str
    select: str = "mean"
    max_epochs: int | None = None
    keep_start: bool = True  # the previous stage's result is this stage's first candidate
    min_delta: float = 0.0  # a gain below this does not reset the patience counter


@dataclass
class EpochStats:
    loss: float = math.nan  # mean training loss over the epoch's samples
    samples: int = 0  # training rows processed (a row seen twice counts twice)
    domain_loss: dict[int, float] = field(default_factory=dict)


@dataclass
class Context:
    """What the trainer hands a framework."""

    data: MDRData
    train: TrainConfig
    device: torch.device
    generator: torch.Generator  # seeded; every shuffle draws from it (determinism)
    log: Callable[[str], None] = lambda msg: None
    progress_every: float = 30.0  # seconds between in-epoch progress lines
    _last_progress: float = field(default_factory=time.monotonic)

    def progress(self, msg: str) -> None:
        """An in-epoch progress line, at most one per `progress_every` seconds."""
        now = time.monotonic()
        if now - self._last_progress >= self.progress_every:
            self._last_progress = now
            self.log(msg)


@dataclass
class FinetuneOptions(FrameworkConfig):
    """The finetune stage that ends every published MAMDR, DN, MAML and Reptile config
    (model names ending in `_finetune`; run.py `main` then calls
    `model.separate_train_val_test(init_parms=False)` on the best checkpoint)."""

    finetune: bool = True  # end with the finetune stage (false: the pure algorithm)
    finetune_lr: float = 1e-3  # authors: SGD, lr 0.001
    finetune_optimizer: OptimizerName = "sgd"  # sgd | adam | adagrad (authors: plain SGD)
    finetune_params: ParamRule = "all"  # which weights each domain finetunes (authors: all)
    finetune_epochs: int = 0  # most finetune epochs; 0 = no cap (authors: epoch 99999)
    finetune_keep_start: bool = False  # the state before finetuning is a candidate too
    finetune_min_delta: float = 1e-4  # Keras EarlyStopping min_delta (authors: 1e-4)


# ----------------------------------------------------------------------------- parameter rules

_EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)


def embedding_param_names(model: nn.Module) -> set[str]:
    """Names of the weights of the model's embedding tables."""
    return {
        f"{mod_name}.{p_name}" if mod_name else p_name
        for mod_name, mod in model.named_modules()
        if isinstance(mod, _EMBEDDING_TYPES)
        for p_name, _ in mod.named_parameters(recurse=False)
    }


def sparse_param_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get sparse gradients (embeddings with sparse=True)."""
    return {
        f"{mod_name}.{p_name}" if mod_name else p_name
        for mod_name, mod in model.named_modules()
        if isinstance(mod, _EMBEDDING_TYPES) and mod.sparse
        for p_name, _ in mod.named_parameters(recurse=False)
    }


def set_sparse_embeddings(model: nn.Module, sparse: bool) -> int:
    """Switch every embedding table of any model to sparse (or dense) gradients."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, _EMBEDDING_TYPES):
            mod.sparse = sparse
            n += 1
    return n


def specific_param_names(model: nn.Module, rule: str) -> list[str]:
    """Domain-specific parameters by a rule over names (FrameworkConfig.specific_params)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    parsed = param_rule(rule)
    if parsed == "dense":
        emb = embedding_param_names(model)
        return [n for n in names if n not in emb]
    if parsed == "all":
        return names
    if parsed == "none":
        return []
    return [n for n in names if parsed.search(n)]


def clone_params(params: Mapping[str, Tensor], names: Sequence[str] | None = None) -> Params:
    """Leaf copies (requires_grad=True) of `params` (or of the `names` among them)."""
    names = list(params) if names is None else names
    return {n: params[n].detach().clone().requires_grad_(True) for n in names}


# ----------------------------------------------------------------------------- optimizers

_DENSE_OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
}


def l2_penalties(model: nn.Module) -> dict[str, float]:
    """{parameter name: lambda} of the model's L2 penalties (Keras `l2(lambda)`: lambda *
    sum(w^2) over the whole tensor, in the loss): what its `l2_penalties()` declares
    (registered models: `MDRModel.l2_penalties`), trainable parameters with lambda > 0
    only; {} for a module that declares none."""
    declared = getattr(model, "l2_penalties", None)
    if not callable(declared):
        return {}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {n: float(lam) for n, lam in declared().items() if lam > 0 and n in trainable}


class _Adam(torch.optim.Adam):
    """torch's Adam with TF1's epsilon: `tf.train.AdamOptimizer` (the authors' optimizer)
    and torch's `SparseAdam` add epsilon to sqrt(v) before the bias correction,
    lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps), torch's Adam after it; the two are
    the same update when torch's epsilon is eps / sqrt(1 - b2^t), which each parameter's
    group gets before its step (one group per parameter: each has its own t). It matters
    where a gradient is as small as eps, e.g. the rows a batch does not touch under a
    table's L2 (2 lambda w ~ 2e-9). Fused (one pass over each tensor) where torch has a
    fused kernel for the device, else foreach."""

    def __init__(self, params: Sequence[Tensor], decay: Sequence[float], lr: float, **kw):
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        groups = [{"params": [p], "weight_decay": wd} for p, wd in zip(params, decay)]
        kw.setdefault("eps", 1e-8)
        super().__init__(groups, lr=lr, fused=fused or None, foreach=None if fused else True, **kw)
        self.tf_eps = kw["eps"]
        self.steps = [0] * len(groups)  # each parameter's t, counted as torch counts it

    @torch.no_grad()
    def step(self, closure=None):
        for i, group in enumerate(self.param_groups):
            if group["params"][0].grad is not None:
                self.steps[i] += 1
                b2 = group["betas"][1]
                group["eps"] = self.tf_eps / math.sqrt(1.0 - b2 ** self.steps[i])
        return super().step(closure)


class _SparseAdam(torch.optim.Optimizer):
    """torch's `SparseAdam` (the lazy Adam: only the rows a batch touches move), the same
    arithmetic in the same order, so bit-identical to it (tests/test_frameworks.py), on the
    coalesced gradient's rows of dense moments: `index_select` / `index_copy_` /
    `index_add_` instead of sparse tensors' `sparse_mask` and sparse additions. A step
    costs about half of torch's (3.6 against 6.5 ms for three 40,000 x 128 tables and 1,024
    ids each, one thread): the optimizer is a third of a small model's training step
    (docs/benchmarks.md). torch (optim/sparse_adam.py): m += (1 - b1)(g - m); v += (1 -
    b2)(g^2 - v); w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps), on those rows."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            (b1, b2), eps, lr = group["betas"], group["eps"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError("_SparseAdam takes sparse gradients only")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                grad = p.grad.coalesce()
                rows, g = grad._indices()[0], grad._values()
                if g.numel() == 0:
                    continue
                m, v = state["exp_avg"], state["exp_avg_sq"]
                old = m.index_select(0, rows)
                m_new = g.sub(old).mul_(1 - b1).add_(old)  # torch: upd + old (its numer)
                m.index_copy_(0, rows, m_new)
                old = v.index_select(0, rows)
                v_new = g.pow(2).sub_(old).mul_(1 - b2).add_(old)
                v.index_copy_(0, rows, v_new)
                denom = v_new.sqrt_().add_(eps)
                t = state["step"]
                step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                p.index_add_(0, rows, m_new.div_(denom).mul_(-step_size))
        return None


class Optimizer:
    """One optimizer over a named parameter dict, splitting sparse embedding tables off.

    Adam does not take sparse gradients: embedding tables with sparse gradients go to
    SparseAdam (`_SparseAdam`, torch's update, faster; moments updated only on the rows a
    batch touches: the "lazy Adam" of large recommenders), the rest to Adam (`_Adam`:
    TF1's epsilon, fused). SGD and Adagrad take sparse gradients themselves.

    `weight_decay` (name -> coefficient) adds coefficient * w to a parameter's gradient
    before the step (torch's L2 `weight_decay`, not AdamW's): a Keras `l2(lambda)` penalty
    is coefficient 2 lambda (`Framework.make_optimizer`). Not for sparse tables.
    """

    def __init__(
        self,
        params: Mapping[str, Tensor],
        sparse_names: set[str] | frozenset[str] = frozenset(),
        name: str = "adam",
        lr: float = 1e-3,
        weight_decay: Mapping[str, float] | None = None,
        **kwargs: Any,
    ):
        if name not in _DENSE_OPTIMIZERS:
            raise UserError(
                f"unknown optimizer '{name}'; valid optimizers: {', '.join(_DENSE_OPTIMIZERS)}"
            )
        self.params = dict(params)
        decay = {n: wd for n, wd in (weight_decay or {}).items() if n in self.params and wd}
        if decay.keys() & set(sparse_names):
            raise ValueError(f"weight decay on sparse tables: {sorted(decay.keys() & sparse_names)}")
        sparse = [p for n, p in self.params.items() if n in sparse_names]
        dense = [n for n in self.params if n not in sparse_names]
        self.optimizers: list[torch.optim.Optimizer] = []
        if name == "adam":
            if dense:
                self.optimizers.append(
                    _Adam([self.params[n] for n in dense], [decay.get(n, 0.0) for n in dense],
                          lr=lr, **kwargs)  # fmt: skip
                )
            if sparse:
                self.optimizers.append(_SparseAdam(sparse, lr=lr))
        elif dense or sparse:
            groups = [{"params": sparse}] if sparse else []
            for wd in sorted(set(decay.get(n, 0.0) for n in dense)):
                ps = [self.params[n] for n in dense if decay.get(n, 0.0) == wd]
                groups.append({"params": ps, "weight_decay": wd})
            self.optimizers.append(_DENSE_OPTIMIZERS[name](groups, lr=lr, **kwargs))

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()


class LossMeter:
    """Sums of loss x rows, kept as tensors (no device sync per batch)."""

    def __init__(self) -> None:
        self.total: dict[int, Tensor] = {}
        self.rows: dict[int, int] = {}

    def add(self, loss: Tensor, rows: int, domain: int = -1) -> None:
        t = loss.detach() * rows
        self.total[domain] = self.total[domain] + t if domain in self.total else t
        self.rows[domain] = self.rows.get(domain, 0) + rows

    def stats(self) -> EpochStats:
        n = sum(self.rows.values())
        if not n:
            return EpochStats()
        values = {d: float(t) / self.rows[d] for d, t in self.total.items()}
        loss = sum(values[d] * self.rows[d] for d in values) / n
        return EpochStats(
            loss=loss, samples=n, domain_loss={d: v for d, v in values.items() if d >= 0}
        )


# ----------------------------------------------------------------------------- the interface


class Framework:
    """Base of every learning framework. Subclasses set `Config` (their hyperparameters, a
    FrameworkConfig subclass), `priority` (the highest is "the best available", e.g. for
    `mdrbench quickstart`) and `summary`, and implement `train_epoch`."""

    Config: ClassVar[type[FrameworkConfig]] = FrameworkConfig
    priority: ClassVar[int] = 0
    summary: ClassVar[str] = ""

    def __init__(self, model: nn.Module, ctx: Context, cfg: FrameworkConfig | None = None):
        self.model = model
        self.ctx = ctx
        self.cfg = dataclasses.replace(cfg) if cfg is not None else self.Config()
        self.sparse_names = sparse_param_names(model)
        self.l2 = l2_penalties(model)  # name -> lambda (Keras l2): see make_optimizer
        both = sorted(self.l2.keys() & self.sparse_names)
        if both:
            raise UserError(
                f"an L2 penalty over a whole table ({', '.join(both)}) gives every row a "
                "gradient at every step, which sparse embedding updates cannot apply: use "
                "--set sparse_embeddings=false (the authors' dense Adam), or emb_l2=0 (and "
                "linear_l2=0) for the sparse fast path"
            )
        self.stage: Stage | None = None

    # -- what the trainer calls -------------------------------------------------------

    def stages(self) -> list[Stage]:
        return [Stage("train"), *self.finetune_stages()]

    def finetune_stages(self) -> list[Stage]:
        """[the finetune stage] when the config has `finetune` set (`FinetuneOptions`)."""
        cfg = self.cfg
        if not getattr(cfg, "finetune", False):
            return []
        return [
            Stage(
                "finetune",
                select="domain",
                max_epochs=cfg.finetune_epochs or None,
                keep_start=cfg.finetune_keep_start,
                min_delta=cfg.finetune_min_delta,
            )
        ]

    def begin_stage(self, stage: Stage) -> None:
        self.stage = stage

    def stage_runner(self, stage: Stage) -> Any:
        """What trains, predicts and keeps states in `stage` (after `begin_stage`): the
        framework itself, or for the finetune stage a `finetune.DomainFinetune` over it."""
        if stage.name == "finetune" and getattr(self.cfg, "finetune", False):
            return STAGE_RUNNERS.get("finetune")(self, stage)
        return self

    def finetune_start(self, names: Sequence[str]) -> Any:
        """The per-domain offsets (`DomainOffsets`) the finetune stage trains for `names`,
        each domain starting at the trained parameters (frameworks with per-domain
        parameters override it: MAMDR hands over its theta_d, theta_S + theta_d)."""
        return DomainOffsets(self.named_params(), names, self.sparse_names, self.n_domains)

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        """One epoch of training. `domains`: the domains still training (all, except in a
        `select="domain"` stage, where domains that stopped improving drop out)."""
        raise NotImplementedError

    def params_for_domain(self, d: int) -> Params | None:
        """The parameters domain `d` is evaluated with; None = the model's own."""
        return None

    @contextmanager
    def domain_params(self, d: int) -> Iterator[Params | None]:
        """Domain `d`'s parameters for the length of a `with` block (what `predict` uses):
        by default `params_for_domain(d)`. Frameworks whose domains differ from the model by
        offsets (MAMDR, the finetune stage) write them into the model for the block and take
        them out after, exactly, instead of building a copy of every table per domain."""
        yield self.params_for_domain(d)

    @torch.no_grad()
    def predict(
        self,
        split: Split,
        batch_size: int | None = None,
        domain_params: Callable[[int], AbstractContextManager] | None = None,
    ) -> np.ndarray:
        """Click probabilities (float64) for every row of `split`, each domain evaluated
        with `domain_params(d)` (default `self.domain_params`); the model is left in eval
        mode."""
        self.model.eval()
        bs = batch_size or self.ctx.train.eval_batch_size
        domain_params = domain_params or self.domain_params
        out = torch.empty(len(split), dtype=torch.float64)
        for d in range(split.n_domains):
            rows = split.rows(d)
            if rows.stop == rows.start:
                continue
            with domain_params(d) as params:
                for i in range(rows.start, rows.stop, bs):
                    sl = slice(i, min(i + bs, rows.stop))
                    logits = self.forward(split.take(sl), params)
                    out[sl] = torch.sigmoid(logits.double()).cpu()
        return out.numpy()

    def state_dict(self) -> dict[str, Any]:
        """Everything predictions depend on, as the tensors themselves (references, not
        copies: a copy beside the live state is what would set a run's peak memory at
        Amazon's id space). Save or copy it before training goes on; the trainer writes it
        to disk at once (`torch.save`)."""
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put a saved state back. `state` is the caller's to give away: a framework may
        keep its tensors rather than copy them."""
        self.model.load_state_dict(state["model"])

    def domain_state(self, d: int) -> Any:
        """Domain `d`'s own parameters (for `select="domain"` stages); references, as
        `state_dict`."""
        raise NotImplementedError(f"{type(self).__name__} has no per-domain state")

    def load_domain_state(self, d: int, state: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no per-domain state")

    def n_parameters(self) -> int:
        """Trainable numbers held for prediction (per-domain copies included)."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    # -- tools for subclasses ---------------------------------------------------------

    @property
    def data(self) -> MDRData:
        return self.ctx.data

    @property
    def n_domains(self) -> int:
        return self.ctx.data.info.n_domains

    def named_params(self) -> Params:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def specific_names(self) -> list[str]:
        return specific_param_names(self.model, self.cfg.specific_params)

    def forward(self, batch: dict[str, Tensor], params: Mapping[str, Tensor] | None = None):
        if params is None:
            return self.model(batch)
        return functional_call(self.model, dict(params), (batch,))

    def loss(self, batch: dict[str, Tensor], params: Mapping[str, Tensor] | None = None):
        logits = self.forward(batch, params)
        return F.binary_cross_entropy_with_logits(logits, batch["label"])

    def batches(self, domain: int | None = None, split: Split | None = None) -> Iterator[dict]:
        """Shuffled training batches of one domain (through the run's `shuffle_buffer`),
        or of all domains, mixed."""
        split = split or self.data.train
        t = self.ctx.train
        return split.batches(t.batch_size, domain, self.ctx.generator, t.shuffle_buffer)

    def domain_order(self, shuffle: bool) -> list[int]:
        if not shuffle:
            return list(range(self.n_domains))
        return torch.randperm(self.n_domains, generator=self.ctx.generator).tolist()

    def make_optimizer(
        self,
        params: Mapping[str, Tensor],
        name: str = "adam",
        lr: float | None = None,
        penalty: bool = True,
        **kw,
    ) -> Optimizer:
        """Optimizer over named params; sparse embedding tables updated row-wise.

        `penalty`: the optimizer applies the model's L2 penalties (`self.l2`) as weight
        decay 2 lambda (Keras' l2(lambda) adds 2 lambda w to the gradient): exact for an
        optimizer that steps on one batch's loss gradient. An optimizer that steps with a
        gradient the framework builds (an outer step, a sum over passes) takes
        `penalty=False`, and the framework adds the penalty's gradient to what it builds
        (`add_penalty`)."""
        lr = self.ctx.train.lr if lr is None else lr
        decay = {n: 2.0 * lam for n, lam in self.l2.items()} if penalty else None
        return Optimizer(params, self.sparse_names, name=name, lr=lr, weight_decay=decay, **kw)

    def add_penalty(
        self,
        grads: dict[str, Tensor | None],
        times: float = 1.0,
        params: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor | None]:
        """`grads` (in place; returned) plus `times` x the gradient of the model's L2
        penalties at `params` (default: the model's own): 2 lambda w per penalised
        parameter, once per batch of a pass over which `grads` is a sum (`times` = the
        batches; the parameters do not move during a pass)."""
        params = self.named_params() if params is None else params
        for n, lam in self.l2.items():
            if n not in grads:
                continue
            g = params[n].detach() * (2.0 * lam * times)
            if grads[n] is not None:
                g += grads[n]
            grads[n] = g
        return grads

    @contextmanager
    def model_mode(self, train: bool) -> Iterator[None]:
        """The model in training (dropout on, normalisation on batch statistics) or
        evaluation mode for a `with` block; every module's own mode put back after it,
        on an error too. The framework switches the mode, the model is not edited: what
        a Keras `K.function` without the learning phase does (it stays False)."""
        saved = [(m, m.training) for m in self.model.modules()]
        self.model.train(train)
        try:
            yield
        finally:
            for m, was in saved:
                m.training = was

    def step(
        self,
        opt: Optimizer,
        batch: dict[str, Tensor],
        params: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """zero_grad, loss, backward, step; returns the (detached) loss."""
        opt.zero_grad()
        loss = self.loss(batch, params)
        loss.backward()
        opt.step()
        return loss.detach()
