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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from mdrbench.config import FrameworkConfig
from mdrbench.data import Split
from mdrbench.errors import UserError
from mdrbench.frameworks.base import (
    FRAMEWORKS,
    EpochStats,
    FinetuneOptions,
    Framework,
    LossMeter,
    Optimizer,
    Params,
    Stage,
    specific_param_names,
)

OPTIMIZERS = ("sgd", "adam", "adagrad")

# ----------------------------------------------------------------------------- snapshots


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
        self.save_rows(torch.unique(grad._indices()[0]))

    def save_rows(self, rows: Tensor) -> None:
        """Save the current values of `rows` (unique indices) not saved yet in this pass."""
        if self.full is not None:
            return
        new = rows[~self.seen[rows]]
        if new.numel():
            self.seen[new] = True
            self.idx.append(new)
            self.old.append(self.p.detach()[new])  # indexing copies

    def delta_and_restore(self) -> Tensor | None:
        """theta - theta~ (sparse over the saved rows, coalesced), None when nothing
        changed; theta put back. Part by part: each part of saved rows becomes its delta in
        a buffer already in row order and is released, so the saved rows and the delta
        never sit beside further copies (a DN pass saves about a whole table)."""
        w = self.p.detach()
        if self.full is not None:
            out = self.full - w
            self.restore()
            return out
        if not self.idx:
            return None
        rows = torch.cat(self.idx)
        order = torch.argsort(rows)  # unique rows: the order coalesce() gives
        where = torch.empty_like(order)
        where[order] = torch.arange(len(order), device=order.device)
        vals = w.new_empty((len(rows), *w.shape[1:]))
        i = 0
        for k, (part, old) in enumerate(zip(self.idx, self.old)):
            vals[where[i : i + len(part)]] = old - w[part]
            w[part] = old
            self.old[k] = None  # released as soon as it is back in place
            i += len(part)
        self.old = []
        return torch.sparse_coo_tensor(
            rows[order].unsqueeze(0), vals, w.shape, check_invariants=False, is_coalesced=True
        )

    def restore(self) -> None:
        w = self.p.detach()
        if self.full is not None:
            w.copy_(self.full)
            return
        for rows, old in zip(self.idx, self.old):  # part by part: no second copy of them all
            w[rows] = old

    def close(self) -> None:
        if self.idx:
            self.seen[torch.cat(self.idx)] = False
        self.idx, self.old, self.full = [], [], None


