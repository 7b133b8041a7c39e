"""Multi-task learning, a domain as a task: PCGrad gradient surgery (Yu et al. 2020), as
the authors ran it (model_zoo/pcgrad.py) or as Yu et al. wrote it.

Neither adds a parameter to the model: PCGrad only rewrites `.grad` before an ordinary
optimizer step; it handles named parameter dicts only, so
it applies to any model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from mdrbench.config import FrameworkConfig, ParamRule
from mdrbench.errors import UserError
from mdrbench.frameworks.base import (
    FRAMEWORKS,
    EpochStats,
    Framework,
    LossMeter,
    specific_param_names,
)
from mdrbench.frameworks.passes import (
    pass_gradient,
)

# ----------------------------------------------------------------------------- PCGrad


def pcgrad(grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """PCGrad (Yu et al. 2020, Algorithm 1) on m task gradients, the rows of `grads`
    [m, D]: for each task i, for each other task j in a random order, if the running
    g_i^PC conflicts with g_j (negative inner product), project it onto the normal plane
    of g_j: g_i^PC -= (g_i^PC . g_j) / |g_j|^2 g_j. Returns sum_i g_i^PC [D].
    Branch-free (no device sync per pair)."""
    m = grads.shape[0]
    pc = grads.clone()
    sq = (grads * grads).sum(1).clamp_min(torch.finfo(grads.dtype).tiny)
    for i in range(m):
        for j in torch.randperm(m, generator=generator).tolist():
            if j == i:
                continue
            dot = pc[i] @ grads[j]
            pc[i] -= dot.clamp(max=0) / sq[j] * grads[j]
    return pc.sum(0)


def _sparse(rows: Tensor, values: Tensor, shape) -> Tensor:
    return torch.sparse_coo_tensor(rows.unsqueeze(0), values, shape, check_invariants=False)


def _nonzero(g: Tensor | None) -> bool:
    if g is None:
        return False
    return g._nnz() > 0 if g.is_sparse else bool(g.any())


def surgery(
    grads: Sequence[Mapping[str, Tensor | None]],
    names: set[str],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor | None]:
    """One gradient per parameter from the per-domain gradients `grads` (one dict each).

    PCGrad acts on the shared part of the gradient, the entries more than one domain's
    gradient reaches in this step: whole dense tensors that get a nonzero gradient from
    at least two domains, and the rows of sparse tables (embeddings) that at least two
    domains touch, for parameters in `names`. Everything else (a domain's own tower, its
    domain-embedding row, a user seen by one domain only, parameters outside `names`) is
    summed as it is: projecting it could only shrink the other domains' coefficients."""
    out: dict[str, Tensor | None] = {}
    m = len(grads)
    pieces: list[list[Tensor]] = [[] for _ in range(m)]
    layout: list[tuple] = []  # (name, kind, shape or (rows, value shape, plain sum))
    for n in grads[0]:
        gs = [g[n] if _nonzero(g[n]) else None for g in grads]
        present = [g for g in gs if g is not None]
        if not present:
            out[n] = None
            continue
        if n not in names or len(present) < 2:
            total = present[0]
            for g in present[1:]:
                total = total + g
            out[n] = total
            continue
        if present[0].is_sparse:
            co = [None if g is None else g.coalesce() for g in gs]
            uniq, counts = torch.unique(
                torch.cat([c.indices()[0] for c in co if c is not None]), return_counts=True
            )
            rows = uniq[counts >= 2]
            vshape = tuple(present[0].shape[1:])
            plain: Tensor | None = None
            for i, c in enumerate(co):
                block = torch.zeros(
                    (len(rows), *vshape), dtype=present[0].dtype, device=present[0].device
                )
                if c is not None:
                    idx, val = c.indices()[0], c.values()
                    if len(rows):
                        pos = torch.searchsorted(rows, idx).clamp(max=len(rows) - 1)
                        shared = rows[pos] == idx
                        block[pos[shared]] = val[shared]
                    else:
                        shared = torch.zeros_like(idx, dtype=torch.bool)
                    own = _sparse(idx[~shared], val[~shared], c.shape)
                    plain = own if plain is None else plain + own
                pieces[i].append(block.reshape(-1))
            layout.append((n, "sparse", (rows, vshape, plain, present[0].shape)))
        else:
            for i, g in enumerate(gs):
                pieces[i].append(
                    g.reshape(-1) if g is not None else present[0].new_zeros(present[0].numel())
                )
            layout.append((n, "dense", present[0].shape))
    if not layout:
        return out
    flat = pcgrad(torch.stack([torch.cat(p) for p in pieces]), generator)
    at = 0
    for n, kind, info in layout:
        if kind == "dense":
            size = int(torch.Size(info).numel())
            out[n] = flat[at : at + size].reshape(info)
        else:
            rows, vshape, plain, shape = info
            size = len(rows) * int(torch.Size(vshape).numel())
            proj = _sparse(rows, flat[at : at + size].reshape(len(rows), *vshape), shape)
            out[n] = (proj if plain is None else proj + plain).coalesce()
        at += size
    return out


