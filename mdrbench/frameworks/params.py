"""The machinery of per-domain parameters, below every framework (it imports none of
them): `Snapshot` (theta at one moment, to difference against and restore), `GradSum`
(the mean of many backward passes' gradients), `DomainOffsets` (theta_d of every domain,
relative to the model's own theta_S) and `fresh_draws` (new draws from a model's own
initialisers).

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

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

Params = dict[str, Tensor]

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
        outer: Any = None,  # a base.Optimizer (this module sits below base.py)
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