class Snapshot:
    """theta at one moment, to difference against and restore (`delta_and_restore`), or
    just restore (`restore`).

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

    def restore(self) -> None:
        """Put theta back into the parameters (in place) and release the snapshot."""
        with torch.no_grad():
            for n, t in self.dense.items():
                self.params[n].detach().copy_(t)
            for r in self.rows.values():
                r.restore()
                r.close()

    def delta_and_restore(self) -> dict[str, Tensor | None]:
        """theta - theta~ for every parameter (sparse for tables; None = unchanged table),
        and theta put back (in place) and the snapshot released, as `restore`."""
        out: dict[str, Tensor | None] = {}
        with torch.no_grad():
            for n, t in self.dense.items():
                out[n] = t - self.params[n].detach()
                self.params[n].detach().copy_(t)
            for n, r in self.rows.items():
                out[n] = r.delta_and_restore()
                r.close()
        return out


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


# ----------------------------------------------------------------------------- domain offsets


class DomainOffsets:
    """theta_d of every domain d, relative to the model's own parameters theta_S: domain d
    is evaluated and trained with Theta_d = theta_S + theta_d (the authors' "plus" merge,
    model_zoo/specific_base_model.py `SpecificBase._merge_weights`).

    Dense parameters hold one full offset tensor per domain. Embedding tables with sparse
    gradients hold, per domain, only the rows that domain's passes changed (indices and
    offset values): memory grows with the rows a domain touched, never with the table's
    size, so there are never n_domains dense copies of a table. A domain's offsets are
    written into the model in place (`enter`, after a `Snapshot` saved the rows about to
    change) and taken back out (`leave`), which restores theta_S exactly.
    """

    def __init__(
        self,
        params: Mapping[str, Tensor],
        names: Sequence[str],
        sparse_names: set[str] | frozenset[str],
        n_domains: int,
        init: Sequence[Mapping[str, Tensor]] | None = None,
    ):
        self.names = list(names)
        self.table_names = [n for n in self.names if n in sparse_names]
        self.dense_names = [n for n in self.names if n not in sparse_names]
        self.dense: list[Params] = []
        for d in range(n_domains):
            src = init[d] if init is not None else {}
            self.dense.append(
                {
                    n: (
                        src[n].detach().clone() if n in src else torch.zeros_like(params[n])
                    ).requires_grad_(True)
                    for n in self.dense_names
                }
            )
        # name -> (rows, values): the rows of the table that domain d changed
        self.tables: list[dict[str, tuple[Tensor, Tensor]]] = [{} for _ in range(n_domains)]

    def __len__(self) -> int:
        return len(self.dense)

    def enter(self, d: int, snap: Snapshot) -> None:
        """Write theta_S + theta_d into the model's parameters (those of `snap`), in place."""
        with torch.no_grad():
            for n in self.dense_names:
                snap.params[n].detach().add_(self.dense[d][n])
            for n, (rows, vals) in self.tables[d].items():
                snap.rows[n].save_rows(rows)
                snap.params[n].detach().index_add_(0, rows, vals)

    def leave(
        self,
        d: int,
        snap: Snapshot,
        rate: float = 1.0,
        outer: Optimizer | None = None,
        only: set[str] | None = None,
    ) -> None:
        """After training from theta_S + theta_d to theta~: theta_d <- theta_d +
        rate (theta~ - theta_S - theta_d) (`outer`, when given, steps the dense offsets with
        .grad = theta_S + theta_d - theta~ instead: Eq. 8 through any optimizer); then
        theta_S is restored. rate = 1 keeps theta~ as domain d's parameters. `only`: the
        parameters that trained (the others' theta_d are left exactly as they were).

        A table's new offsets are computed in one buffer of the domain's rows, in place and
        part by part (no concatenated copy of the saved rows, no temporaries of the whole
        buffer): at Amazon-6's id space a domain's rows are a large share of the tables."""
        dense_names = [n for n in self.dense_names if only is None or n in only]
        with torch.no_grad():
            moved = {n: snap.params[n].detach() - snap.dense[n] for n in dense_names}
            for n, r in snap.rows.items():
                if only is not None and n not in only:
                    continue
                if n not in self.tables[d] and not r.idx and r.full is None:
                    continue
                prev = self.tables[d].get(n)
                w = r.p.detach()
                if r.full is not None:  # dense gradients: the whole table moved
                    rows = torch.arange(w.shape[0], device=w.device)
                    cur = w - r.full
                    old = None
                    if prev is not None:
                        old = torch.zeros_like(cur)
                        old.index_add_(0, prev[0], prev[1])
                    m = len(cur) if old is not None else 0
                else:
                    rows = torch.cat(r.idx)
                    cur = w[rows]  # theta~ of the rows, minus their saved theta below
                    i = 0
                    for saved in r.old:
                        cur[i : i + len(saved)].sub_(saved)
                        i += len(saved)
                    # enter() saved the rows of prev first, in its order: they lead `cur`
                    old, m = (None, 0) if prev is None else (prev[1], len(prev[0]))
                # theta_d + rate (cur - theta_d), with theta_d = 0 on rows new to domain d
                # (the same float operations as `old + rate * (cur - old)`, bit for bit)
                if m:
                    cur[:m].sub_(old).mul_(rate).add_(old)
                if m < len(cur):
                    cur[m:].mul_(rate).add_(0.0)
                self.tables[d][n] = (rows, cur)
        if outer is not None:
            outer.zero_grad()
            for n in dense_names:
                off = self.dense[d][n]
                off.grad = off.detach() - moved[n]
            outer.step()
            outer.zero_grad()
        else:
            with torch.no_grad():
                for n in dense_names:
                    off = self.dense[d][n]
                    off.add_(moved[n] - off, alpha=rate)
        snap.restore()

    @contextmanager
    def entered(self, d: int, params: Mapping[str, Tensor], sparse_names) -> Iterator[None]:
        """theta_S + theta_d written into the model's parameters for a `with` block, theta_S
        put back exactly after it (on an error too): evaluation without building a copy of
        a whole table per domain (the table's saved rows are those domain d holds)."""
        snap = Snapshot({n: params[n] for n in self.names}, sparse_names)
        try:
            self.enter(d, snap)
            yield
        finally:
            snap.restore()

    def params(self, d: int, params: Mapping[str, Tensor]) -> Params:
        """Theta_d for `functional_call`: theta_S + theta_d (tables: a copy of theta_S's
        table with domain d's rows added, built for this evaluation only)."""
        out = dict(params)
        with torch.no_grad():
            for n in self.dense_names:
                out[n] = params[n] + self.dense[d][n]
            for n, (rows, vals) in self.tables[d].items():
                out[n] = params[n].detach().clone().index_add_(0, rows, vals)
        return out

    def add(self, params: Mapping[str, Tensor], names: Sequence[str], sparse_names) -> None:
        """Hold offsets for more parameters too, each domain's starting at zero."""
        for n in names:
            if n in self.names:
                continue
            self.names.append(n)
            if n in sparse_names:
                self.table_names.append(n)
                continue
            self.dense_names.append(n)
            for o in self.dense:
                o[n] = torch.zeros_like(params[n]).requires_grad_(True)

    def state(self, d: int) -> dict:
        """Domain d's offsets: the tensors themselves, not a copy (to be saved at once:
        `Framework.state_dict`)."""
        return {
            "dense": {n: t.detach() for n, t in self.dense[d].items()},
            "tables": dict(self.tables[d]),
        }

    def load(self, d: int, state: dict) -> None:
        """Take domain d's offsets from `state` (a loaded copy: its tables are kept as
        they are, not copied)."""
        with torch.no_grad():
            for n, t in state["dense"].items():
                self.dense[d][n].copy_(t)
        self.tables[d] = dict(state["tables"])

    def numel(self) -> int:
        """Numbers held: dense offsets, and the stored rows of the tables."""
        dense = sum(t.numel() for o in self.dense for t in o.values())
        return dense + sum(v.numel() for t in self.tables for _, v in t.values())

    def table_rows(self, d: int) -> dict[str, int]:
        """Rows stored per table for domain d (memory check)."""
        return {n: int(r.numel()) for n, (r, _) in self.tables[d].items()}


