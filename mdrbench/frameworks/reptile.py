"""Reptile (Nichol et al. 2018), a domain as a task. Authors: model_zoo/reptile.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mdrbench.config import OptimizerName
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
)

# ----------------------------------------------------------------------------- Reptile


@FRAMEWORKS("reptile")
class Reptile(MetaFramework):
    """Reptile (Nichol et al. 2018), a domain as a task: for each domain in a new random
    order, theta~ <- theta, one pass over the domain with the inner optimizer, then
    theta <- theta + beta (theta~ - theta) (authors' code: meta learning rate 0.1). Unlike
    DN, theta is updated after every domain, so the inner loop never crosses domains."""

    summary = "Reptile: one pass per domain, outer step beta after each domain"
    priority = 5

    @dataclass
    class Config(FinetuneOptions):
        alpha: float = 1e-3  # inner learning rate
        beta: float = 0.1  # outer learning rate (authors' code: 0.1)
        inner_optimizer: OptimizerName = "adam"
        outer_optimizer: OptimizerName = "sgd"

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        _check_positive(self.cfg, "alpha", "beta")
        _check_optimizer(self.cfg, "inner_optimizer", "outer_optimizer")
        params = self.named_params()
        self.inner = self.make_optimizer(params, self.cfg.inner_optimizer, self.cfg.alpha)
        self.outer = self.make_optimizer(  # steps with theta - theta~: no L2 of its own
            params, self.cfg.outer_optimizer, self.cfg.beta, penalty=False
        )

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        order = self.epoch_order(domains)
        for i, d in enumerate(order):
            snap = self.snapshot()
            self.train_pass(d, self.inner, meter, snap=snap)
            self.outer_step(self.outer, snap)
            self.progress(epoch, "domain", i, len(order), d)
        return meter.stats()
