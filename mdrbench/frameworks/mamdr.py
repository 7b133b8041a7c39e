"""The paper's frameworks: DN (Algorithm 1), MAMDR (Algorithm 3: DN on the shared
parameters, then Domain Regularization, Algorithm 2, on the domain-specific ones) and DR
(Domain Regularization without DN). Authors: model_zoo/mamdr.py."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import torch

from mdrbench.config import OptimizerName, ParamRule
from mdrbench.errors import UserError
from mdrbench.frameworks.base import (
    FRAMEWORKS,
    EpochStats,
    FinetuneOptions,
    LossMeter,
    Optimizer,
    Params,
)
from mdrbench.frameworks.params import DomainOffsets, fresh_draws
from mdrbench.frameworks.passes import (
    MetaFramework,
    _check_optimizer,
    _check_positive,
)

# ----------------------------------------------------------------------------- DN


@FRAMEWORKS("dn")
class DN(MetaFramework):
    """Domain Negotiation (Algorithm 1). Each epoch: theta~ <- theta; one pass over every
    domain in a new random order, updating theta~ with the inner optimizer (Eq. 2); then
    theta <- theta + beta (theta~ - theta) (Eq. 3) through the outer optimizer. All
    parameters are shared. beta = 1 with SGD outside is alternate training with a shuffled
    domain order (the paper's remark, checked by a test)."""

    summary = "Domain Negotiation: inner pass over shuffled domains, outer step beta"
    priority = 30

    @dataclass
    class Config(FinetuneOptions):
        alpha: float = 1e-3  # inner learning rate (paper: 1e-3)
        beta: float = 0.1  # outer learning rate (paper: 0.1)
        inner_optimizer: OptimizerName = "adam"  # sgd | adam | adagrad (paper: Adam)
        outer_optimizer: OptimizerName = "sgd"  # sgd | adam | adagrad (sgd = Eq. 3 as written)

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        _check_positive(self.cfg, "alpha")
        _check_optimizer(self.cfg, "inner_optimizer", "outer_optimizer")
        params = self.named_params()
        self.inner = self.make_optimizer(params, self.cfg.inner_optimizer, self.cfg.alpha)
        self.outer: Optimizer | None = None
        if hasattr(self.cfg, "beta"):  # not `dr`, whose shared parameters skip the outer step
            _check_positive(self.cfg, "beta")
            self.outer = self.make_optimizer(  # steps with theta - theta~: no L2 of its own
                params, self.cfg.outer_optimizer, self.cfg.beta, penalty=False
            )

    def negotiate(self, epoch: int, order: Sequence[int], meter: LossMeter) -> None:
        """Algorithm 1, one epoch, on the model's own parameters."""
        snap = self.snapshot()
        for i, d in enumerate(order):
            self.train_pass(d, self.inner, meter, snap=snap)
            self.progress(epoch, "DN domain", i, len(order), d)
        self.outer_step(self.outer, snap)

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        self.negotiate(epoch, self.epoch_order(domains), meter)
        return meter.stats()


# ----------------------------------------------------------------------------- MAMDR / DR


@FRAMEWORKS("mamdr")
class MAMDR(DN):
    """MAMDR (Algorithm 3; authors: model_zoo/mamdr.py `MAMDR.train`): each epoch, DN on
    the shared parameters theta_S (the model's own), then Domain Regularization
    (Algorithm 2) on each domain's specific parameters theta_d; then, as every published
    config (`mlp_meta_mamdr_finetune`), the finetune stage from theta_S + theta_d.

    Domain d is evaluated with Theta = theta_S + theta_d (Eq. 4, the "plus" merge) through
    `params_for_domain(d)`; the model's own parameters stay theta_S. `specific_params`
    (default "all", the authors' `meta_parms: ["all"]`): every trainable weight, embedding
    tables included; their theta_d are `DomainOffsets` (a table's offsets hold only the
    rows the domain's DR passes changed). `theta_d_init`: "random" (authors:
    `SpecificBase.init_layer` re-runs each layer's initializer for every domain) draws each
    dense theta_d from the model's own initialisers; a table's theta_d starts at zero (a
    random draw over a whole table per domain would be the n_domains dense copies the
    sparse offsets avoid; docs/fidelity.md); "zero" starts every theta_d at zero.

    DR for target domain i (Algorithm 2): sample k other domains (without replacement; k is
    capped at n - 1) and, as the authors' code (`add_query_domain`), append i itself. For
    each sampled j in that order: theta~ <- theta_S + theta_i written into the model; one
    pass over domain j, then one over domain i (the other domain first, then the target),
    with the inner optimizer, only the specific parameters moving (the same optimizer as
    DN: one Adam serves both, as the authors' compiled Keras optimizer); then
    theta_i <- theta_i + gamma (theta~ - (theta_S + theta_i)) through the outer optimizer
    (tables: SGD, the authors' update), and theta_S is restored.
    Cost per epoch: about (2k + 3) passes over the training rows (DN: 1; DR: each of the
    k + 1 sampled domains and the target once per sample), linear in the number of domains.
    """

    summary = "DN on shared parameters + Domain Regularization on domain-specific ones"
    priority = 100

    @dataclass
    class Config(DN.Config):
        specific_params: ParamRule = "all"  # authors: meta_parms ["all"]
        gamma: float = 0.1  # DR's outer learning rate (authors' code: 0.1)
        k: int = 5  # DR sample number (paper: 3 for amazon-6, 5 for the others)
        add_target: bool = True  # append the target domain to the k sampled (authors' code)
        theta_d_init: Literal["random", "zero"] = "random"  # random (authors) | zero

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        _check_positive(self.cfg, "gamma")
        if self.cfg.k < 0:
            raise UserError(f"k must be >= 0, got {self.cfg.k}")
        if self.cfg.theta_d_init not in ("random", "zero"):
            raise UserError(
                f"theta_d_init: expected 'random' or 'zero', got {self.cfg.theta_d_init!r}"
            )
        self.names: list[str] = []
        self.offsets: DomainOffsets | None = None  # theta_d per domain
        self._dr_outer: dict[int, Optimizer] = {}

    def begin_stage(self, stage) -> None:
        super().begin_stage(stage)
        if self.offsets is not None:  # the finetune stage keeps theta_d as it is
            return
        params = self.named_params()
        self.names = self.specific_names()
        tables = [n for n in self.names if n in self.sparse_names]
        if tables and self.cfg.outer_optimizer != "sgd":
            raise UserError(
                f"outer_optimizer={self.cfg.outer_optimizer}: domain-specific embedding "
                "tables (specific_params) take DR's outer step as SGD only; use "
                "outer_optimizer=sgd or specific_params=dense"
            )
        init = None
        if self.cfg.theta_d_init == "random":
            dense = [n for n in self.names if n not in self.sparse_names]
            seed = int(torch.randint(2**62, (1,), generator=self.ctx.generator))
            init = fresh_draws(self.model, dense, self.n_domains, seed)
        self.offsets = DomainOffsets(params, self.names, self.sparse_names, self.n_domains, init)
        self._dr_outer = {}

    # -- the two halves ---------------------------------------------------------------

    def shared_update(self, epoch: int, order: Sequence[int], meter: LossMeter) -> None:
        self.negotiate(epoch, order, meter)

    def sample_domains(self, i: int, domains: Sequence[int]) -> list[int]:
        """DR's domains for target i: k others at random, then i itself (add_target)."""
        others = [d for d in domains if d != i]
        k = min(self.cfg.k, len(others))
        pick = torch.randperm(len(others), generator=self.ctx.generator)[:k].tolist()
        return [others[p] for p in pick] + ([i] if self.cfg.add_target else [])

    def dr_outer(self, i: int) -> Optimizer | None:
        """Domain i's outer optimizer over its dense theta_i (None: SGD as a formula)."""
        if self.cfg.outer_optimizer == "sgd":
            return None
        opt = self._dr_outer.get(i)
        if opt is None:
            opt = self._dr_outer[i] = Optimizer(
                self.offsets.dense[i], frozenset(), name=self.cfg.outer_optimizer, lr=self.cfg.gamma
            )
        return opt

    def regularize(self, i: int, sampled: Sequence[int], meter: LossMeter) -> None:
        """Algorithm 2 for target domain i over the `sampled` domains, in that order."""
        if not self.names:
            return
        params = self.named_params()
        specific = {n: params[n] for n in self.names}
        only = set(self.names)
        for j in sampled:
            snap = self.snapshot(specific)
            self.offsets.enter(i, snap)  # theta~ <- theta_S + theta_i
            self.train_pass(j, self.inner, meter, snap=snap, only=only)  # Eq. 6: the other
            self.train_pass(i, self.inner, meter, snap=snap, only=only)  # Eq. 7: the target
            self.offsets.leave(i, snap, rate=self.cfg.gamma, outer=self.dr_outer(i))  # Eq. 8

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        order = self.epoch_order(domains)
        self.shared_update(epoch, order, meter)
        for t, i in enumerate(order):
            self.regularize(i, self.sample_domains(i, order), meter)
            self.progress(epoch, "DR domain", t, len(order), i)
        return meter.stats()

    # -- evaluation and state ---------------------------------------------------------

    def params_for_domain(self, d: int) -> Params | None:
        if self.offsets is None:
            return None
        return self.offsets.params(d, self.named_params())

    def domain_params(self, d: int):
        if self.offsets is None:
            return nullcontext()
        return self.offsets.entered(d, self.named_params(), self.sparse_names)

    def finetune_start(self, names: Sequence[str]) -> DomainOffsets:
        """The finetune stage starts each domain from theta_S + theta_d (authors:
        `SpecificBase.separate_train_val_test` merges the best shared and domain weights).
        theta_d are handed over, not copied: the stage trains them in place (those of the
        finetuned `names`; any others stay as they are and are still used), and parameters
        that had no theta_d start from zero offsets. After the stage, `params_for_domain`
        and `state_dict` are the finetuned ones."""
        self.offsets.add(self.named_params(), names, self.sparse_names)
        return self.offsets

    def domain_offsets(self, d: int) -> Params:
        """theta_d of domain d's dense parameters (a copy)."""
        return {n: t.detach().clone() for n, t in self.offsets.dense[d].items()}

    def state_dict(self):
        state = super().state_dict()  # references, not copies
        state["offsets"] = [self.offsets.state(d) for d in range(len(self.offsets))]
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        for d, off in enumerate(state.get("offsets", [])):
            self.offsets.load(d, off)

    def n_parameters(self) -> int:
        own = super().n_parameters()
        return own + (self.offsets.numel() if self.offsets is not None else 0)


@FRAMEWORKS("dr")
class DR(MAMDR):
    """Domain Regularization without DN (the paper's "w/o DN" / Table X's DR): the shared
    parameters get alternate training (one pass per domain, in a new random order each
    epoch, with the inner optimizer: DN with beta = 1), then DR on each domain's specific
    parameters exactly as in MAMDR, then MAMDR's finetune stage."""

    summary = "alternate training of shared parameters + Domain Regularization"
    priority = 20

    @dataclass
    class Config(FinetuneOptions):  # MAMDR's without beta: no outer step on theta_S
        specific_params: ParamRule = "all"  # as MAMDR's
        alpha: float = 1e-3  # inner learning rate (shared passes and DR)
        gamma: float = 0.1  # DR's outer learning rate
        k: int = 5  # DR sample number
        add_target: bool = True  # append the target domain to the k sampled
        inner_optimizer: OptimizerName = "adam"
        outer_optimizer: OptimizerName = "sgd"  # DR's outer step (gamma)
        theta_d_init: Literal["random", "zero"] = "random"  # random (authors) | zero

    def shared_update(self, epoch: int, order: Sequence[int], meter: LossMeter) -> None:
        for i, d in enumerate(order):
            self.train_pass(d, self.inner, meter)
            self.progress(epoch, "domain", i, len(order), d)