def fresh_draws(model: nn.Module, names: Sequence[str], n: int, seed: int) -> list[Params]:
    """`n` fresh random draws of the named parameters from the model's own initialisers
    (the authors' `SpecificBase.init_layer`, which re-runs each layer's initializer): a
    registered model is built again from its (info, cfg); any other module is deep-copied
    and its layers' `reset_parameters()` run. The global RNG is left as it was."""
    import copy

    out: list[Params] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(n):
            if hasattr(model, "info") and hasattr(model, "cfg"):
                fresh = type(model)(model.info, model.cfg)
            else:
                fresh = copy.deepcopy(model)
                for m in fresh.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
            own = dict(fresh.named_parameters())
            device = next(model.parameters()).device
            out.append({k: own[k].detach().to(device) for k in names})
    return out


# ----------------------------------------------------------------------------- finetune stage


class DomainFinetune:
    """The finetune stage: from the trained state, each domain trains its own copy of the
    `finetune_params` (theta_S + theta_d for MAMDR) on its rows alone with a fresh
    optimizer (`finetune_optimizer`, lr `finetune_lr`), the rest frozen and shared; the
    trainer keeps each domain's best epoch on its own validation AUC, stops a domain after
    `patience` epochs without a gain of `finetune_min_delta`, and trains every domain for at
    least one epoch; the state before finetuning is not a candidate (`finetune_keep_start`).

    Authors: model_zoo/base_model.py `BaseModel.separate_train_val_test(init_parms=False)`
    (DN, MAML, Reptile, the Alternate+Finetune baseline: SGD at the config's
    `learning_rate`, 1e-3 in every published config) and model_zoo/specific_base_model.py
    `SpecificBase.separate_train_val_test` (MAMDR: SGD at a hard-coded 0.001, from
    theta_S + theta_d); Keras `EarlyStopping(monitor="val_AUC", patience, min_delta=1e-4)`
    and `ModelCheckpoint(save_best_only=True)`. Per-domain copies are `DomainOffsets`:
    dense weights per domain, embedding tables as the rows a domain changed.
    """

    def __init__(self, fw: Framework, stage: Stage):
        self.fw = fw
        cfg = fw.cfg
        _check_positive(cfg, "finetune_lr")
        _check_optimizer(cfg, "finetune_optimizer")
        names = specific_param_names(fw.model, cfg.finetune_params)
        self.names = set(names)  # the weights each domain finetunes
        self.offsets = fw.finetune_start(names)  # may hold more (MAMDR's theta_d): kept
        self.opts: dict[int, Optimizer] = {}

    def optimizer(self, d: int, params: Params) -> Optimizer:
        cfg = self.fw.cfg
        if cfg.finetune_optimizer == "sgd":  # stateless: a fresh one per pass is the same
            return Optimizer(params, self.fw.sparse_names, "sgd", cfg.finetune_lr)
        if d not in self.opts:  # a fresh optimizer per domain, kept for its epochs
            self.opts[d] = Optimizer(
                params, self.fw.sparse_names, cfg.finetune_optimizer, cfg.finetune_lr
            )
        return self.opts[d]

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        fw = self.fw
        meter = LossMeter()
        named = fw.named_params()
        held = {n: named[n] for n in self.offsets.names}  # written in for domain d
        params = {n: p for n, p in named.items() if n in self.names}
        frozen = [p for n, p in named.items() if n not in self.names]
        for i, d in enumerate(domains):
            snap = Snapshot(held, fw.sparse_names)
            self.offsets.enter(d, snap)
            opt = self.optimizer(d, params)
            for batch in fw.batches(d):
                opt.zero_grad()
                loss = fw.loss(batch)
                loss.backward()
                for p in frozen:  # not finetuned: no gradient kept (nor rows saved)
                    p.grad = None
                snap.record()
                opt.step()
                meter.add(loss.detach(), len(batch["label"]), d)
            opt.zero_grad()
            self.offsets.leave(d, snap, only=self.names)
            fw.ctx.progress(
                f"epoch {epoch} finetune {i + 1}/{len(domains)} "
                f"'{fw.data.info.domain_names[d]}' done"
            )
        return meter.stats()

    def params_for_domain(self, d: int) -> Params:
        return self.offsets.params(d, self.fw.named_params())

    def domain_params(self, d: int):
        return self.offsets.entered(d, self.fw.named_params(), self.fw.sparse_names)

    def predict(self, split: Split) -> np.ndarray:
        return self.fw.predict(split, domain_params=self.domain_params)

    def state_dict(self) -> dict:
        """References, not copies (`Framework.state_dict`)."""
        return {"finetune": [self.offsets.state(d) for d in range(len(self.offsets))]}

    def load_state_dict(self, state: dict) -> None:
        for d, s in enumerate(state["finetune"]):
            self.offsets.load(d, s)

    def domain_state(self, d: int) -> dict:
        return self.offsets.state(d)

    def load_domain_state(self, d: int, state: dict) -> None:
        self.offsets.load(d, state)

    def n_parameters(self) -> int:
        """theta_S (the model's trainable weights) and every domain's offsets: all that
        this stage predicts with (MAMDR's theta_d are among the offsets)."""
        own = sum(p.numel() for p in self.fw.model.parameters() if p.requires_grad)
        return own + self.offsets.numel()


