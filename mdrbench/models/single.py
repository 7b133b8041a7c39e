"""Single-domain CTR models (they see the domain only as an input field): MLP, WDL, NeurFM,
AutoInt, DeepFM. Layer sizes default to the paper's (hidden [256, 128, 64], AutoInt 4 heads)
and the structures follow DeepCTR, which the paper's authors used."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mdrbench.config import ModelConfig
from mdrbench.errors import UserError
from mdrbench.models.base import DNN, MODELS, Inputs, MDRModel, hidden_field, linear


def _head(in_dim: int) -> nn.Linear:
    return linear(in_dim, 1)


@MODELS("mlp")
class MLP(MDRModel):
    """Concatenated field embeddings -> DNN -> logit."""

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = hidden_field(256, 128, 64)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        self.dnn = DNN(self.inputs.out_dim, c.hidden, c.dropout)
        self.head = _head(self.dnn.out_dim)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        x = self.inputs.fields(batch).flatten(1)
        return self.head(self.dnn(x)).squeeze(-1)


@MODELS("wdl")
class WDL(MDRModel):
    """Wide & Deep: linear logit of the ids (wide) + DNN logit (deep)."""

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = hidden_field(256, 128, 64)
        linear_l2: float = 0.0  # Keras l2 on the linear part (DeepCTR's l2_reg_linear, 1e-5)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        self.inputs = Inputs(info, c.emb_dim, c.init_std, linear=True, init=c.emb_init)
        self.dnn = DNN(self.inputs.out_dim, c.hidden, c.dropout)
        self.head = _head(self.dnn.out_dim)

    def forward(self, batch):
        deep = self.head(self.dnn(self.inputs.fields(batch).flatten(1))).squeeze(-1)
        return self.inputs.linear(batch) + deep


def _bi_interaction(e: Tensor) -> Tensor:
    """0.5 * ((sum_f e_f)^2 - sum_f e_f^2): [B, F, D] -> [B, D] (pairwise products, summed)."""
    s = e.sum(dim=1)
    return 0.5 * (s * s - (e * e).sum(dim=1))


@MODELS("nfm")
class NFM(MDRModel):
    """NeurFM: linear logit + DNN over bi-interaction pooling of the field embeddings."""

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = hidden_field(256, 128, 64)
        bi_dropout: float = 0.0  # DeepCTR's default
        linear_l2: float = 0.0  # Keras l2 on the linear part (DeepCTR's l2_reg_linear, 1e-5)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        self.inputs = Inputs(info, c.emb_dim, c.init_std, linear=True, init=c.emb_init)
        self.bi_dropout = nn.Dropout(c.bi_dropout) if c.bi_dropout > 0 else nn.Identity()
        self.dnn = DNN(c.emb_dim, c.hidden, c.dropout)
        self.head = _head(self.dnn.out_dim)

    def forward(self, batch):
        bi = self.bi_dropout(_bi_interaction(self.inputs.fields(batch)))
        return self.inputs.linear(batch) + self.head(self.dnn(bi)).squeeze(-1)


class InteractingLayer(nn.Module):
    """AutoInt's multi-head self-attention over fields, with a residual connection."""

    def __init__(self, dim: int, heads: int, use_res: bool = True):
        super().__init__()
        if dim % heads:
            raise UserError(f"autoint: emb_dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.w_query = nn.Parameter(torch.empty(dim, dim))
        self.w_key = nn.Parameter(torch.empty(dim, dim))
        self.w_value = nn.Parameter(torch.empty(dim, dim))
        self.w_res = nn.Parameter(torch.empty(dim, dim)) if use_res else None
        for p in self.parameters():
            nn.init.xavier_normal_(p)

    def forward(self, x: Tensor) -> Tensor:  # [B, F, D] -> [B, F, D]
        b, f, d = x.shape
        h = self.heads

        def split(t: Tensor) -> Tensor:  # [B, F, D] -> [B, H, F, D/H]
            return t.view(b, f, h, d // h).transpose(1, 2)

        q, k, v = split(x @ self.w_query), split(x @ self.w_key), split(x @ self.w_value)
        att = torch.softmax(q @ k.transpose(-1, -2), dim=-1)  # unscaled, as DeepCTR
        out = (att @ v).transpose(1, 2).reshape(b, f, d)
        if self.w_res is not None:
            out = out + x @ self.w_res
        return torch.relu(out)


@MODELS("autoint")
class AutoInt(MDRModel):
    """AutoInt: stacked self-attention interacting layers + a DNN, combined in one logit."""

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = hidden_field(256, 128, 64)
        heads: int = 4  # paper: 4
        att_layers: int = 3  # DeepCTR's default

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        self.att = nn.Sequential(
            *[InteractingLayer(c.emb_dim, c.heads) for _ in range(c.att_layers)]
        )
        self.dnn = DNN(self.inputs.out_dim, c.hidden, c.dropout)
        self.head = _head(self.inputs.out_dim + (self.dnn.out_dim if c.hidden else 0))
        self.use_dnn = bool(c.hidden)

    def forward(self, batch):
        e = self.inputs.fields(batch)
        parts = [self.att(e).flatten(1)]
        if self.use_dnn:
            parts.append(self.dnn(e.flatten(1)))
        return self.head(torch.cat(parts, dim=1)).squeeze(-1)


@MODELS("deepfm")
class DeepFM(MDRModel):
    """DeepFM: linear logit + factorization-machine second-order term + DNN logit."""

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = hidden_field(256, 128, 64)
        linear_l2: float = 0.0  # Keras l2 on the linear part (DeepCTR's l2_reg_linear, 1e-5)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        self.inputs = Inputs(info, c.emb_dim, c.init_std, linear=True, init=c.emb_init)
        self.dnn = DNN(self.inputs.out_dim, c.hidden, c.dropout)
        self.head = _head(self.dnn.out_dim)

    def forward(self, batch):
        e = self.inputs.fields(batch)
        fm = _bi_interaction(e).sum(dim=1)
        deep = self.head(self.dnn(e.flatten(1))).squeeze(-1)
        return self.inputs.linear(batch) + fm + deep
