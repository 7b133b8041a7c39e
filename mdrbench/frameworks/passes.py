"""What the meta-learning frameworks (DN, DR, MAMDR, MAML, Reptile, MLDG) share:
`MetaFramework` (the inner step, a pass over a domain, the outer step), batches over given
rows (`row_batches`), a seeded cut of each domain's rows (`split_domains`), the gradient of
a pass without a step (`pass_gradient`, also PCGrad's) and the checks of their options.

Two optimizers each:

- the *inner* optimizer (`inner_optimizer`, learning rate `alpha`) takes ordinary steps on
  a domain's batches; it lives as long as the framework (its Adam moments carry over from
  domain to domain and epoch to epoch, as the Keras optimizer of the authors' code does);
- the *outer* optimizer (`outer_optimizer`, learning rate `beta`; DR's uses `gamma`) takes
  one step per outer iteration with `theta - theta~` written into `.grad` (learn2learn's
  way): plain SGD gives theta <- theta + beta (theta~ - theta) (Eq. 3, Eq. 8); Adam or
  Adagrad are a choice away (the paper's industrial setting: SGD inside, Adagrad outside).

Every one of them works on named parameter dicts and `functional_call`, so it applies to
any `nn.Module` whose `forward(batch)` returns logits, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor

from mdrbench.data import Split
from mdrbench.errors import UserError
from mdrbench.frameworks.base import (
    Framework,
    LossMeter,
    Optimizer,
)
from mdrbench.frameworks.params import GradSum, Snapshot

OPTIMIZERS = ("sgd", "adam", "adagrad")


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
