"""Model-agnostic meta-learning frameworks: the paper's DN, DR and MAMDR (Algorithms 1-3)
and the meta-learning baselines it is compared with (MAML, Reptile, MLDG).

Every one of them works on named parameter dicts and `functional_call`, so it applies to
any `nn.Module` whose `forward(batch)` returns logits, unchanged. Two optimizers each:

- the *inner* optimizer (`inner_optimizer`, learning rate `alpha`) takes ordinary steps on
  a domain's batches; it lives as long as the framework (its Adam moments carry over from
  domain to domain and epoch to epoch, as the Keras optimizer of the authors' code does);
- the *outer* optimizer (`outer_optimizer`, learning rate `beta`; DR's uses `gamma`) takes
  one step per outer iteration with `theta - theta~` written into `.grad` (learn2learn's
  way): plain SGD gives theta <- theta + beta (theta~ - theta) (Eq. 3, Eq. 8); Adam or
  Adagrad are a choice away (the paper's industrial setting: SGD inside, Adagrad outside).

Embedding tables (issue 6). Algorithms that remember theta to difference against or to
restore it (`Snapshot`) clone the dense parameters once per pass and treat tables with
sparse gradients copy-on-write: before each inner step the rows its gradient touches are
saved (once per pass), so a pass costs O(dense parameters + touched rows), never a copy of
a whole table per batch, and the outer step's `theta - theta~` of a table is a sparse
gradient over the touched rows (SparseAdam / SGD / Adagrad update those rows only).
Domain-specific parameters (DR, MAMDR) follow `specific_params` (default: the dense,
non-embedding ones), so their memory is domains x specific parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mdrbench.config import FrameworkConfig
from mdrbench.data import Split
from mdrbench.errors import UserError
from mdrbench.frameworks.base import (
    FRAMEWORKS,
    EpochStats,
    Framework,
    LossMeter,
    Optimizer,
    Params,
    clone_params,
)

OPTIMIZERS = ("sgd", "adam", "adagrad")

# ----------------------------------------------------------------------------- snapshots


def _sparse(rows: Tensor, values: Tensor, shape: torch.Size) -> Tensor:
    return torch.sparse_coo_tensor(
        rows.unsqueeze(0), values, shape, check_invariants=False
    ).coalesce()


class _Rows:
    """Copy-on-write memory of one embedding table (sparse gradients): the original values
    of the rows that steps are about to change, each row saved once."""

    def __init__(self, p: Tensor, seen: Tensor):
        self.p = p
        self.seen = seen  # bool [rows], all False on entry; reset to False on close
        self.idx: list[Tensor] = []
        self.old: list[Tensor] = []
        self.full: Tensor | None = None  # a dense gradient turned up: the whole table, once

    def save(self, grad: Tensor) -> None:
        if self.full is not None:
            return
        w = self.p.detach()
        if not grad.is_sparse:
            full = w.clone()
            if self.idx:  # rows changed earlier in this pass: put their originals back
                full[torch.cat(self.idx)] = torch.cat(self.old)
            self.full = full
            return
        rows = torch.unique(grad._indices()[0])
        new = rows[~self.seen[rows]]
        if new.numel():
            self.seen[new] = True
            self.idx.append(new)
            self.old.append(w[new].clone())

    def delta(self) -> Tensor | None:
        """theta - theta~ (sparse over the saved rows), None when nothing changed."""
        w = self.p.detach()
        if self.full is not None:
            return self.full - w
        if not self.idx:
            return None
        rows = torch.cat(self.idx)
        return _sparse(rows, torch.cat(self.old) - w[rows], w.shape)

    def restore(self) -> None:
        w = self.p.detach()
        if self.full is not None:
            w.copy_(self.full)
        elif self.idx:
            w[torch.cat(self.idx)] = torch.cat(self.old)

    def close(self) -> None:
        if self.idx:
            self.seen[torch.cat(self.idx)] = False
        self.idx, self.old, self.full = [], [], None


class Snapshot:
    """theta at one moment, to difference against (`delta`) and restore (`restore`).

    Dense parameters are cloned here; tables in `sparse_names` are copy-on-write: call
    `record()` after each backward and before the optimizer step (`MetaFramework.inner_step`
    does), and only the rows the step will change are saved. `masks` (name -> bool [rows])
    lets a framework reuse its row masks instead of allocating one per snapshot.
    """

    def __init__(
        self,
        params: Mapping[str, Tensor],
        sparse_names: set[str] | frozenset[str] = frozenset(),
        masks: dict[str, Tensor] | None = None,
    ):
        self.params = dict(params)
        self.dense: dict[str, Tensor] = {}
        self.rows: dict[str, _Rows] = {}
        masks = {} if masks is None else masks
        for n, p in self.params.items():
            if n in sparse_names:
                m = masks.get(n)
                if m is None or m.shape[0] != p.shape[0] or m.device != p.device:
                    m = masks[n] = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
                self.rows[n] = _Rows(p, m)
            else:
                self.dense[n] = p.detach().clone()

    def record(self) -> None:
        """Save the rows the current gradients of the tables touch (before `step`)."""
        for n, r in self.rows.items():
            g = self.params[n].grad
            if g is not None:
                r.save(g)

    def delta(self) -> dict[str, Tensor | None]:
        """theta - theta~ for every parameter (sparse for tables; None = unchanged table)."""
        out: dict[str, Tensor | None] = {
            n: t - self.params[n].detach() for n, t in self.dense.items()
        }
        out.update({n: r.delta() for n, r in self.rows.items()})
        return out

    def restore(self) -> None:
        """Put theta back into the parameters (in place) and release the snapshot."""
        with torch.no_grad():
            for n, t in self.dense.items():
                self.params[n].detach().copy_(t)
            for r in self.rows.values():
                r.restore()
                r.close()

    def delta_and_restore(self) -> dict[str, Tensor | None]:
        d = self.delta()
        self.restore()
        return d


class GradSum:
    """The mean of the gradients of many backward passes. Dense gradients accumulate in
    `.grad` as autograd does; sparse ones (embedding tables) are taken out of `.grad` after
    each pass (`collect`) and summed in rounds: letting autograd add sparse gradients pass by
    pass re-copies the growing sum every time, quadratic in the passes. A round merges the
    pending parts once they hold more rows than the table, so memory stays within about
    twice the rows a table has plus one pass."""

    def __init__(self, params: Mapping[str, Tensor], sparse_names: set[str] | frozenset[str]):
        self.params = dict(params)
        self.parts: dict[str, list[Tensor]] = {n: [] for n in self.params if n in sparse_names}
        self.pending: dict[str, int] = dict.fromkeys(self.parts, 0)

    def collect(self) -> None:
        for n, parts in self.parts.items():
            p = self.params[n]
            g = p.grad
            if g is None:
                continue
            p.grad = None
            if not g.is_sparse:  # a dense gradient after all: keep it as autograd would
                p.grad = g
                continue
            parts.append(g)
            self.pending[n] += g._nnz()
            if self.pending[n] > p.shape[0] and len(parts) > 1:
                parts[:] = [self._merge(parts, p.shape)]
                self.pending[n] = 0

    @staticmethod
    def _merge(parts: list[Tensor], shape: torch.Size) -> Tensor:
        idx = torch.cat([g._indices() for g in parts], 1)
        val = torch.cat([g._values() for g in parts])
        return torch.sparse_coo_tensor(idx, val, shape, check_invariants=False).coalesce()

    def mean(self, m: int) -> dict[str, Tensor | None]:
        """Sum over the collected passes / m, per parameter (None: no gradient)."""
        m = max(m, 1)
        out: dict[str, Tensor | None] = {}
        for n, p in self.params.items():
            parts = self.parts.get(n)
            if parts:
                dense = p.grad  # a dense gradient turned up among sparse ones
                total = self._merge(parts, p.shape) / m
                out[n] = total if dense is None else dense / m + total
            else:
                out[n] = None if p.grad is None else p.grad / m
        return out


# ----------------------------------------------------------------------------- the base


def row_batches(
    split: Split, rows: Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[dict[str, Tensor]]:
    """Shuffled batches over the given row indices of `split`."""
    perm = rows[torch.randperm(len(rows), generator=generator)].to(split.label.device)
    for i in range(0, len(perm), batch_size):
        yield split.take(perm[i : i + batch_size])


def _check_positive(cfg, *names: str) -> None:
    for n in names:
        v = getattr(cfg, n)
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise UserError(f"{n} must be > 0, got {v!r}")


def _check_optimizer(cfg, *names: str) -> None:
    for n in names:
        if getattr(cfg, n) not in OPTIMIZERS:
            raise UserError(
                f"{n}: unknown optimizer {getattr(cfg, n)!r}; valid: {', '.join(OPTIMIZERS)}"
            )


class MetaFramework(Framework):
    """Tools shared by DN, DR, MAMDR, MAML, Reptile and MLDG: the inner step (with the
    snapshot's copy-on-write hook), a pass over a domain, and the outer step that writes
    theta - theta~ into `.grad`."""

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        self.order: list[int] = []  # the last epoch's domain order (logs, tests)
        self._masks: dict[str, Tensor] = {}

    def snapshot(self, params: Mapping[str, Tensor] | None = None) -> Snapshot:
        return Snapshot(
            self.named_params() if params is None else params, self.sparse_names, self._masks
        )

    def epoch_order(self, domains: Sequence[int], shuffle: bool = True) -> list[int]:
        keep = set(domains)
        self.order = [d for d in self.domain_order(shuffle) if d in keep]
        return self.order

    def inner_step(
        self,
        opt: Optimizer,
        batch: dict[str, Tensor],
        params: Mapping[str, Tensor] | None = None,
        snap: Snapshot | None = None,
    ) -> Tensor:
        """zero_grad, loss, backward, (save the rows about to change), step."""
        opt.zero_grad()
        loss = self.loss(batch, params)
        loss.backward()
        if snap is not None:
            snap.record()
        opt.step()
        return loss.detach()

    def train_pass(
        self,
        d: int,
        opt: Optimizer,
        meter: LossMeter,
        params: Mapping[str, Tensor] | None = None,
        snap: Snapshot | None = None,
        rows: Tensor | None = None,
    ) -> None:
        """One pass over domain d's training rows (or the given `rows` of them)."""
        if rows is None:
            batches = self.batches(d)
        else:
            batches = row_batches(
                self.data.train, rows, self.ctx.train.batch_size, self.ctx.generator
            )
        for batch in batches:
            meter.add(self.inner_step(opt, batch, params, snap), len(batch["label"]), d)

    @staticmethod
    def outer_step(opt: Optimizer, snap: Snapshot) -> None:
        """theta <- outer step with .grad = theta - theta~ (SGD: theta + lr (theta~ - theta)),
        starting from theta restored."""
        delta = snap.delta_and_restore()
        opt.zero_grad()
        for n, p in snap.params.items():
            p.grad = delta.get(n)
        opt.step()
        opt.zero_grad()

    def progress(self, epoch: int, what: str, i: int, n: int, d: int) -> None:
        self.ctx.progress(
            f"epoch {epoch} {what} {i + 1}/{n} '{self.data.info.domain_names[d]}' done"
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
    class Config(FrameworkConfig):
        alpha: float = 1e-3  # inner learning rate (paper: 1e-3)
        beta: float = 0.1  # outer learning rate (paper: 0.1)
        inner_optimizer: str = "adam"  # sgd | adam | adagrad (paper: Adam)
        outer_optimizer: str = "sgd"  # sgd | adam | adagrad (sgd = Eq. 3 as written)

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        _check_positive(self.cfg, "alpha")
        _check_optimizer(self.cfg, "inner_optimizer", "outer_optimizer")
        params = self.named_params()
        self.inner = self.make_optimizer(params, self.cfg.inner_optimizer, self.cfg.alpha)
        self.outer: Optimizer | None = None
        if hasattr(self.cfg, "beta"):  # not `dr`, whose shared parameters skip the outer step
            _check_positive(self.cfg, "beta")
            self.outer = self.make_optimizer(params, self.cfg.outer_optimizer, self.cfg.beta)

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
    """MAMDR (Algorithm 3): each epoch, DN on the shared parameters theta_S (the model's
    own), then Domain Regularization (Algorithm 2) on each domain's specific parameters.

    Domain d is evaluated with Theta = theta_S + theta_d (Eq. 4) for the `specific_params`
    (default: every dense, non-embedding parameter) and theta_S for the rest, through
    `params_for_domain(d)`; the model's own parameters stay theta_S. theta_d starts at zero
    (the authors' code starts it at a fresh random initialisation), so before any DR step
    every domain is evaluated with theta_S.

    DR for target domain i (Algorithm 2): sample k other domains (without replacement; k is
    capped at n - 1) and, as the authors' code (`add_query_domain`), append i itself. For
    each sampled j in that order: theta~ <- theta_S + theta_i; one pass over domain j, then
    one over domain i (the order is fixed: the other domain first, then the target), with
    the inner optimizer on the specific parameters only; then
    theta_i <- theta_i + gamma (theta~ - (theta_S + theta_i)) through the outer optimizer.
    Cost per epoch: about (2k + 3) passes over the training rows (DN: 1; DR: each of the
    k + 1 sampled domains and the target once per sample), linear in the number of domains.
    """

    summary = "DN on shared parameters + Domain Regularization on domain-specific ones"
    priority = 100

    @dataclass
    class Config(DN.Config):
        gamma: float = 0.1  # DR's outer learning rate (authors' code: 0.1)
        k: int = 5  # DR sample number (paper: 3 for amazon-6, 5 for the others)
        add_target: bool = True  # append the target domain to the k sampled (authors' code)

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        _check_positive(self.cfg, "gamma")
        if self.cfg.k < 0:
            raise UserError(f"k must be >= 0, got {self.cfg.k}")
        self.names: list[str] = []
        self.offsets: list[Params] = []  # theta_d per domain, specific parameters only
        self.work: Params = {}  # theta~ of DR: one buffer reused for every domain
        self.dr_inner: Optimizer | None = None
        self._dr_outer: dict[int, Optimizer] = {}

    def begin_stage(self, stage) -> None:
        super().begin_stage(stage)
        params = self.named_params()
        self.names = self.specific_names()
        self.offsets = [
            {n: torch.zeros_like(params[n]).requires_grad_(True) for n in self.names}
            for _ in range(self.n_domains)
        ]
        self.work = clone_params(params, self.names)
        self.dr_inner = self.make_optimizer(self.work, self.cfg.inner_optimizer, self.cfg.alpha)
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

    def dr_outer(self, i: int) -> Optimizer:
        opt = self._dr_outer.get(i)
        if opt is None:  # theta_d - theta~ is dense even for a table: no sparse routing
            opt = self._dr_outer[i] = Optimizer(
                self.offsets[i], frozenset(), name=self.cfg.outer_optimizer, lr=self.cfg.gamma
            )
        return opt

    def regularize(self, i: int, sampled: Sequence[int], meter: LossMeter) -> None:
        """Algorithm 2 for target domain i over the `sampled` domains, in that order."""
        if not self.names:
            return
        shared = {n: p.detach() for n, p in self.named_params().items()}
        theta_i = self.offsets[i]
        params = {**shared, **self.work}  # the rest stays theta_S, without gradients
        opt = self.dr_outer(i)
        for j in sampled:
            with torch.no_grad():
                for n, w in self.work.items():
                    torch.add(shared[n], theta_i[n], out=w)  # theta~ <- theta_S + theta_i
            self.train_pass(j, self.dr_inner, meter, params)  # Eq. 6: the other domain
            self.train_pass(i, self.dr_inner, meter, params)  # Eq. 7: the target
            opt.zero_grad()
            with torch.no_grad():  # .grad = (theta_S + theta_i) - theta~  (Eq. 8)
                for n, w in self.work.items():
                    theta_i[n].grad = shared[n] + theta_i[n] - w
            opt.step()
            opt.zero_grad()

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
        if not self.offsets:
            return None
        params = self.named_params()
        with torch.no_grad():
            return {**params, **{n: params[n] + t for n, t in self.offsets[d].items()}}

    def domain_offsets(self, d: int) -> Params:
        """theta_d of domain d (a copy)."""
        return {n: t.detach().clone() for n, t in self.offsets[d].items()}

    def state_dict(self):
        state = super().state_dict()
        state["offsets"] = [self.domain_offsets(d) for d in range(len(self.offsets))]
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        with torch.no_grad():
            for d, off in enumerate(state.get("offsets", [])):
                for n, t in off.items():
                    self.offsets[d][n].copy_(t)

    def n_parameters(self) -> int:
        return super().n_parameters() + sum(t.numel() for o in self.offsets for t in o.values())


@FRAMEWORKS("dr")
class DR(MAMDR):
    """Domain Regularization without DN (the paper's "w/o DN" / Table X's DR): the shared
    parameters get alternate training (one pass per domain, in a new random order each
    epoch, with the inner optimizer: DN with beta = 1), then DR on each domain's specific
    parameters exactly as in MAMDR."""

    summary = "alternate training of shared parameters + Domain Regularization"
    priority = 20

    @dataclass
    class Config(FrameworkConfig):  # MAMDR's without beta: no outer step on theta_S
        alpha: float = 1e-3  # inner learning rate (shared passes and DR)
        gamma: float = 0.1  # DR's outer learning rate
        k: int = 5  # DR sample number
        add_target: bool = True  # append the target domain to the k sampled
        inner_optimizer: str = "adam"
        outer_optimizer: str = "sgd"  # DR's outer step (gamma)

    def shared_update(self, epoch: int, order: Sequence[int], meter: LossMeter) -> None:
        for i, d in enumerate(order):
            self.train_pass(d, self.inner, meter)
            self.progress(epoch, "domain", i, len(order), d)


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
    class Config(FrameworkConfig):
        alpha: float = 1e-3  # inner learning rate
        beta: float = 0.1  # outer learning rate (authors' code: 0.1)
        inner_optimizer: str = "adam"
        outer_optimizer: str = "sgd"

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        _check_positive(self.cfg, "alpha", "beta")
        _check_optimizer(self.cfg, "inner_optimizer", "outer_optimizer")
        params = self.named_params()
        self.inner = self.make_optimizer(params, self.cfg.inner_optimizer, self.cfg.alpha)
        self.outer = self.make_optimizer(params, self.cfg.outer_optimizer, self.cfg.beta)

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        order = self.epoch_order(domains)
        for i, d in enumerate(order):
            snap = self.snapshot()
            self.train_pass(d, self.inner, meter, snap=snap)
            self.outer_step(self.outer, snap)
            self.progress(epoch, "domain", i, len(order), d)
        return meter.stats()


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
    class Config(FrameworkConfig):
        alpha: float = 1e-3  # inner learning rate (authors' code: 1e-3)
        beta: float = 1e-3  # outer learning rate (authors' code: 1e-3)
        inner_optimizer: str = "adam"
        outer_optimizer: str = "adam"
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
        split = self.data.train
        self.support, self.query = [], []
        for d in range(self.n_domains):
            rows = torch.arange(split.offsets[d], split.offsets[d + 1])
            rows = rows[torch.randperm(len(rows), generator=self.ctx.generator)]
            n = len(rows)
            s = min(max(int(n * self.cfg.support_fraction), 1), n - 1) if n > 1 else n
            self.support.append(rows[:s])
            self.query.append(rows[s:] if n > 1 else rows)

    def meta_step(self, d: int, meter: LossMeter) -> None:
        params = self.named_params()
        snap = self.snapshot(params)
        self.train_pass(d, self.inner, meter, snap=snap, rows=self.support[d])  # theta'
        self.outer.zero_grad()
        m = 0
        batches = row_batches(
            self.data.train, self.query[d], self.ctx.train.batch_size, self.ctx.generator
        )
        acc = GradSum(params, self.sparse_names)
        for batch in batches:  # gradients at theta' (tables' summed in rounds, GradSum)
            loss = self.loss(batch)
            loss.backward()
            acc.collect()
            meter.add(loss.detach(), len(batch["label"]), d)
            m += 1
        grads = acc.mean(m)
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


# ----------------------------------------------------------------------------- MLDG


@FRAMEWORKS("mldg")
class MLDG(MetaFramework):
    """MLDG (Li et al. 2018), first-order, with domains as meta-train and meta-test: each
    batch of a meta-train domain d (domains in a new random order each epoch, as alternate
    training) is paired with the next batch of a meta-test domain j != d drawn at random.
    F = loss on d's batch at theta; theta' = theta - alpha grad F (a virtual SGD step);
    G = loss on j's batch at theta'; the outer optimizer steps with
    grad F(theta) + meta_weight * grad G(theta') (the first-order form of
    grad [F(theta) + meta_weight G(theta - alpha grad F(theta))]). No sample split: the
    training rows are all used (the paper's note on MLDG). Two forward/backward passes
    per batch."""

    summary = "first-order MLDG: meta-train batch, virtual step, meta-test batch of another domain"
    priority = 5

    @dataclass
    class Config(FrameworkConfig):
        alpha: float = 1e-3  # the virtual SGD step on F
        beta: float = 1e-3  # outer learning rate
        outer_optimizer: str = "adam"
        meta_weight: float = 1.0  # MLDG's beta: weight of the meta-test loss G

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        _check_positive(self.cfg, "alpha", "beta")
        _check_optimizer(self.cfg, "outer_optimizer")
        if not (self.cfg.meta_weight >= 0 and math.isfinite(self.cfg.meta_weight)):
            raise UserError(f"meta_weight must be >= 0, got {self.cfg.meta_weight}")
        self.outer = self.make_optimizer(
            self.named_params(), self.cfg.outer_optimizer, self.cfg.beta
        )

    def mldg_step(
        self, train_batch: dict, test_batch: dict | None, meter: LossMeter, d: int, j: int
    ):
        params = self.named_params()
        self.outer.zero_grad()
        loss_f = self.loss(train_batch)
        loss_f.backward()
        meter.add(loss_f.detach(), len(train_batch["label"]), d)
        if test_batch is None:  # a single domain: nothing to generalise to
            self.outer.step()
            self.outer.zero_grad()
            return
        g_f = {n: p.grad for n, p in params.items()}
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
        grads = {}
        for n, p in params.items():
            a, b = g_f[n], p.grad
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
