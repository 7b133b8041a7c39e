"""The finetune stage (`DomainFinetune`) that ends MAMDR, DN, MAML, Reptile and the
Alternate+Finetune baseline (`FinetuneOptions` in base.py). It registers itself in
`base.STAGE_RUNNERS`, where `Framework.stage_runner` finds it: base.py sits below this
module and does not import it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mdrbench.data import Split
from mdrbench.frameworks.base import (
    STAGE_RUNNERS,
    EpochStats,
    Framework,
    LossMeter,
    Optimizer,
    Params,
    Stage,
    specific_param_names,
)
from mdrbench.frameworks.params import Snapshot
from mdrbench.frameworks.passes import (
    _check_optimizer,
    _check_positive,
)


@STAGE_RUNNERS("finetune")
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
            return self.fw.make_optimizer(params, "sgd", cfg.finetune_lr)
        if d not in self.opts:  # a fresh optimizer per domain, kept for its epochs
            self.opts[d] = self.fw.make_optimizer(params, cfg.finetune_optimizer, cfg.finetune_lr)
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
