"""MLDG (Li et al. 2018), first-order, as the authors ran it or as Li et al. wrote it.
Authors: model_zoo/mldg.py."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from mdrbench.config import FrameworkConfig, OptimizerName
from mdrbench.errors import UserError
from mdrbench.frameworks.base import (
    FRAMEWORKS,
    EpochStats,
    LossMeter,
)
from mdrbench.frameworks.params import Snapshot
from mdrbench.frameworks.passes import (
    MetaFramework,
    _check_optimizer,
    _check_positive,
    pass_gradient,
    split_domains,
)

# ----------------------------------------------------------------------------- MLDG


@FRAMEWORKS("mldg")
class MLDG(MetaFramework):
    """MLDG (Li et al. 2018), first-order, in one of two variants (`variant`).

    `authors` (default; the authors' `model_zoo/mldg.py: MLDG.train`, which produced the
    paper's MLDG numbers, with the split of its `build_meta_data_split`, `meta_split`
    "meta-train/val"): each epoch, for each domain d in a new random order, d's training
    rows are cut into meta-train (`meta_train_fraction`, 0.8) and meta-val as MAML's
    support/query (anew each epoch as the authors' take/skip, `passes.epoch_split`;
    `split_each_epoch=false`: once per stage, disjoint); G_tr = the gradient of one pass
    over d's meta-train rows at theta (the sum of the batches' gradients, no step between
    them: `average_meta_grad` "none"); the outer optimizer steps with G_tr to theta';
    G_val = the gradient of one pass over d's meta-val rows at theta'; theta is restored
    and the outer optimizer steps with G_tr + G_val. One optimizer (learning rate `beta`,
    the authors' `meta_learning_rate`) takes both steps, so its Adam moments see both;
    `alpha` is not used. The authors' meta-val is the same domain's held-out rows, not
    another domain. Both passes run the model in evaluation mode: the authors compute
    them with a Keras `K.function` (`_make_meta_train_function`) whose learning phase
    stays False, so no dropout anywhere in their MLDG (`pass_train_mode=true`: training
    mode).

    `li`: domains, not samples, are meta-train and meta-test. Each batch of a meta-train
    domain d (domains in a new random order each epoch) is paired with the next batch of
    a meta-test domain j != d drawn at random. F = loss on d's batch at theta;
    theta' = theta - alpha grad F (a virtual SGD step); G = loss on j's batch at theta';
    the outer optimizer steps with grad F(theta) + meta_weight * grad G(theta') (the
    first-order form of grad [F(theta) + meta_weight G(theta - alpha grad F(theta))]; F
    and G hold the model's L2 penalties, each at its own point).
    No sample split: the training rows are all used (the paper's note on MLDG). Two
    forward/backward passes per batch."""

    summary = "first-order MLDG: meta-train step, meta-val gradient (authors) or another domain"
    priority = 5
    VARIANTS = ("authors", "li")

    @dataclass
    class Config(FrameworkConfig):
        variant: Literal["authors", "li"] = "authors"  # authors (model_zoo/mldg.py) | li (Li et al., domains)
        alpha: float = 1e-3  # li: the virtual SGD step on F
        beta: float = 1e-3  # outer learning rate (authors: both steps)
        outer_optimizer: OptimizerName = "adam"
        meta_weight: float = 1.0  # li: MLDG's beta, weight of the meta-test loss G
        meta_train_fraction: float = 0.8  # authors: share of a domain's rows in meta-train
        # authors: the passes in evaluation mode (K.function; no dropout); true: training mode
        pass_train_mode: bool = False
        # authors: meta-train/meta-val cut anew each epoch (take/skip); false: once, disjoint
        split_each_epoch: bool = True

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        if self.cfg.variant not in self.VARIANTS:
            raise UserError(
                f"mldg: unknown variant {self.cfg.variant!r}; valid: {', '.join(self.VARIANTS)}"
            )
        _check_positive(self.cfg, "alpha", "beta")
        _check_optimizer(self.cfg, "outer_optimizer")
        if not (self.cfg.meta_weight >= 0 and math.isfinite(self.cfg.meta_weight)):
            raise UserError(f"meta_weight must be >= 0, got {self.cfg.meta_weight}")
        if not 0.0 < self.cfg.meta_train_fraction < 1.0:
            raise UserError(
                f"meta_train_fraction must be in (0, 1), got {self.cfg.meta_train_fraction}"
            )
        # steps with gradients that hold the L2 penalty's gradient already (add_penalty)
        self.outer = self.make_optimizer(
            self.named_params(), self.cfg.outer_optimizer, self.cfg.beta, penalty=False
        )
        self.meta_train: list[Tensor] = []
        self.meta_val: list[Tensor] = []

    def begin_stage(self, stage) -> None:
        super().begin_stage(stage)
        if self.cfg.variant == "authors" and not self.cfg.split_each_epoch:
            self.meta_train, self.meta_val = split_domains(
                self.data.train, self.cfg.meta_train_fraction, self.ctx.generator
            )

    def _outer_step(self, grads: Mapping[str, Tensor | None], snap: Snapshot | None = None):
        params = self.named_params()
        self.outer.zero_grad()
        for n, p in params.items():
            p.grad = grads.get(n)
        if snap is not None:
            snap.record()
        self.outer.step()
        self.outer.zero_grad()

    def authors_step(self, d: int, meter: LossMeter) -> None:
        """The authors' update for domain d (see the class docstring)."""
        frac, mode = self.cfg.meta_train_fraction, self.cfg.pass_train_mode
        train_rows, val_rows = self.domain_parts(d, frac, self.meta_train, self.meta_val)
        snap = self.snapshot()
        g_tr = pass_gradient(self, d, meter, train_rows, train_mode=mode)  # at theta
        self._outer_step(g_tr, snap)  # theta'
        g_val = pass_gradient(self, d, meter, val_rows, train_mode=mode)  # at theta'
        snap.restore()
        total = {}
        for n, a in g_tr.items():
            b = g_val[n]
            total[n] = b if a is None else (a if b is None else a + b)
        self._outer_step(total)

    def mldg_step(
        self, train_batch: dict, test_batch: dict | None, meter: LossMeter, d: int, j: int
    ):
        params = self.named_params()
        self.outer.zero_grad()
        loss_f = self.loss(train_batch)
        loss_f.backward()
        meter.add(loss_f.detach(), len(train_batch["label"]), d)
        g_f = self.add_penalty({n: p.grad for n, p in params.items()})  # the L2's at theta
        if test_batch is None:  # a single domain: nothing to generalise to
            for n, p in params.items():
                p.grad = g_f[n]
            self.outer.step()
            self.outer.zero_grad()
            return
        snap = self.snapshot(params)
        snap.record()
        with torch.no_grad():
            for n, p in params.items():
                if g_f[n] is not None:
                    p.add_(g_f[n], alpha=-self.cfg.alpha)  # theta'
                p.grad = None
        loss_g = self.loss(test_batch)
        loss_g.backward()
        meter.add(loss_g.detach(), len(test_batch["label"]), j)
        w = self.cfg.meta_weight
        g_g = self.add_penalty({n: p.grad for n, p in params.items()})  # the L2's at theta'
        grads = {}
        for n in params:
            a, b = g_f[n], g_g[n]
            grads[n] = a if b is None else (b * w if a is None else a + b * w)
        snap.restore()
        for n, p in params.items():
            p.grad = grads[n]
        self.outer.step()
        self.outer.zero_grad()

    def _next(self, iters: dict, j: int) -> dict:
        it = iters.get(j)
        if it is not None:
            batch = next(it, None)
            if batch is not None:
                return batch
        iters[j] = it = self.batches(j)
        return next(it)

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        order = self.epoch_order(domains)
        if self.cfg.variant == "authors":
            for i, d in enumerate(order):
                if self.data.train.n_rows(d):
                    self.authors_step(d, meter)
                self.progress(epoch, "domain", i, len(order), d)
            return meter.stats()
        tests = [d for d in order if self.data.train.n_rows(d) > 0]
        iters: dict[int, Iterator[dict]] = {}
        for i, d in enumerate(order):
            others = [j for j in tests if j != d]
            for batch in self.batches(d):
                if others:
                    j = others[int(torch.randint(len(others), (1,), generator=self.ctx.generator))]
                    self.mldg_step(batch, self._next(iters, j), meter, d, j)
                else:
                    self.mldg_step(batch, None, meter, d, d)
            self.progress(epoch, "domain", i, len(order), d)
        return meter.stats()
