"""What the meta-learning frameworks (DN, DR, MAMDR, MAML, Reptile, MLDG) share:
`MetaFramework` (the inner step, a pass over a domain, the outer step), batches over given
rows (`row_batches`), a seeded cut of each domain's rows, once (`split_domains`) or per
epoch as the authors' take/skip (`epoch_split`), the gradient of a pass without a step
(`pass_gradient`, also PCGrad's) and the checks of their options.

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

from mdrbench.data import Split, buffered_order
from mdrbench.errors import UserError
from mdrbench.frameworks.base import (
    Framework,
    LossMeter,
    Optimizer,
)
from mdrbench.frameworks.params import GradSum, Snapshot

OPTIMIZERS = ("sgd", "adam", "adagrad")


def _order(n: int, generator: torch.Generator, buffer: int = 0) -> Tensor:
    """A shuffled order of n rows: uniform, or through a tf.data buffer (`buffer` > 0)."""
    return buffered_order(n, buffer, generator) if buffer > 0 else torch.randperm(n, generator=generator)


def row_batches(
    split: Split, rows: Tensor, batch_size: int, generator: torch.Generator, buffer: int = 0
) -> Iterator[dict[str, Tensor]]:
    """Shuffled batches over the given row indices of `split` (in the order `rows` lists
    them, through a buffer of `buffer` rows as `Split.batches`; 0: uniformly)."""
    perm = rows[_order(len(rows), generator, buffer)].to(split.label.device)
    for i in range(0, len(perm), batch_size):
        yield split.take(perm[i : i + batch_size])


def _cut(n: int, fraction: float) -> int:
    """Rows in the first part: int(n * fraction), at least one, and one left for the rest
    (n = 1: the single row goes to both)."""
    return min(max(int(n * fraction), 1), n - 1) if n > 1 else n


def split_domains(
    split: Split, fraction: float, generator: torch.Generator
) -> tuple[list[Tensor], list[Tensor]]:
    """Each domain's rows of `split` cut once, at random (seeded), into a first part
    (`fraction` of them, at least one row) and the rest (at least one row); a domain of a
    single row gives it to both. MAML's support/query, MLDG's meta-train/meta-val with
    `split_each_epoch=false`."""
    first, rest = [], []
    for d in range(split.n_domains):
        rows = torch.arange(split.offsets[d], split.offsets[d + 1])
        rows = rows[torch.randperm(len(rows), generator=generator)]
        s = _cut(len(rows), fraction)
        first.append(rows[:s])
        rest.append(rows[s:] if len(rows) > 1 else rows)
    return first, rest


def epoch_split(
    split: Split, d: int, fraction: float, generator: torch.Generator, buffer: int = 0
) -> tuple[Tensor, Tensor]:
    """Domain d's two parts for one epoch, as the authors' `build_meta_data_split`
    ("meta-train/val": model_zoo/maml.py, model_zoo/mldg.py) gives them: the first part is
    `dataset.take(n_train)`, the rest `dataset.skip(n_train)`, each on its own iterator
    over the domain's shuffled dataset (tf.data's buffer of `buffer` rows over the file's
    order, reshuffled whenever an iterator starts): the first int(n * fraction) rows of one
    shuffled stream, and the rows after them in another, independent one. So the boundary
    moves each epoch and the parts may share rows (many, when the buffer holds a large
    share of the domain; few when the domain is much larger than the buffer)."""
    rows = torch.arange(split.offsets[d], split.offsets[d + 1])
    n = len(rows)
    s = _cut(n, fraction)
    first = rows[_order(n, generator, buffer)][:s]
    rest = rows[_order(n, generator, buffer)][s:] if n > 1 else rows
    return first, rest


def pass_gradient(
    fw: Framework,
    d: int,
    meter: LossMeter,
    rows: Tensor | None = None,
    mean: bool = False,
    train_mode: bool = True,
) -> dict[str, Tensor | None]:
    """The gradient of one pass over domain d's training rows (or the given `rows` of
    them) at the current parameters, no step taken: the sum over the batches of each
    batch's mean-loss gradient (`mean`: divided by the batches), one entry per parameter
    (None: no gradient; tables' sparse gradients summed in rounds, `GradSum`), the model's
    L2 penalties included (`Framework.add_penalty`, once per batch). `train_mode=False`
    runs the model in evaluation mode (no dropout; normalisation on its running
    statistics): the authors' gradient-only passes are a Keras `K.function` fed inputs and
    targets only, so the learning phase stays False. Leaves `.grad` cleared."""
    params = fw.named_params()
    for p in params.values():
        p.grad = None
    t = fw.ctx.train
    if rows is None:
        batches = fw.batches(d)
    else:
        batches = row_batches(fw.data.train, rows, t.batch_size, fw.ctx.generator, t.shuffle_buffer)
    acc = GradSum(params, fw.sparse_names)
    m = 0
    with fw.model_mode(train_mode):
        for batch in batches:
            loss = fw.loss(batch)
            loss.backward()
            acc.collect()
            meter.add(loss.detach(), len(batch["label"]), d)
            m += 1
    grads = fw.add_penalty(acc.mean(m if mean else 1), times=1 if mean else m)
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
            t = self.ctx.train
            batches = row_batches(
                self.data.train, rows, t.batch_size, self.ctx.generator, t.shuffle_buffer
            )
        for batch in batches:
            meter.add(self.inner_step(opt, batch, params, snap, only), len(batch["label"]), d)

    def domain_parts(
        self, d: int, fraction: float, first: Sequence[Tensor], rest: Sequence[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Domain d's two parts (MAML's support/query, MLDG's meta-train/meta-val) for this
        epoch: `first[d]`, `rest[d]` when the stage cut them once (`split_domains`), else
        cut anew now as the authors' take/skip (`epoch_split`)."""
        if first:
            return first[d], rest[d]
        t = self.ctx.train
        return epoch_split(self.data.train, d, fraction, self.ctx.generator, t.shuffle_buffer)

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
