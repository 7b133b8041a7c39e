"""Multi-task learning, a domain as a task: learned uncertainty weights (Kendall et al.
2018).

Neither adds a parameter to the model: the uncertainty weights live in the framework (its
`state_dict` keeps them); it handles named parameter dicts only, so
it applies to any model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mdrbench.config import FrameworkConfig
from mdrbench.frameworks.base import (
    FRAMEWORKS,
    EpochStats,
    Framework,
    LossMeter,
    Optimizer,
)

# ----------------------------------------------------------------------------- weighted loss


@FRAMEWORKS("weighted_loss")
class WeightedLoss(Framework):
    """Uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018): one learned log
    variance s_d per domain; a batch's objective is sum over its domains d of
    exp(-s_d) L_d + s_d / 2 (L_d: mean BCE of d's rows in the batch; the classification
    form 1/sigma^2 L + log sigma with s = log sigma^2). s starts at 0 (weight 1) and is
    trained with the model by the run's optimizer. Batches go domain after domain in a new
    random order each epoch (the authors' code), or mixed over domains (`mixed=true`).
    The logged loss is the plain BCE."""

    summary = "learned uncertainty weight per domain (Kendall et al. 2018)"
    priority = 5

    @dataclass
    class Config(FrameworkConfig):
        shuffle_domains: bool = True  # a new domain order every epoch (authors' code)
        mixed: bool = False  # batches mixed over all domains instead of domain after domain

    def __init__(self, model, ctx, cfg=None):
        super().__init__(model, ctx, cfg)
        self.log_var = torch.zeros(self.n_domains, device=ctx.device, requires_grad=True)
        self.opt = self.make_optimizer(self.named_params())
        self.weight_opt = Optimizer({"log_var": self.log_var}, name="adam", lr=ctx.train.lr)

    def weights(self) -> Tensor:
        """exp(-s_d): the current weight of each domain's loss."""
        return torch.exp(-self.log_var.detach())

    def weighted(self, row_loss: Tensor, domain_id: Tensor) -> Tensor:
        """sum over the batch's domains of exp(-s_d) mean(row_loss of d) + s_d / 2."""
        n = self.n_domains
        sums = torch.zeros(n, dtype=row_loss.dtype, device=row_loss.device)
        sums = sums.index_add(0, domain_id, row_loss)
        counts = torch.bincount(domain_id, minlength=n)
        present = counts > 0
        s = self.log_var[present]
        return (torch.exp(-s) * (sums[present] / counts[present]) + 0.5 * s).sum()

    def train_step(self, batch: dict[str, Tensor], meter: LossMeter, d: int = -1) -> None:
        self.opt.zero_grad()
        self.weight_opt.zero_grad()
        rows = F.binary_cross_entropy_with_logits(
            self.forward(batch), batch["label"], reduction="none"
        )
        self.weighted(rows, batch["domain_id"]).backward()
        self.opt.step()
        self.weight_opt.step()
        meter.add(rows.detach().mean(), len(rows), d)

    def train_epoch(self, epoch: int, domains: Sequence[int]) -> EpochStats:
        meter = LossMeter()
        if self.cfg.mixed:
            for batch in self.batches():
                self.train_step(batch, meter)
            return meter.stats()
        keep = set(domains)
        for d in [d for d in self.domain_order(self.cfg.shuffle_domains) if d in keep]:
            for batch in self.batches(d):
                self.train_step(batch, meter, d)
        return meter.stats()

    def state_dict(self):
        state = super().state_dict()
        state["log_var"] = self.log_var.detach()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "log_var" in state:
            with torch.no_grad():
                self.log_var.copy_(state["log_var"])
