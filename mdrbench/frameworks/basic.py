"""The traditional learning frameworks: joint, alternate, alternate + finetune, separate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mdrbench.config import FrameworkConfig
from mdrbench.frameworks.base import (
    FRAMEWORKS,
    EpochStats,
    FinetuneOptions,
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
    """One model trained domain after domain: every batch of one domain, then of the next,
    in a new random order each epoch as the authors' baselines (`shuffle_domains=false`:
    the fixed order 0, 1, ...); the paper's default for the baselines."""

    summary = "one model, domain after domain each epoch"

    @dataclass
    class Config(FrameworkConfig):
        # a new domain order every epoch, seeded (authors: DeepCTR/DeepMTLCTR/Star `train`
        # call random.shuffle(train_sequence) each epoch); false: domain 0, 1, ... always
        shuffle_domains: bool = True

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
    """The Alternate+Finetune baseline as the authors ran it (a `_finetune` model name on
    alternate training; run.py `main`, model_zoo/base_model.py
    `BaseModel.separate_train_val_test(init_parms=False)`): alternate training to early
    stopping, then the finetune stage (`FinetuneOptions`, finetune.DomainFinetune): each domain
    finetunes its own copy of every weight with SGD (lr 1e-3) and keeps its best epoch on
    its own validation AUC. mdrbench's earlier variant (dense weights only, Adam at the run's
    lr, the pre-finetune state a candidate) is
    `--set finetune_params=dense finetune_optimizer=adam finetune_lr=0.001 finetune_keep_start=true`."""

    summary = "alternate, then a copy fine-tuned per domain"
    priority = 10

    @dataclass
    class Config(FinetuneOptions):
        shuffle_domains: bool = True  # a new domain order every epoch (authors' code)


@FRAMEWORKS("separate")
class Separate(Framework):
    """One parameter set per domain, each trained on its own domain only (all start from
    the same initialisation); each domain keeps its best epoch on its own validation AUC
    and stops after `patience` epochs without a gain of `min_delta` (authors:
    model_zoo/base_model.py `BaseModel.separate_train_val_test`, Keras
    `EarlyStopping(min_delta=1e-4)` and `ModelCheckpoint(save_best_only)`). Each domain
    has its own Adam; the authors train the domains one after the other with one compiled
    Adam whose moments carry over from domain to domain (not matched: docs/fidelity.md).
    Memory: domains x the whole model (embedding tables included)."""

    summary = "one model per domain"

    @dataclass
    class Config(FrameworkConfig):
        min_delta: float = 1e-4  # Keras EarlyStopping min_delta (authors: 1e-4)

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        self.sets: list[Params] = []
        self.opts: list[Optimizer] = []

    def stages(self) -> list[Stage]:
        return [Stage("separate", select="domain", min_delta=self.cfg.min_delta)]

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
        return {n: t.detach() for n, t in self.sets[d].items()}  # references

    def load_domain_state(self, d: int, state: Params) -> None:
        for n, t in state.items():
            self.sets[d][n].data.copy_(t)

    def n_parameters(self) -> int:
        return sum(t.numel() for s in self.sets for t in s.values()) or super().n_parameters()