# ----------------------------------------------------------------------------- the base


def row_batches(
    split: Split, rows: Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[dict[str, Tensor]]:
    """Shuffled batches over the given row indices of `split`."""
    perm = rows[torch.randperm(len(rows), generator=generator)].to(split.label.device)
    for i in range(0, len(perm), batch_size):
        yield split.take(perm[i : i + batch_size])


def split_domains(
    split: Split, fraction: float, generator: torch.Generator
) -> tuple[list[Tensor], list[Tensor]]:
    """Each domain's rows of `split` cut once, at random (seeded), into a first part
    (`fraction` of them, at least one row) and the rest (at least one row); a domain of a
    single row gives it to both. MAML's support/query, MLDG's meta-train/meta-val."""
    first, rest = [], []
    for d in range(len(split.offsets) - 1):
        rows = torch.arange(split.offsets[d], split.offsets[d + 1])
        rows = rows[torch.randperm(len(rows), generator=generator)]
        n = len(rows)
        s = min(max(int(n * fraction), 1), n - 1) if n > 1 else n
        first.append(rows[:s])
        rest.append(rows[s:] if n > 1 else rows)
    return first, rest


def pass_gradient(
    fw: Framework,
    d: int,
    meter: LossMeter,
    rows: Tensor | None = None,
    mean: bool = False,
) -> dict[str, Tensor | None]:
    """The gradient of one pass over domain d's training rows (or the given `rows` of
    them) at the current parameters, no step taken: the sum over the batches of each
    batch's mean-loss gradient (`mean`: divided by the batches), one entry per parameter
    (None: no gradient; tables' sparse gradients summed in rounds, `GradSum`). Leaves
    `.grad` cleared."""
    params = fw.named_params()
    for p in params.values():
        p.grad = None
    if rows is None:
        batches = fw.batches(d)
    else:
        batches = row_batches(fw.data.train, rows, fw.ctx.train.batch_size, fw.ctx.generator)
    acc = GradSum(params, fw.sparse_names)
    m = 0
    for batch in batches:
        loss = fw.loss(batch)
        loss.backward()
        acc.collect()
        meter.add(loss.detach(), len(batch["label"]), d)
        m += 1
    grads = acc.mean(m if mean else 1)
    for p in params.values():
        p.grad = None
    return grads


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
        only: set[str] | None = None,
    ) -> Tensor:
        """zero_grad, loss, backward, (drop the gradients of parameters not in `only`),
        (save the rows about to change), step."""
        opt.zero_grad()
        loss = self.loss(batch, params)
        loss.backward()
        if only is not None:
            for n, p in opt.params.items():
                if n not in only:
                    p.grad = None
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
        only: set[str] | None = None,
    ) -> None:
        """One pass over domain d's training rows (or the given `rows` of them); `only`:
        the parameters that move (the others' gradients are dropped)."""
        if rows is None:
            batches = self.batches(d)
        else:
            batches = row_batches(
                self.data.train, rows, self.ctx.train.batch_size, self.ctx.generator
            )
        for batch in batches:
            meter.add(self.inner_step(opt, batch, params, snap, only), len(batch["label"]), d)

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
    class Config(FinetuneOptions):
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
        specific_params: str = "all"  # authors: meta_parms ["all"]
        gamma: float = 0.1  # DR's outer learning rate (authors' code: 0.1)
        k: int = 5  # DR sample number (paper: 3 for amazon-6, 5 for the others)
        add_target: bool = True  # append the target domain to the k sampled (authors' code)
        theta_d_init: str = "random"  # random (authors) | zero

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
        specific_params: str = "all"  # as MAMDR's
        alpha: float = 1e-3  # inner learning rate (shared passes and DR)
        gamma: float = 0.1  # DR's outer learning rate
        k: int = 5  # DR sample number
        add_target: bool = True  # append the target domain to the k sampled
        inner_optimizer: str = "adam"
        outer_optimizer: str = "sgd"  # DR's outer step (gamma)
        theta_d_init: str = "random"  # random (authors) | zero

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
    class Config(FinetuneOptions):
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
    class Config(FinetuneOptions):
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


