"""First-order MAML (Finn et al. 2017), a domain as a task. Authors: model_zoo/maml.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from mdrbench.config import OptimizerName
from mdrbench.errors import UserError
from mdrbench.frameworks.base import (
    FRAMEWORKS,
    EpochStats,
    FinetuneOptions,
    LossMeter,
)
from mdrbench.frameworks.passes import (
    MetaFramework,
    _check_optimizer,
    _check_positive,
    pass_gradient,
    split_domains,
)

# ----------------------------------------------------------------------------- MAML


@FRAMEWORKS("maml")
class MAML(MetaFramework):
    """First-order MAML (Finn et al. 2017; first-order as the authors' code), a domain as a
    task. Each domain's training rows are split once, at random (seeded), into a support
    set (`support_fraction`) and a query set (the rest). Each epoch, for each domain in a
    new random order: theta' <- theta after one pass over the support set with the inner
    optimizer; g <- mean over the query batches of the gradient at theta'; theta is
    restored and the outer optimizer steps with g."""

    summary = "first-order MAML: support-set pass, outer step with the query gradient"
    priority = 5

    @dataclass
    class Config(FinetuneOptions):
        alpha: float = 1e-3  # inner learning rate (authors' code: 1e-3)
        beta: float = 1e-3  # outer learning rate (authors' code: 1e-3)
        inner_optimizer: OptimizerName = "adam"
        outer_optimizer: OptimizerName = "adam"
        support_fraction: float = 0.2  # share of a domain's rows in its support set (authors: 0.2)

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        _check_positive(self.cfg, "alpha", "beta")
        _check_optimizer(self.cfg, "inner_optimizer", "outer_optimizer")
        if not 0.0 < self.cfg.support_fraction < 1.0:
            raise UserError(f"support_fraction must be in (0, 1), got {self.cfg.support_fraction}")
        params = self.named_params()
        self.inner = self.make_optimizer(params, self.cfg.inner_optimizer, self.cfg.alpha)
        self.outer = self.make_optimizer(params, self.cfg.outer_optimizer, self.cfg.beta)
        self.support: list[Tensor] = []
        self.query: list[Tensor] = []

    def begin_stage(self, stage) -> None:
        super().begin_stage(stage)
        self.support, self.query = split_domains(
            self.data.train, self.cfg.support_fraction, self.ctx.generator
        )

    def meta_step(self, d: int, meter: LossMeter) -> None:
        params = self.named_params()
        snap = self.snapshot(params)
        self.train_pass(d, self.inner, meter, snap=snap, rows=self.support[d])  # theta'
        self.outer.zero_grad()
        grads = pass_gradient(self, d, meter, self.query[d], mean=True)  # at theta'
        snap.restore()
        for n, p in params.items():
            p.grad = grads[n]
        self.outer.step()
        self.outer.zero_grad()

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        order = self.epoch_order(domains)
        for i, d in enumerate(order):
            self.meta_step(d, meter)
            self.progress(epoch, "domain", i, len(order), d)
        return meter.stats()
