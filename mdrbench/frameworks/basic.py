"""The traditional learning frameworks: joint, alternate, alternate + finetune, separate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mdrbench.config import FrameworkConfig
from mdrbench.frameworks.base import (
    FRAMEWORKS,
    EpochStats,
    Framework,
    LossMeter,
    Optimizer,
    Params,
    Stage,
    clone_params,
)


@FRAMEWORKS("joint")
class Joint(Framework):
    """One model; each batch mixes rows of all domains (one shuffle over the union)."""

    summary = "one model, batches mixed over all domains"

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        self.opt = self.make_optimizer(self.named_params())

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        n = len(self.data.train)
        for batch in self.batches():
            meter.add(self.step(self.opt, batch), len(batch["label"]))
            self.ctx.progress(f"epoch {epoch}: {sum(meter.rows.values()):,}/{n:,} rows")
        return meter.stats()


@FRAMEWORKS("alternate")
class Alternate(Framework):
    """One model trained domain after domain: every batch of domain 0, then of domain 1, ...
    (the paper's default for the baselines)."""

    summary = "one model, domain after domain each epoch"

    @dataclass
    class Config(FrameworkConfig):
        shuffle_domains: bool = False  # a new domain order every epoch (seeded)

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        self.opt = self.make_optimizer(self.named_params())

    def train_domain(
        self, d: int, opt: Optimizer, meter: LossMeter, params: Params | None = None
    ) -> None:
        """One pass over domain d's training rows."""
        for batch in self.batches(d):
            meter.add(self.step(opt, batch, params), len(batch["label"]), d)

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        order = [d for d in self.domain_order(self.cfg.shuffle_domains) if d in set(domains)]
        for i, d in enumerate(order):
            self.train_domain(d, self.opt, meter)
            self.ctx.progress(
                f"epoch {epoch} domain {i + 1}/{len(order)} '{self.data.info.domain_names[d]}' done"
            )
        return meter.stats()


@FRAMEWORKS("finetune")
class Finetune(Alternate):
    """Alternate training, then per domain a copy of the domain-specific parameters
    (`specific_params`, default: all but the embedding tables, which stay shared and frozen)
    fine-tuned on that domain's rows; each domain keeps its best epoch on its own
    validation AUC. Evaluation uses each domain's copy."""

    summary = "alternate, then a copy fine-tuned per domain"
    priority = 10

    @dataclass
    class Config(Alternate.Config):
        finetune_epochs: int = 0  # most fine-tuning epochs; 0 = the run's `epochs`
        finetune_lr: float = 0.0  # 0 = the run's `lr`

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        self.frozen: Params = {}
        self.copies: list[Params] = []
        self.opts: list[Optimizer] = []

    def stages(self) -> list[Stage]:
        return [
            Stage("alternate"),
            Stage("finetune", select="domain", max_epochs=self.cfg.finetune_epochs or None),
        ]

    def begin_stage(self, stage: Stage) -> None:
        super().begin_stage(stage)
        if stage.name != "finetune":
            return
        names = self.specific_names()
        params = self.named_params()
        self.frozen = {n: p.detach() for n, p in params.items()}  # shared, not trained
        self.copies = [clone_params(params, names) for _ in range(self.n_domains)]
        lr = self.cfg.finetune_lr or None
        self.opts = [self.make_optimizer(c, lr=lr) for c in self.copies]

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        if not self.copies:
            return super().train_epoch(epoch, domains)
        meter = LossMeter()
        for d in domains:
            self.train_domain(d, self.opts[d], meter, self.params_for_domain(d))
        return meter.stats()

    def params_for_domain(self, d: int) -> Params | None:
        if not self.copies:
            return None
        return {**self.frozen, **self.copies[d]}

    def state_dict(self):
        state = super().state_dict()
        state["copies"] = [{n: t.detach().clone() for n, t in c.items()} for c in self.copies]
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for d, c in enumerate(state.get("copies", [])):
            self.load_domain_state(d, c)

    def domain_state(self, d: int) -> Params:
        return {n: t.detach().clone() for n, t in self.copies[d].items()}

    def load_domain_state(self, d: int, state: Params) -> None:
        for n, t in state.items():
            self.copies[d][n].data.copy_(t)

    def n_parameters(self) -> int:
        base = super().n_parameters()
        return base + sum(t.numel() for c in self.copies[1:] for t in c.values())


@FRAMEWORKS("separate")
class Separate(Framework):
    """One parameter set per domain, each trained on its own domain only (all start from
    the same initialisation); each domain keeps its best epoch on its own validation AUC.
    Memory: domains x the whole model (embedding tables included)."""

    summary = "one model per domain"

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        self.sets: list[Params] = []
        self.opts: list[Optimizer] = []

    def stages(self) -> list[Stage]:
        return [Stage("separate", select="domain")]

    def begin_stage(self, stage: Stage) -> None:
        super().begin_stage(stage)
        params = self.named_params()
        self.sets = [clone_params(params) for _ in range(self.n_domains)]
        self.opts = [self.make_optimizer(s) for s in self.sets]

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        for d in domains:
            for batch in self.batches(d):
                meter.add(self.step(self.opts[d], batch, self.sets[d]), len(batch["label"]), d)
        return meter.stats()

    def params_for_domain(self, d: int) -> Params:
        return self.sets[d]

    def state_dict(self):
        return {"sets": [self.domain_state(d) for d in range(len(self.sets))]}

    def load_state_dict(self, state):
        for d, s in enumerate(state["sets"]):
            self.load_domain_state(d, s)

    def domain_state(self, d: int) -> Params:
        return {n: t.detach().clone() for n, t in self.sets[d].items()}

    def load_domain_state(self, d: int, state: Params) -> None:
        for n, t in state.items():
            self.sets[d][n].data.copy_(t)

    def n_parameters(self) -> int:
        return sum(t.numel() for s in self.sets for t in s.values()) or super().n_parameters()