# ----------------------------------------------------------------------------- MLDG


@FRAMEWORKS("mldg")
class MLDG(MetaFramework):
    """MLDG (Li et al. 2018), first-order, in one of two variants (`variant`).

    `authors` (default; the authors' `model_zoo/mldg.py: MLDG.train`, which produced the
    paper's MLDG numbers, with the split of its `build_meta_data_split`, `meta_split`
    "meta-train/val"): each domain's training rows are split once into meta-train
    (`meta_train_fraction`, 0.8) and meta-val (the rest), at random and seeded as MAML's
    support/query (the authors take the first 80% of the file's rows). Each epoch, for
    each domain d in a new random order: G_tr = the gradient of one pass over d's
    meta-train rows at theta (the sum of the batches' gradients, no step between them:
    `average_meta_grad` "none"); the outer optimizer steps with G_tr to theta'; G_val =
    the gradient of one pass over d's meta-val rows at theta'; theta is restored and the
    outer optimizer steps with G_tr + G_val. One optimizer (learning rate `beta`, the
    authors' `meta_learning_rate`) takes both steps, so its Adam moments see both; `alpha`
    is not used. The authors' meta-val is the same domain's held-out rows, not another
    domain.

    `li`: domains, not samples, are meta-train and meta-test. Each batch of a meta-train
    domain d (domains in a new random order each epoch) is paired with the next batch of
    a meta-test domain j != d drawn at random. F = loss on d's batch at theta;
    theta' = theta - alpha grad F (a virtual SGD step); G = loss on j's batch at theta';
    the outer optimizer steps with grad F(theta) + meta_weight * grad G(theta') (the
    first-order form of grad [F(theta) + meta_weight G(theta - alpha grad F(theta))]).
    No sample split: the training rows are all used (the paper's note on MLDG). Two
    forward/backward passes per batch."""

    summary = "first-order MLDG: meta-train step, meta-val gradient (authors) or another domain"
    priority = 5
    VARIANTS = ("authors", "li")

    @dataclass
    class Config(FrameworkConfig):
        variant: str = "authors"  # authors (model_zoo/mldg.py) | li (Li et al., domains)
        alpha: float = 1e-3  # li: the virtual SGD step on F
        beta: float = 1e-3  # outer learning rate (authors: both steps)
        outer_optimizer: str = "adam"
        meta_weight: float = 1.0  # li: MLDG's beta, weight of the meta-test loss G
        meta_train_fraction: float = 0.8  # authors: share of a domain's rows in meta-train

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
        self.outer = self.make_optimizer(
            self.named_params(), self.cfg.outer_optimizer, self.cfg.beta
        )
        self.meta_train: list[Tensor] = []
        self.meta_val: list[Tensor] = []

    def begin_stage(self, stage) -> None:
        super().begin_stage(stage)
        if self.cfg.variant == "authors":
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
        snap = self.snapshot()
        g_tr = pass_gradient(self, d, meter, self.meta_train[d])  # at theta
        self._outer_step(g_tr, snap)  # theta'
        g_val = pass_gradient(self, d, meter, self.meta_val[d])  # at theta'
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