def authors_project(g: Tensor | None, a: Tensor | None, transpose: bool = False):
    """g + a', the authors' combination of a domain's gradient g with an auxiliary
    domain's gradient a for one parameter (`model_zoo/pcgrad.py: PCGrad.PCGrad`), row by
    row along the last axis: a 1-D tensor is one row; an embedding table's rows are its
    ids (sparse gradients stay sparse: only rows both touch can be projected);
    `transpose` (nn.Linear weights, stored [out, in] where Keras stores [in, out]) takes
    the authors' rows, one per input unit. For each row with dot = g_r . a_r > 0 (the
    authors' test, though their comment says "if conflict"),
    a_r <- a_r - dot / |g_r| g_r (divided by the norm, not its square). None: no
    gradient."""
    if a is None:
        return g
    if g is None:
        return a
    if g.is_sparse and a.is_sparse:
        g, a = g.coalesce(), a.coalesce()
        gi, ai = g.indices()[0], a.indices()[0]
        gv, av = g.values(), a.values().clone()
        if len(gi) and len(ai):
            pos = torch.searchsorted(gi, ai).clamp(max=len(gi) - 1)
            both = gi[pos] == ai
            gr, ar = gv[pos[both]], av[both]
            dims = tuple(range(1, ar.dim()))
            dot = (gr * ar).sum(dims) if dims else gr * ar
            norm = (gr * gr).sum(dims).sqrt() if dims else gr.abs()
            coef = torch.where(dot > 0, dot / norm.clamp_min(torch.finfo(gv.dtype).tiny), 0)
            av[both] = ar - coef.reshape(-1, *[1] * (ar.dim() - 1)) * gr
        return (g + _sparse(ai, av, a.shape)).coalesce()
    g = g.to_dense() if g.is_sparse else g
    a = a.to_dense() if a.is_sparse else a
    if transpose:
        return authors_project(g.t(), a.t()).t()
    if g.dim() == 0:
        return authors_project(g.reshape(1), a.reshape(1)).reshape(())
    rows_g, rows_a = g.reshape(-1, g.shape[-1]), a.reshape(-1, a.shape[-1])
    dot = (rows_g * rows_a).sum(1, keepdim=True)
    norm = rows_g.norm(dim=1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
    proj = torch.where(dot > 0, dot / norm, 0) * rows_g
    return g + (rows_a - proj).reshape(a.shape)


@FRAMEWORKS("pcgrad")
class PCGrad(Framework):
    """PCGrad, a domain as a task, in one of two variants (`variant`).

    `authors` (default; the authors' `model_zoo/pcgrad.py: PCGrad.train`, which produced
    the paper's PCGrad numbers): for each domain d in a new random order, g = the gradient
    of one pass over d's training rows at theta (the sum of its batches' gradients, no step
    between them); then for each of `sample_num` (5) other domains sampled at random, its
    one-pass gradient a at the same theta is combined into g with `authors_project`
    (projected row by row against the running g where their inner product is positive;
    g <- g + a'); one step of the run's optimizer with g. An epoch costs 1 + sample_num
    gradient passes per domain. The passes run the model in evaluation mode (the authors'
    `K.function` leaves Keras' learning phase False: no dropout in their PCGrad;
    `pass_train_mode=true`: training mode); each pass's gradient holds the model's L2
    penalties once per batch, as the authors' accumulated `total_loss` gradients do.

    `yu` (Yu et al. 2020): each step takes the next batch of every domain that still has
    batches this epoch (domains in a new random order), computes each domain's gradient
    separately, applies gradient surgery to the shared parameters (see `surgery`) and
    takes one step with the summed result (the L2 penalties as the optimizer's weight
    decay, after the surgery). An epoch is one pass over every domain's rows
    (as many steps as the largest domain has batches; the cost of a step grows with the
    square of the domains in it).

    Both apply surgery to the parameters `surgery_params` names only; the others'
    gradients are summed."""

    summary = "PCGrad gradient surgery between domains (authors' code or Yu et al. 2020)"
    priority = 5
    VARIANTS = ("authors", "yu")

    @dataclass
    class Config(FrameworkConfig):
        variant: Literal["authors", "yu"] = "authors"  # authors (model_zoo/pcgrad.py) | yu (Yu et al. 2020)
        # Parameters whose gradients get surgery (same rule syntax as specific_params):
        # "all", "dense" (embedding tables just summed), "none" (plain summed gradients)
        # or "re:REGEX".
        surgery_params: ParamRule = "all"
        sample_num: int = 5  # authors: other domains combined into each domain's step
        # authors: the gradient passes in evaluation mode (their K.function leaves Keras'
        # learning phase False: no dropout); true: training mode
        pass_train_mode: bool = False

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        if self.cfg.variant not in self.VARIANTS:
            raise UserError(
                f"pcgrad: unknown variant {self.cfg.variant!r}; valid: {', '.join(self.VARIANTS)}"
            )
        if not (isinstance(self.cfg.sample_num, int) and self.cfg.sample_num >= 0):
            raise UserError(f"sample_num must be an integer >= 0, got {self.cfg.sample_num!r}")
        # authors: steps with summed pass gradients, which hold the L2's gradient already
        penalty = self.cfg.variant == "yu"
        self.opt = self.make_optimizer(self.named_params(), penalty=penalty)
        self.surgery_names = set(specific_param_names(model, self.cfg.surgery_params))
        self.transposed = {
            f"{m}.weight" if m else "weight"
            for m, mod in model.named_modules()
            if isinstance(mod, nn.Linear)
        }

    def authors_grads(
        self, d: int, aux: Sequence[int], meter: LossMeter
    ) -> dict[str, Tensor | None]:
        """Domain d's gradient combined with those of the domains `aux`, in that order."""
        mode = self.cfg.pass_train_mode
        g = pass_gradient(self, d, meter, train_mode=mode)
        for j in aux:
            a = pass_gradient(self, j, meter, train_mode=mode)
            for n in g:
                if n in self.surgery_names:
                    g[n] = authors_project(g[n], a[n], n in self.transposed)
                elif a[n] is not None:
                    g[n] = a[n] if g[n] is None else g[n] + a[n]
        return g

    def authors_epoch(self, epoch: int, order: Sequence[int], meter: LossMeter) -> None:
        for t, d in enumerate(order):
            others = [j for j in order if j != d]
            k = min(self.cfg.sample_num, len(others))
            pick = torch.randperm(len(others), generator=self.ctx.generator)[:k].tolist()
            g = self.authors_grads(d, [others[p] for p in pick], meter)
            self.opt.zero_grad()
            for n, p in self.named_params().items():
                p.grad = g.get(n)
            self.opt.step()
            self.opt.zero_grad()
            self.ctx.progress(f"epoch {epoch} domain {t + 1}/{len(order)} done")

    def domain_grads(
        self, batches: Mapping[int, dict[str, Tensor]], meter: LossMeter
    ) -> list[dict[str, Tensor | None]]:
        params = self.named_params()
        out = []
        for d, batch in batches.items():
            self.opt.zero_grad()
            loss = self.loss(batch)
            loss.backward()
            meter.add(loss.detach(), len(batch["label"]), d)
            out.append({n: p.grad for n, p in params.items()})
        self.opt.zero_grad()
        return out

    def pcgrad_step(self, batches: Mapping[int, dict[str, Tensor]], meter: LossMeter) -> None:
        grads = self.domain_grads(batches, meter)
        final = surgery(grads, self.surgery_names, self.ctx.generator)
        for n, p in self.named_params().items():
            p.grad = final.get(n)
        self.opt.step()
        self.opt.zero_grad()

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        keep = set(domains)
        if self.cfg.variant == "authors":
            order = [d for d in self.domain_order(True) if d in keep]
            self.authors_epoch(epoch, [d for d in order if self.data.train.n_rows(d)], meter)
            return meter.stats()
        iters: dict[int, Iterator[dict]] = {
            d: self.batches(d) for d in self.domain_order(True) if d in keep
        }
        steps = 0
        while iters:
            batches = {}
            for d in list(iters):
                b = next(iters[d], None)
                if b is None:
                    del iters[d]
                else:
                    batches[d] = b
            if batches:
                self.pcgrad_step(batches, meter)
                steps += 1
                self.ctx.progress(f"epoch {epoch} step {steps}, {len(batches)} domains")
        return meter.stats()
