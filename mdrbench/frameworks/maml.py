"""First-order MAML (Finn et al. 2017), a domain as a task. Authors: model_zoo/maml.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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
    task (authors: model_zoo/maml.py `MAML.train`, `build_meta_data_split`,
    `_make_meta_train_function`). Each epoch, for each domain in a new random order: its
    training rows are cut into a support set (`support_fraction`) and a query set, anew
    each epoch as the authors' take/skip (`passes.epoch_split`; `split_each_epoch=false`:
    one seeded random cut for the whole stage, disjoint); theta' <- theta after one pass
    over the support set with the inner optimizer (dropout on: Keras `train_on_batch`);
    g <- the gradient of one pass over the query set at theta', the SUM over its batches
    (the authors' `K.update_add` under `average_meta_grad: "none"`; `meta_grad="mean"`:
    divided by the batches) with the model in evaluation mode (their `K.function` leaves
    Keras' learning phase False: no dropout; `pass_train_mode=true`: training mode); theta
    is restored and the outer optimizer steps with g."""

    summary = "first-order MAML: support-set pass, outer step with the query gradient"
    priority = 5

    @dataclass
    class Config(FinetuneOptions):
        alpha: float = 1e-3  # inner learning rate (authors' code: 1e-3)
        beta: float = 1e-3  # outer learning rate (authors' code: 1e-3)
        inner_optimizer: OptimizerName = "adam"
        outer_optimizer: OptimizerName = "adam"
        support_fraction: float = 0.2  # share of a domain's rows in its support set (authors: 0.2)
        # the query gradient over its batches: sum (authors: average_meta_grad "none",
        # K.update_add) | mean
        meta_grad: Literal["sum", "mean"] = "sum"
        # the query pass in training mode (dropout on); authors: evaluation mode (K.function)
        pass_train_mode: bool = False
        # support/query cut anew each epoch (authors' take/skip); false: once, disjoint
        split_each_epoch: bool = True

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        _check_positive(self.cfg, "alpha", "beta")
        _check_optimizer(self.cfg, "inner_optimizer", "outer_optimizer")
        if not 0.0 < self.cfg.support_fraction < 1.0:
            raise UserError(f"support_fraction must be in (0, 1), got {self.cfg.support_fraction}")
        params = self.named_params()
        self.inner = self.make_optimizer(params, self.cfg.inner_optimizer, self.cfg.alpha)
        # steps with the query gradient, which holds the L2 penalty's gradient already
        self.outer = self.make_optimizer(
            params, self.cfg.outer_optimizer, self.cfg.beta, penalty=False
        )
        self.support: list[Tensor] = []
        self.query: list[Tensor] = []

    def begin_stage(self, stage) -> None:
        super().begin_stage(stage)
        if not self.cfg.split_each_epoch:
            self.support, self.query = split_domains(
                self.data.train, self.cfg.support_fraction, self.ctx.generator
            )

    def meta_step(self, d: int, meter: LossMeter) -> None:
        params = self.named_params()
        support, query = self.domain_parts(d, self.cfg.support_fraction, self.support, self.query)
        snap = self.snapshot(params)
        self.train_pass(d, self.inner, meter, snap=snap, rows=support)  # theta'
        self.outer.zero_grad()
        grads = pass_gradient(self, d, meter, query, mean=self.cfg.meta_grad == "mean",
                              train_mode=self.cfg.pass_train_mode)  # at theta'  # fmt: skip
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
