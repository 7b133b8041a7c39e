"""Multi-domain models: each domain has its own towers/gates (routed by `batch["domain_id"]`).
Shared-Bottom, MMoE, PLE (one CGC level) and STAR (star-topology FCN, partitioned
normalisation, auxiliary network). Defaults are the paper's layer sizes (Sec. V-C)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from mdrbench.config import ModelConfig
from mdrbench.errors import UserError
from mdrbench.models.base import (
    DNN,
    MODELS,
    ExpertBank,
    Inputs,
    MDRModel,
    Tower,
    hidden_field,
    route,
    softmax_gate,
)


@MODELS("shared_bottom")
class SharedBottom(MDRModel):
    """A shared DNN, then one tower per domain."""

    domain_specific = r"re:^towers\."

    @dataclass
    class Config(ModelConfig):
        shared_hidden: list[int] = hidden_field(512, 256, 128)
        tower_hidden: list[int] = hidden_field(64)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        self.bottom = DNN(self.inputs.out_dim, c.shared_hidden, c.dropout)
        self.towers = nn.ModuleList(
            Tower(self.bottom.out_dim, c.tower_hidden, c.dropout) for _ in range(info.n_domains)
        )

    def forward(self, batch):
        h = self.bottom(self.inputs.fields(batch).flatten(1))
        return route(batch["domain_id"], lambda d, x: self.towers[d](x), h)


@MODELS("mmoe")
class MMoE(MDRModel):
    """Shared experts mixed by a per-domain softmax gate, then a per-domain tower."""

    domain_specific = r"re:^(gates|towers)\."

    @dataclass
    class Config(ModelConfig):
        n_experts: int = 2
        expert_hidden: list[int] = hidden_field(512, 256, 128)
        tower_hidden: list[int] = hidden_field(64)
        gate_hidden: list[int] = hidden_field(64)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        n = info.n_domains
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        d_in = self.inputs.out_dim
        self.experts = ExpertBank(c.n_experts, d_in, c.expert_hidden, c.dropout)
        self.gates = nn.ModuleList(
            softmax_gate(d_in, c.gate_hidden, c.n_experts, c.dropout) for _ in range(n)
        )
        self.towers = nn.ModuleList(
            Tower(self.experts.out_dim, c.tower_hidden, c.dropout) for _ in range(n)
        )

    def _domain(self, d: int, x: Tensor, e: Tensor) -> Tensor:
        w = self.gates[d](x).unsqueeze(-1)  # [b, E, 1]
        return self.towers[d]((w * e).sum(dim=1))

    def forward(self, batch):
        x = self.inputs.fields(batch).flatten(1)
        return route(batch["domain_id"], self._domain, x, self.experts(x))


@MODELS("ple")
class PLE(MDRModel):
    """PLE with one extraction level (CGC): shared experts and each domain's own experts,
    mixed by the domain's gate, then the domain's tower. One level keeps a sample's cost
    independent of the number of domains (a second level's shared gate would run every
    domain's experts on every sample)."""

    domain_specific = r"re:^(specific|gates|towers)\."

    @dataclass
    class Config(ModelConfig):
        n_shared_experts: int = 2
        n_specific_experts: int = 10
        expert_hidden: list[int] = hidden_field(64)
        tower_hidden: list[int] = hidden_field(256)
        gate_hidden: list[int] = hidden_field(64)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        n = info.n_domains
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        d_in = self.inputs.out_dim
        self.shared = ExpertBank(c.n_shared_experts, d_in, c.expert_hidden, c.dropout)
        self.specific = nn.ModuleList(
            ExpertBank(c.n_specific_experts, d_in, c.expert_hidden, c.dropout) for _ in range(n)
        )
        n_mix = c.n_shared_experts + c.n_specific_experts
        self.gates = nn.ModuleList(
            softmax_gate(d_in, c.gate_hidden, n_mix, c.dropout) for _ in range(n)
        )
        self.towers = nn.ModuleList(
            Tower(self.shared.out_dim, c.tower_hidden, c.dropout) for _ in range(n)
        )

    def _domain(self, d: int, x: Tensor, s: Tensor) -> Tensor:
        e = torch.cat([self.specific[d](x), s], dim=1)  # [b, n_specific + n_shared, H]
        w = self.gates[d](x).unsqueeze(-1)
        return self.towers[d]((w * e).sum(dim=1))

    def forward(self, batch):
        x = self.inputs.fields(batch).flatten(1)
        return route(batch["domain_id"], self._domain, x, self.shared(x))


class PartitionedNorm(nn.Module):
    """STAR's partitioned normalisation: batch statistics per domain in training, each
    domain's moving averages at evaluation; scale (gamma * gamma_d) and shift (beta + beta_d).

    Options for HAMUR's domain norm (scenario.HAMUR): `domain_affine=False` keeps one shared
    scale and shift, `unbiased=True` normalises with the unbiased batch variance (torch.var's
    default, as the HAMUR authors' adapter), `batch_stats_at_eval=True` normalises with the
    evaluated rows' own statistics at evaluation too (the authors' code keeps no moving
    averages). The moving averages are buffers (docs/models.md, "Training-time state")."""

    def __init__(
        self,
        n_domains: int,
        dim: int,
        momentum: float = 0.1,
        eps: float = 1e-5,
        domain_affine: bool = True,
        unbiased: bool = False,
        batch_stats_at_eval: bool = False,
    ):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.unbiased, self.batch_stats_at_eval = unbiased, batch_stats_at_eval
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.domain_affine = domain_affine
        if domain_affine:
            self.domain_gamma = nn.Parameter(torch.ones(n_domains, dim))
            self.domain_beta = nn.Parameter(torch.zeros(n_domains, dim))
        self.register_buffer("running_mean", torch.zeros(n_domains, dim))
        self.register_buffer("running_var", torch.ones(n_domains, dim))

    def forward(self, d: int, x: Tensor) -> Tensor:
        if (self.training or self.batch_stats_at_eval) and x.shape[0] > 1:
            mean = x.mean(dim=0)
            var = x.var(dim=0, unbiased=self.unbiased)
            if self.training:
                with torch.no_grad():
                    m = self.momentum
                    self.running_mean[d].mul_(1 - m).add_(m * mean.detach())
                    self.running_var[d].mul_(1 - m).add_(m * var.detach())
        else:
            mean, var = self.running_mean[d], self.running_var[d]
        x_hat = (x - mean) * torch.rsqrt(var + self.eps)
        if not self.domain_affine:
            return x_hat * self.gamma + self.beta
        return x_hat * (self.gamma * self.domain_gamma[d]) + (self.beta + self.domain_beta[d])


class StarLinear(nn.Module):
    """A star-topology layer: weight W * W_d (element-wise), bias b + b_d. Kernels: Glorot
    uniform for W and W_d alike (authors: model_zoo/Star/star_fcn.py `StarFCN.build`,
    `kernel_initializer='glorot_uniform'` for kernel_shared and kernel_specific), or W_d = 1
    (`domain_init="ones"`, STAR's paper: every domain starts from the shared weights).
    `gain` scales the Glorot bound; `bias=False` drops both biases. The "domains" are any
    partition of the rows: AdaptDHM's clusters use this layer too."""

    def __init__(
        self,
        n_domains: int,
        in_dim: int,
        out_dim: int,
        domain_init: str = "glorot",
        gain: float = 1.0,
        bias: bool = True,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        nn.init.xavier_uniform_(self.weight, gain=gain)
        self.has_bias = bias
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_dim))
        self.domain_weight = nn.Parameter(torch.ones(n_domains, in_dim, out_dim))
        if domain_init == "glorot":
            for d in range(n_domains):
                nn.init.xavier_uniform_(self.domain_weight.data[d], gain=gain)
        elif domain_init != "ones":
            raise UserError(f"domain_init: expected 'glorot' or 'ones', got {domain_init!r}")
        if bias:
            self.domain_bias = nn.Parameter(torch.zeros(n_domains, out_dim))

    def forward(self, d: int, x: Tensor) -> Tensor:
        out = x @ (self.weight * self.domain_weight[d])
        return out + (self.bias + self.domain_bias[d]) if self.has_bias else out


@MODELS("star")
class STAR(MDRModel):
    """STAR (Sheng et al., CIKM 2021) as the authors configured it (config/*/star*.json:
    norm "pn", dense "star", `auxiliary_net: false`, no dropout key; model_zoo/Star/star.py
    `Star.build_model_structure`): partitioned normalisation (Keras momentum 0.99 = torch
    0.01, epsilon 1e-3: model_zoo/Star/partitioned_norm.py), a star-topology FCN whose
    weights are the shared ones times the domain's, then its own output layer (a plain
    shared Dense to one logit, Glorot uniform). Options for STAR's paper: `aux_net=true`
    adds the auxiliary network's logit (over the input fields, the domain among them),
    `output="star"` makes the output layer a star layer too, `domain_init="ones"`,
    `dropout` > 0 after each hidden layer. Its user, item and domain tables are Keras
    `layers.Embedding` with the defaults (`Star.build_emb`, `Star.build_inputs`): drawn
    uniform +-0.05 (`emb_init`, `init_std`), no L2 (`emb_l2` 0)."""

    domain_specific = r"re:\.domain_(weight|bias|gamma|beta)$"

    @dataclass
    class Config(ModelConfig):
        dropout: float = 0.0  # authors' STAR configs have no dropout
        # authors: Keras layers.Embedding defaults (model_zoo/Star/star.py `build_emb`,
        # `build_inputs`): RandomUniform(-0.05, 0.05), no regularizer
        emb_init: Literal["normal", "uniform"] = "uniform"
        init_std: float = 0.05
        hidden: list[int] = hidden_field(256, 128, 64)
        aux_net: bool = False  # authors: auxiliary_net false in every config
        aux_hidden: list[int] = hidden_field(64)  # authors: auxiliary_dim 64
        output: Literal["dense", "star"] = "dense"  # dense (authors) | star
        domain_init: Literal["glorot", "ones"] = "glorot"  # W_d init: glorot (authors) | ones
        pn_momentum: float = 0.01  # torch convention (Keras momentum 0.99)
        pn_eps: float = 1e-3  # Keras epsilon 1e-3

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        if c.output not in ("dense", "star"):
            raise UserError(f"output: expected 'dense' or 'star', got {c.output!r}")
        n = info.n_domains
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        d_in = self.inputs.out_dim
        self.norm = PartitionedNorm(n, d_in, c.pn_momentum, c.pn_eps)
        sizes = [d_in, *c.hidden]
        self.layers = nn.ModuleList(
            StarLinear(n, a, b, c.domain_init) for a, b in zip(sizes[:-1], sizes[1:])
        )
        if c.output == "star":
            self.star_out = StarLinear(n, sizes[-1], 1, c.domain_init)
        else:
            self.out = nn.Linear(sizes[-1], 1)
            nn.init.xavier_uniform_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        self.dropout = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        self.aux = Tower(d_in, c.aux_hidden, c.dropout) if c.aux_net else None

    def _domain(self, d: int, x: Tensor) -> Tensor:
        h = self.norm(d, x)
        for layer in self.layers:
            h = self.dropout(torch.relu(layer(d, h)))
        if self.cfg.output == "star":
            return self.star_out(d, h).squeeze(-1)
        return self.out(h).squeeze(-1)

    def forward(self, batch):
        x = self.inputs.fields(batch).flatten(1)
        logit = route(batch["domain_id"], self._domain, x)
        return logit if self.aux is None else logit + self.aux(x)
