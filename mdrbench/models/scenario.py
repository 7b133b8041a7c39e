"""The field's multi-domain models since MAMDR, under Scenario-Wise Rec's names (github
Xiaopengli1/Scenario-Wise-Rec, "SWR" below): SAR-Net, M2M, AdaSparse, AdaptDHM, EPNet,
PPNet, HAMUR and M3oE. docs/models.md has one card per model: equation, domain-specific
parts, defaults and their sources, and every difference from SWR's code.

Each model follows its paper; SWR's implementation gives the defaults (read from
baselines/swr_profile.json through `swr.default`, each with its source line) and the
details a paper leaves open. Where SWR differs from the paper and it changes numbers, its
way is an option (`swr.reference(name)` lists them). Every model takes the inputs every
registered model takes (`Inputs`: user, item and domain fields, Taobao's fixed features,
emb_dim, init_std) and picks fields by name (`scenario_fields`, `id_fields`), so more
categorical fields only add names to `Inputs`.

Layers are torch's `nn.Linear` with its default initialisation, as SWR's; hidden layers
are `DNN` blocks (Linear, then BatchNorm with `batch_norm=true` as SWR's MLP, activation,
then mdrbench's common `dropout`). Rows run only through their own domain's (or cluster's)
parts (`route`), never through every domain's: SWR computes every domain's towers for
every row and keeps one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mdrbench.baselines import swr
from mdrbench.config import ModelConfig
from mdrbench.errors import UserError
from mdrbench.models.base import (
    DNN,
    MODELS,
    BatchNorm,
    Inputs,
    MDRModel,
    group_by_domain,
    route,
)
from mdrbench.models.multi import PartitionedNorm, StarLinear

# ----------------------------------------------------------------------------- blocks


def _mlp(in_dim: int, hidden: list[int], cfg, act=nn.ReLU, dropout: float | None = None) -> DNN:
    """SWR's MLP block (scenario_wise_rec/basic/layers.py `MLP`, no output layer): Linear,
    BatchNorm when `cfg.batch_norm`, activation, Dropout (`cfg.dropout` unless given)."""
    p = cfg.dropout if dropout is None else dropout
    return DNN(in_dim, hidden, p, getattr(cfg, "batch_norm", False), act, glorot=False)


def _split(inputs: Inputs, names: list[str], what: str) -> tuple[list[int], list[int]]:
    """Positions of the named fields and of the others (each list non-empty)."""
    if not names:
        raise UserError(f"{what}: name at least one field ({', '.join(inputs.names)})")
    chosen = inputs.index(names, what)
    rest = [i for i in range(inputs.n_fields) if i not in chosen]
    if not rest:
        raise UserError(f"{what}: every field is listed; leave at least one other field")
    return chosen, rest


def _scenario_inputs(model: MDRModel, info) -> tuple[int, int]:
    """Give `model` its `inputs` and the positions of its scenario fields and of the
    others (`scenario_idx`, `agnostic_idx`); returns their widths."""
    c = model.cfg
    model.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
    model.scenario_idx, model.agnostic_idx = _split(
        model.inputs, c.scenario_fields, "scenario_fields"
    )
    return len(model.scenario_idx) * c.emb_dim, len(model.agnostic_idx) * c.emb_dim


def _scenario_parts(model: MDRModel, batch) -> tuple[Tensor, Tensor]:
    """The batch's scenario fields and its other fields, each concatenated."""
    parts = model.inputs.embed(batch)
    return model.inputs.concat(parts, model.scenario_idx), model.inputs.concat(
        parts, model.agnostic_idx
    )


def _uniform(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    """torch's default Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for a
    weight or bias of any shape (a bank of layers stored as one tensor)."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class GateNU(nn.Module):
    """PEPNet's Gate Neural Unit (Chang et al., KDD 2023, Sec. "Gate Neural Unit"):
    delta = gamma * sigmoid(W2 relu(W1 x + b1) + b2), each factor in (0, gamma); gamma = 2
    lets a factor scale a signal up as well as down (SWR: basic/layers.py `GateNU`; hidden
    width = the output's unless given)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None, gamma: float):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden or out_dim)
        self.fc2 = nn.Linear(hidden or out_dim, out_dim)
        self.gamma = gamma

    def forward(self, x: Tensor, stopped: Tensor | None = None) -> Tensor:
        """delta for the input [x, sg(stopped)]: `stopped`'s columns meet their own slice
        of W1, so no input gradient is computed for them (the same function as
        fc1(cat(x, stopped.detach())), without the backward matmul it would discard)."""
        if stopped is None:
            h = self.fc1(x)
        else:
            w, k = self.fc1.weight, x.shape[1]
            h = F.linear(x, w[:, :k], self.fc1.bias) + F.linear(stopped.detach(), w[:, k:])
        return self.gamma * torch.sigmoid(self.fc2(torch.relu(h)))


class ExpertMLPs(nn.Module):
    """`n` MLP experts of the same widths as batched matmuls: [B, in] -> [B, n, out].
    Each layer: Linear (torch's default init per expert), then `norm` ("batch": a BatchNorm
    per expert and feature, as SWR's MLP; "layer": a LayerNorm per expert, as M3oE's
    `Mlp_N`; None), activation, dropout."""

    def __init__(
        self,
        n: int,
        in_dim: int,
        hidden: list[int],
        dropout: float,
        norm: str | None = None,
        act=nn.ReLU,
    ):
        super().__init__()
        self.n, self.norm = n, norm
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.norm_weights, self.norm_biases = nn.ParameterList(), nn.ParameterList()
        self.batch_norms = nn.ModuleList()
        for h in hidden:
            self.weights.append(_uniform((n, in_dim, h), in_dim))
            self.biases.append(_uniform((n, 1, h), in_dim))
            if norm == "layer":
                self.norm_weights.append(nn.Parameter(torch.ones(n, 1, h)))
                self.norm_biases.append(nn.Parameter(torch.zeros(n, 1, h)))
            elif norm == "batch":
                self.batch_norms.append(BatchNorm(n * h))
            in_dim = h
        self.act = act()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        h = x.unsqueeze(0)  # [1, B, in], broadcast over experts
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.matmul(h, w) + b  # [n, B, out]
            if self.norm == "layer":
                h = F.layer_norm(h, h.shape[-1:]) * self.norm_weights[i] + self.norm_biases[i]
            elif self.norm == "batch":
                n, rows, width = h.shape
                flat = h.transpose(0, 1).reshape(rows, n * width)
                h = self.batch_norms[i](flat).view(rows, n, width).transpose(0, 1)
            h = self.dropout(self.act(h))
        return h.transpose(0, 1)  # [B, n, out]


class _Tower(nn.Module):
    """Hidden layers (a list, so a model can act between them) and a linear head."""

    def __init__(self, in_dim: int, hidden: list[int], cfg):
        super().__init__()
        sizes = [in_dim, *hidden]
        self.layers = nn.ModuleList(_mlp(a, [b], cfg) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], 1)


# ----------------------------------------------------------------------------- SAR-Net


class LinearExperts(nn.Module):
    """`n` one-layer experts x W_e + b_e as one matmul: [B, in] -> [B, n, out]. SAR-Net's
    debias expert (SWR: sarnet.py `DebiasExpertNet`: BatchNorm1d, then Linear(in, 16), no
    activation). With `batch_norm` the n experts' BatchNorms see one and the same input, so
    their batch and running statistics are one BatchNorm's (kept once) and each expert keeps
    its own scale gamma_e and shift beta_e, folded into its weights:
    (x_hat * gamma_e + beta_e) W_e + b_e = x_hat (gamma_e W_e) + (beta_e W_e + b_e)."""

    def __init__(self, n: int, in_dim: int, out_dim: int, batch_norm: bool):
        super().__init__()
        self.weight = _uniform((n, in_dim, out_dim), in_dim)
        self.bias = _uniform((n, out_dim), in_dim)
        self.norm = BatchNorm(in_dim, affine=False) if batch_norm else None
        if batch_norm:
            self.gamma = nn.Parameter(torch.ones(n, in_dim))
            self.beta = nn.Parameter(torch.zeros(n, in_dim))

    def forward(self, x: Tensor) -> Tensor:
        n, d, o = self.weight.shape
        w, b = self.weight, self.bias
        if self.norm is not None:
            x = self.norm(x)
            b = b + torch.einsum("ni,nio->no", self.beta, w)
            w = self.gamma.unsqueeze(-1) * w
        return (x @ w.permute(1, 0, 2).reshape(d, n * o)).view(-1, n, o) + b


@MODELS("sarnet")
class SARNet(MDRModel):
    """SAR-Net (Shen et al., CIKM 2021): a scenario-specific transform of the input, shared
    and scenario-specific debias experts mixed by a gate, then an MLP. Paper parts that need
    inputs the benchmark's data does not have are left out, as SWR does: the cross-scenario
    attention over user behaviour sequences and the fairness-coefficient bias network.

    x_s = x * w_s + b_s (scenario-specific transform layer; SWR: sarnet.py
    `Sarnet.forward`, w_s Glorot uniform, b_s U(0, 1)); e = [shared experts(x_s),
    experts of scenario s(x_s)]; g = softmax(W_g x_s + b_g) (one gate over the transformed
    input, SWR's reading of the multi-scenario gating); logit = MLP(sum_i g_i e_i).
    Domain-specific parts: `scale`, `shift`, `specific.<d>` (`domain_specific`).
    `batch_norm=true`: SWR's BatchNorms (before each expert, in the MLP)."""

    domain_specific = r"re:^(scale$|shift$|specific\.)"

    @dataclass
    class Config(ModelConfig):
        n_shared_experts: int = swr.default("sarnet", "n_shared_experts")
        n_specific_experts: int = swr.default("sarnet", "n_specific_experts")
        expert_dim: int = swr.default("sarnet", "expert_dim")
        hidden: list[int] = swr.default("sarnet", "hidden")
        batch_norm: bool = False  # SWR: true (sarnet.py DebiasExpertNet, basic/layers.py MLP)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        n = info.n_domains
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        d_in = self.inputs.out_dim
        bound = math.sqrt(6.0 / (d_in + 1))  # Glorot uniform of SWR's (1, d_in) weight
        self.scale = nn.Parameter(torch.empty(n, d_in).uniform_(-bound, bound))
        self.shift = nn.Parameter(torch.empty(n, d_in).uniform_(0.0, 1.0))
        self.shared = LinearExperts(c.n_shared_experts, d_in, c.expert_dim, c.batch_norm)
        self.specific = nn.ModuleList(
            LinearExperts(c.n_specific_experts, d_in, c.expert_dim, c.batch_norm) for _ in range(n)
        )
        self.gate = nn.Linear(d_in, c.n_shared_experts + c.n_specific_experts)
        self.mlp = _mlp(c.expert_dim, c.hidden, c)
        self.head = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, batch):
        batch, inverse = group_by_domain(batch)
        d = batch["domain_id"]
        xs = self.inputs.fields(batch).flatten(1) * self.scale[d] + self.shift[d]
        specific = route(d, lambda k, rows: self.specific[k](rows), xs)
        experts = torch.cat([self.shared(xs), specific], dim=1)  # [B, S + P, expert_dim]
        g = torch.softmax(self.gate(xs), dim=-1)
        mixed = (g.unsqueeze(-1) * experts).sum(dim=1)
        out = self.head(self.mlp(mixed)).squeeze(-1)
        return out if inverse is None else out[inverse]


# ----------------------------------------------------------------------------- M2M


@MODELS("m2m")
class M2M(MDRModel):
    """M2M (Zhang et al., WSDM 2022) in its single-task form: experts over a Transformer
    encoding of the fields; a meta attention and a meta tower whose weights a meta unit
    generates from the scenario knowledge.

    z = MLP_s(e_scenario), t = MLP_t(e_scenario) (scenario knowledge and, single-task, the
    task representation from the scenario field as SWR); E_i = expert_i(Transformer(fields));
    meta unit: W = reshape(MLP_W(z)), b = MLP_b(z); meta attention: a_i = v .
    act([E_i, t] W + b), alpha = softmax(a), r = sum_i alpha_i E_i; meta tower (per layer):
    r <- act(r W'(z) + b'(z) + r); logit = MLP(r). act = LeakyReLU(0.1) (SWR: m2m.py
    `M2M.forward`). The Transformer encodes one row's fields (tokens = fields); SWR's
    nn.Transformer attends across the rows of the batch instead (not offered:
    docs/models.md). Domain-specific parts: none of its own (weights are generated from the
    domain's embedding, `inputs.domain`). `batch_norm=true`: SWR's BatchNorm in every MLP."""

    @dataclass
    class Config(ModelConfig):
        n_experts: int = swr.default("m2m", "n_experts")
        expert_dim: int = swr.default("m2m", "expert_dim")
        heads: int = swr.default("m2m", "heads")
        encoder_layers: int = swr.default("m2m", "encoder_layers")
        ff_dim: int = swr.default("m2m", "ff_dim")
        transformer_dropout: float = swr.default("m2m", "transformer_dropout")
        tower_layers: int = swr.default("m2m", "tower_layers")
        hidden: list[int] = swr.default("m2m", "hidden")
        leaky_slope: float = swr.default("m2m", "leaky_slope")
        scenario_fields: list[str] = swr.default("m2m", "scenario_fields")
        batch_norm: bool = False  # SWR: true (basic/layers.py MLP)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        if c.emb_dim % c.heads:
            raise UserError(f"m2m: emb_dim {c.emb_dim} must be divisible by heads {c.heads}")
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        self.scenario_idx, _ = _split(self.inputs, c.scenario_fields, "scenario_fields")
        layer = nn.TransformerEncoderLayer(
            c.emb_dim, c.heads, c.ff_dim, c.transformer_dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, c.encoder_layers, enable_nested_tensor=False)
        act = partial(nn.LeakyReLU, c.leaky_slope)
        self.act = act()
        h = c.expert_dim
        norm = "batch" if c.batch_norm else None
        self.experts = ExpertMLPs(c.n_experts, self.inputs.out_dim, [h], c.dropout, norm, act)
        s_dim = len(self.scenario_idx) * c.emb_dim

        def unit(a: int, b: int) -> DNN:  # a generator or knowledge MLP: no dropout
            return _mlp(a, [b], c, act, dropout=0.0)

        self.scenario_mlp, self.task_mlp = unit(s_dim, h), unit(s_dim, h)
        self.att_w, self.att_b = unit(h, 4 * h * h), unit(h, 2 * h)
        self.v = nn.Parameter(torch.ones(2 * h))  # SWR: torch.ones(2 * h, 1)
        self.tower_w = nn.ModuleList(unit(h, h * h) for _ in range(c.tower_layers))
        self.tower_b = nn.ModuleList(unit(h, h) for _ in range(c.tower_layers))
        self.mlp = _mlp(h, c.hidden, c)
        self.head = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, batch):
        parts = self.inputs.embed(batch)
        s = self.inputs.concat(parts, self.scenario_idx)
        experts = self.experts(self.encoder(torch.stack(parts, dim=1)).flatten(1))  # [B, n, h]
        b, n, h = experts.shape
        z, t = self.scenario_mlp(s), self.task_mlp(s)
        q = torch.cat([experts, t.unsqueeze(1).expand(b, n, h)], dim=2)  # [B, n, 2h]
        a = self.act(torch.bmm(q, self.att_w(z).view(b, 2 * h, 2 * h)) + self.att_b(z)[:, None])
        alpha = torch.softmax(a @ self.v, dim=1)  # [B, n]
        r = (alpha.unsqueeze(-1) * experts).sum(dim=1)  # [B, h]
        for tw, tb in zip(self.tower_w, self.tower_b):
            r = self.act(torch.bmm(r.unsqueeze(1), tw(z).view(b, h, h)).squeeze(1) + tb(z) + r)
        return self.head(self.mlp(r)).squeeze(-1)


# ----------------------------------------------------------------------------- AdaSparse


@MODELS("adasparse")
class AdaSparse(MDRModel):
    """AdaSparse (Yang et al., CIKM 2022): a DNN whose neurons a domain-aware pruner weighs
    per sample, layer by layer (the input layer's agnostic fields included).

    For layer l with input h_l: v = W_l [e_scenario, h_l] (a bias-free linear pruner, SWR:
    basic/layers.py `Pruner`); the weighting factor pi_l by `form`:
    "binarization" 1[sigmoid(alpha v) >= eps] (straight-through gradient of sigmoid(alpha v));
    "scaling" beta sigmoid(v); "fusion" p 1[p >= eps] with p = beta sigmoid(alpha v); then
    h_l <- h_l * pi_l (beta = `factor_max`, eps = `epsilon`). alpha starts at `alpha_init`
    and grows by `delta_alpha` with every training forward pass (the paper's annealing
    towards a step; a buffer: docs/models.md, "Training-time state").
    `sign="sign"` is SWR's: torch.sign(. - eps) in place of the 0/1 step, so a pruned neuron
    is multiplied by -p instead of 0 (and scaling thresholds too). Domain-specific parts:
    none of its own (the pruners read the domain's embedding)."""

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = swr.default("adasparse", "hidden")
        form: Literal["binarization", "scaling", "fusion"] = swr.default("adasparse", "form")
        epsilon: float = swr.default("adasparse", "epsilon")
        factor_max: float = swr.default("adasparse", "factor_max")  # beta
        alpha_init: float = swr.default("adasparse", "alpha_init")
        delta_alpha: float = swr.default("adasparse", "delta_alpha")
        sign: Literal["step", "sign"] = "step"  # step: a pruned neuron is 0; SWR: torch.sign
        scenario_fields: list[str] = swr.default("adasparse", "scenario_fields")
        batch_norm: bool = False  # SWR: true (adasparse.py AdaSparse.__init__)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        s_dim, a_dim = _scenario_inputs(self, info)
        sizes = [s_dim + a_dim, *c.hidden]
        self.layers = nn.ModuleList(_mlp(a, [b], c) for a, b in zip(sizes[:-1], sizes[1:]))
        widths = [a_dim, *c.hidden]  # what each pruner weighs
        self.pruners = nn.ModuleList(nn.Linear(s_dim + w, w, bias=False) for w in widths)
        self.head = nn.Linear(sizes[-1], 1)
        self.register_buffer("alpha", torch.tensor(float(c.alpha_init)))

    def factors(self, i: int, scenario: Tensor, h: Tensor) -> Tensor:
        """pi_i for the rows (the pruner of layer i; 0: the input fields)."""
        c = self.cfg
        v = self.pruners[i](torch.cat([scenario, h], dim=1))
        if c.form == "scaling":
            p = c.factor_max * torch.sigmoid(v)
            return p * torch.sign(p - c.epsilon) if c.sign == "sign" else p
        if c.form == "binarization":
            s = torch.sigmoid(self.alpha * v)
            if c.sign == "sign":
                return torch.sign(s - c.epsilon)
            return s + ((s >= c.epsilon).to(s.dtype) - s).detach()  # straight-through
        p = c.factor_max * torch.sigmoid(self.alpha * v)  # fusion
        if c.sign == "sign":
            return p * torch.sign(p - c.epsilon)
        return p * (p >= c.epsilon).to(p.dtype)

    def forward(self, batch):
        if self.training:
            with torch.no_grad():
                self.alpha.add_(self.cfg.delta_alpha)
        s, a = _scenario_parts(self, batch)
        h = torch.cat([s, a * self.factors(0, s, a)], dim=1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            h = h * self.factors(i + 1, s, h)
        return self.head(h).squeeze(-1)


# ----------------------------------------------------------------------------- AdaptDHM


@MODELS("adaptdhm")
class AdaptDHM(MDRModel):
    """AdaptDHM (Li et al., 2022): samples are routed to distribution clusters learned
    online, whatever their domain; each cluster has its own layers over shared ones, STAR's
    way (W = W_shared * W_k, b = b_shared + b_k).

    Routing (distribution adaptation; SWR: adaptdhm.py `AdaptDHM.cal_router`): with the
    input x (gradient stopped) and unit-norm centres c_k, in training `routing_iters` times
    r_ik = softmax_k(x_i . c_k), c_k <- normalize(m c_k + (1 - m) sum_i r_ik x_i) (m =
    `center_momentum`, SWR's beta); then
    row i goes to argmax_k x_i . c_k. The centres are a buffer the model updates itself in
    training forward passes (docs/models.md, "Training-time state"); evaluation only reads
    them. Each cluster's layers run on its own rows only. Domain-specific parts: none (the
    per-cluster weights `layers.<l>.domain_weight`/`domain_bias` belong to clusters).
    `bias=false` is SWR's (its biases are created but never added)."""

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = swr.default("adaptdhm", "hidden")
        n_clusters: int = swr.default("adaptdhm", "n_clusters")
        center_momentum: float = swr.default("adaptdhm", "center_momentum")
        routing_iters: int = swr.default("adaptdhm", "routing_iters")
        bias: bool = True  # b_shared + b_k (STAR's layer); SWR: false

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        if not 0.0 <= c.center_momentum <= 1.0:
            raise UserError(f"center_momentum: from 0 to 1, got {c.center_momentum}")
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        sizes = [self.inputs.out_dim, *c.hidden, 1]
        gain = nn.init.calculate_gain("relu")  # SWR: xavier_uniform_(gain=relu's)
        self.layers = nn.ModuleList(
            StarLinear(c.n_clusters, a, b, gain=gain, bias=c.bias)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.dropout = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        centers = F.normalize(torch.randn(c.n_clusters, self.inputs.out_dim), dim=1)
        self.register_buffer("centers", centers)

    @torch.no_grad()
    def assign(self, x: Tensor) -> Tensor:
        """Each row's cluster; in training, the centres move first (dynamic routing)."""
        x = x.detach()
        c = self.centers
        if self.training:
            beta = self.cfg.center_momentum
            for _ in range(self.cfg.routing_iters):
                r = torch.softmax(x @ c.T, dim=1)  # [B, K]
                c = F.normalize(beta * c + (1 - beta) * (r.T @ x), dim=1)
            self.centers.copy_(c)
        return (x @ c.T).argmax(dim=1)

    def _cluster(self, k: int, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = self.dropout(torch.relu(layer(k, x)))
        return self.layers[-1](k, x).squeeze(-1)

    def forward(self, batch):
        x = self.inputs.fields(batch).flatten(1)
        return route(self.assign(x), self._cluster, x)


# ----------------------------------------------------------------------------- EPNet, PPNet


@MODELS("epnet")
class EPNet(MDRModel):
    """EPNet, PEPNet's embedding personalisation (Chang et al., KDD 2023, Sec. "Embedding
    Personalized Network"): a Gate NU fed the scenario fields and the other fields' embeddings
    (gradient stopped) scales the other fields' embeddings element-wise, then a DNN.

    delta = GateNU([e_scenario, sg(E)]) (in (0, gate_scale)); O_ep = delta * E;
    logit = DNN(O_ep)
    (SWR: epnet.py `EPNet.forward`). Domain-specific parts: none of its own (the gate reads
    the domain's embedding). SWR's EPNet has no hidden layers (it passes its layer sizes as
    the MLP's output_layer flag): `hidden=[]` is that logistic regression."""

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = swr.default("epnet", "hidden")
        gate_scale: float = swr.default("epnet", "gate_scale")  # gamma
        gate_width: int | None = None  # Gate NU hidden width; None: its output width (SWR)
        scenario_fields: list[str] = swr.default("epnet", "scenario_fields")
        batch_norm: bool = False  # SWR's MLP block would have it (it has no hidden layer)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        s_dim, a_dim = _scenario_inputs(self, info)
        self.gate = GateNU(s_dim + a_dim, a_dim, c.gate_width, c.gate_scale)
        self.mlp = _mlp(a_dim, c.hidden, c)
        self.head = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, batch):
        s, a = _scenario_parts(self, batch)
        delta = self.gate(s, stopped=a)
        return self.head(self.mlp(a * delta)).squeeze(-1)


class _PPTower(_Tower):
    """One PPNet tower: a Gate NU per hidden layer, all fed the same gate input."""

    def __init__(self, in_dim: int, gate_dim: int, cfg):
        super().__init__(in_dim, cfg.hidden, cfg)
        gated = [in_dim, *cfg.hidden[:-1]] if cfg.gate_at == "input" else cfg.hidden
        self.gates = nn.ModuleList(
            GateNU(gate_dim, w, cfg.gate_width, cfg.gate_scale) for w in gated
        )
        self.gate_at_input = cfg.gate_at == "input"

    def forward(self, x: Tensor, g: Tensor, stopped: Tensor) -> Tensor:
        """The gates read [g, sg(stopped)]."""
        for layer, gate in zip(self.layers, self.gates):
            delta = gate(g, stopped)
            x = layer(x * delta) if self.gate_at_input else layer(x) * delta
        return self.head(x).squeeze(-1)


@MODELS("ppnet")
class PPNet(MDRModel):
    """PPNet, PEPNet's parameter personalisation (Chang et al., KDD 2023, Sec. "Parameter
    Personalized Network"): each hidden layer's input is scaled by a Gate NU fed the id
    fields' embeddings and all embeddings with the gradient stopped; one tower per domain
    (the paper's per-task towers, with domains as the tasks, as SWR).

    g = [e_user, e_item, sg(E)]; for each layer l: H_{l+1} = f((delta_l(g) * H_l) W_l + b_l),
    H_0 = E; logit = w . H_L + b. `gate_at="output"` (SWR: ppnet.py `PPTowerBlock.forward`)
    gates each layer's output instead; `inputs="swr"`: SWR's inputs (the gate reads the id
    embeddings and sg(the other fields), and the tower reads that gate input, so the other
    fields' embeddings get no gradient). Domain-specific parts: `towers.<d>` (with
    `towers="domain"`; `"shared"`: one tower, gates personalised by the ids only)."""

    domain_specific = r"re:^towers\."

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = swr.default("ppnet", "hidden")
        gate_scale: float = swr.default("ppnet", "gate_scale")  # gamma
        gate_width: int | None = None  # Gate NU hidden width; None: its output width (SWR)
        id_fields: list[str] = swr.default("ppnet", "id_fields")
        towers: Literal["domain", "shared"] = swr.default("ppnet", "towers")
        gate_at: Literal["input", "output"] = "input"  # input: the paper's; output: SWR's
        inputs: Literal["paper", "swr"] = "paper"
        batch_norm: bool = False  # SWR: true (basic/layers.py MLP)

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        if not c.hidden:
            raise UserError("ppnet: hidden needs at least one layer (the gates scale layers)")
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        self.id_idx, self.other_idx = _split(self.inputs, c.id_fields, "id_fields")
        ids = len(self.id_idx) * c.emb_dim
        if c.inputs == "paper":
            gate_dim, tower_dim = ids + self.inputs.out_dim, self.inputs.out_dim
        else:
            gate_dim = tower_dim = self.inputs.out_dim
        n = info.n_domains if c.towers == "domain" else 1
        self.towers = nn.ModuleList(_PPTower(tower_dim, gate_dim, c) for _ in range(n))

    def forward(self, batch):
        if len(self.towers) > 1:
            batch, inverse = group_by_domain(batch)
            out = self._forward(batch)
            return out if inverse is None else out[inverse]
        return self._forward(batch)

    def _forward(self, batch):
        parts = self.inputs.embed(batch)
        ids = self.inputs.concat(parts, self.id_idx)
        if self.cfg.inputs == "paper":  # gates: [ids, sg(all fields)]; tower: all fields
            x = torch.cat(parts, dim=1)
            stopped = x.detach()
        else:  # gates and tower: [ids, sg(the other fields)]
            stopped = self.inputs.concat(parts, self.other_idx).detach()
            x = torch.cat([ids, stopped], dim=1)
        if len(self.towers) == 1:
            return self.towers[0](x, ids, stopped)
        return route(batch["domain_id"], lambda d, *t: self.towers[d](*t), x, ids, stopped)


# ----------------------------------------------------------------------------- HAMUR


class HyperAdapter(nn.Module):
    """HAMUR's adapter cell (Li et al., CIKM 2023; SWR = the authors' code, hamur.py
    `HamurSmall.forward`): a bottleneck whose weights the hyper-network generates per row as
    low-rank products W = U H V (H: the row's k x k instance matrix, U and V shared), then
    the domain norm and a shortcut:

        a = sigmoid(h U_1 H V_1 + b_1); u = a U_2 H V_2 + b_2; h <- h + DomainNorm_d(u).

    x W is computed as ((x U) H) V: a row costs O(k (dim + k + bottleneck)), never the
    [rows, dim, bottleneck] weights SWR builds per row. U and V start at ones, as the
    authors'. The domain norm (`PartitionedNorm`, one scale and shift, unbiased batch
    variance as the authors') keeps each domain's moving averages for evaluation (a buffer);
    `batch_stats_at_eval` normalises with the evaluated rows' statistics, as the authors."""

    def __init__(self, dim: int, bottleneck: int, k: int, n_domains: int, batch_stats: bool):
        super().__init__()
        self.u_down = nn.Parameter(torch.ones(dim, k))
        self.v_down = nn.Parameter(torch.ones(k, bottleneck))
        self.b_down = nn.Parameter(torch.zeros(bottleneck))
        self.u_up = nn.Parameter(torch.ones(bottleneck, k))
        self.v_up = nn.Parameter(torch.ones(k, dim))
        self.b_up = nn.Parameter(torch.zeros(dim))
        self.norm = PartitionedNorm(
            n_domains, dim, domain_affine=False, unbiased=True, batch_stats_at_eval=batch_stats
        )

    @staticmethod
    def project(x: Tensor, u: Tensor, hyper: Tensor, v: Tensor) -> Tensor:
        """x (U H V) for each row's H: [b, in] -> [b, out]."""
        return torch.bmm((x @ u).unsqueeze(1), hyper).squeeze(1) @ v

    def weights(self, hyper: Tensor) -> tuple[Tensor, Tensor]:
        """The generated down and up projections, [b, dim, bottleneck] and [b, bottleneck,
        dim] (for inspection and tests; `forward` never builds them)."""
        return self.u_down @ hyper @ self.v_down, self.u_up @ hyper @ self.v_up

    def forward(self, d: int, h: Tensor, hyper: Tensor) -> Tensor:
        a = torch.sigmoid(self.project(h, self.u_down, hyper, self.v_down) + self.b_down)
        return h + self.norm(d, self.project(a, self.u_up, hyper, self.v_up) + self.b_up)


@MODELS("hamur")
class HAMUR(MDRModel):
    """HAMUR (Li et al., CIKM 2023): each domain's own MLP backbone with adapter cells after
    its last `adapters` hidden layers; a shared hyper-network turns each row's input into
    the k x k matrix (k = `rank`) that, between shared low-rank factors, makes the adapters'
    weights (`HyperAdapter`).

    H = reshape(hyper-net(x), k, k) (Linear, activation per layer, its last layer included:
    SWR hamur.py `HamurSmall`, `hyper_dims + [k * k]`); backbone_d with adapters; logit.
    SWR ships the authors' code (HamurSmall: hidden [256, 128], one adapter; HamurLarge:
    seven layers, two adapters: `adapters=2`), so its BatchNorms (backbone and hyper-network)
    are the default here: the hyper-network's output sets the scale of every generated
    weight, and U, V start at ones. Domain-specific parts: `backbone.<d>` (and the domain
    norms' moving averages, buffers). `norm_eval="batch"` is the authors'/SWR's."""

    domain_specific = r"re:^backbone\."

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = swr.default("hamur", "hidden")
        hyper_hidden: list[int] = swr.default("hamur", "hyper_hidden")
        rank: int = swr.default("hamur", "rank")  # k
        adapter_dim: int = swr.default("hamur", "adapter_dim")
        adapters: int = swr.default("hamur", "adapters")
        norm_eval: Literal["running", "batch"] = "running"  # batch: SWR's
        batch_norm: bool = swr.default("hamur", "batch_norm")  # the authors' code

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        if c.adapters > len(c.hidden):
            raise UserError(
                f"hamur: adapters={c.adapters} but hidden has {len(c.hidden)} layers "
                "(an adapter cell follows a hidden layer)"
            )
        n = info.n_domains
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        d_in = self.inputs.out_dim
        self.hyper = _mlp(d_in, [*c.hyper_hidden, c.rank * c.rank], c, dropout=0.0)
        self.backbone = nn.ModuleList(_Tower(d_in, c.hidden, c) for _ in range(n))
        self.first_adapter = len(c.hidden) - c.adapters
        self.adapters = nn.ModuleList(
            HyperAdapter(w, c.adapter_dim, c.rank, n, c.norm_eval == "batch")
            for w in c.hidden[self.first_adapter :]
        )

    def _domain(self, d: int, x: Tensor, hyper: Tensor) -> Tensor:
        tower = self.backbone[d]
        for i, layer in enumerate(tower.layers):
            x = layer(x)
            if i >= self.first_adapter:
                x = self.adapters[i - self.first_adapter](d, x, hyper)
        return tower.head(x).squeeze(-1)

    def forward(self, batch):
        batch, inverse = group_by_domain(batch)  # H is k * k floats a row: never gathered
        x = self.inputs.fields(batch).flatten(1)
        k = self.cfg.rank
        hyper = self.hyper(x).view(-1, k, k)
        out = route(batch["domain_id"], self._domain, x, hyper)
        return out if inverse is None else out[inverse]


# ----------------------------------------------------------------------------- M3oE


def _ln_block(a: int, b: int) -> nn.Sequential:
    """Linear, LayerNorm, ReLU (M3oE's `Mlp_N` layer)."""
    return nn.Sequential(nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU())


@MODELS("m3oe")
class M3oE(MDRModel):
    """M3oE (Zhang et al., SIGIR 2024) in its single-task form: a STAR layer and a skip
    connection make the representation; shared experts mixed by the domain's gate plus the
    domain experts balanced by two learned fusion weights; the domain's tower.

    r = LN-MLP(STAR_d(x)) + LN-MLP(x); S = sum_i g_d,i(sg(r)) E_i(r) (shared experts,
    domain d's softmax gate on r with the gradient stopped); D_j = expert of domain j;
    fused = S + sigmoid(w_exp) (sigmoid(w_bal) D_d + (1 - sigmoid(w_bal)) / (n - 1)
    sum_{j != d} D_j); logit = tower_d(fused) (SWR: m3oe.py `M3oE.forward`, `Weights` with
    softmax_type 3: sigmoid of a scalar started at exp_d, bal_d). `hidden`: [STAR width,
    representation width, expert widths...]; SWR's fcn_dims repeats the representation
    width as the experts' input ([128, 64, 64, 32] there is [128, 64, 32] here: experts of
    one layer 64 -> 32; baselines/swr_profile.json). Every domain expert runs on
    every row (the fusion needs them all); the domain's gate and tower run on its rows only.
    Domain-specific parts: `star.domain_weight`/`domain_bias`, `domain_experts`,
    `gate_weight`/`gate_bias` (one slice per domain), `towers.<d>`."""

    domain_specific = r"re:^(star\.domain_|domain_experts\.|gate_|towers\.)"

    @dataclass
    class Config(ModelConfig):
        hidden: list[int] = swr.default("m3oe", "hidden")
        n_experts: int = swr.default("m3oe", "n_experts")
        exp_d: float = swr.default("m3oe", "exp_d")
        bal_d: float = swr.default("m3oe", "bal_d")

    def __init__(self, info, cfg=None, **overrides):
        super().__init__(info, cfg, **overrides)
        c = self.cfg
        if len(c.hidden) < 3:
            raise UserError(
                "m3oe: hidden needs at least 3 sizes: [STAR width, representation width, "
                f"expert widths...], got {c.hidden}"
            )
        n = info.n_domains
        self.inputs = Inputs(info, c.emb_dim, c.init_std, init=c.emb_init)
        d_in = self.inputs.out_dim
        star, rep, experts = c.hidden[0], c.hidden[1], c.hidden[2:]
        self.star = StarLinear(n, d_in, star)  # SWR: Glorot uniform shared and slot weights
        self.star_mlp = _ln_block(star, rep)
        self.skip = _ln_block(d_in, rep)
        self.experts = ExpertMLPs(c.n_experts, rep, experts, c.dropout, "layer")
        self.domain_experts = ExpertMLPs(n, rep, experts, c.dropout, "layer")
        self.gate_weight = _uniform((n, rep, c.n_experts), rep)
        self.gate_bias = _uniform((n, c.n_experts), rep)
        self.w_exp = nn.Parameter(torch.tensor([float(c.exp_d)]))
        self.w_bal = nn.Parameter(torch.tensor([float(c.bal_d)]))
        last = experts[-1]
        self.towers = nn.ModuleList(
            nn.Sequential(*_ln_block(last, last), nn.Dropout(c.dropout), nn.Linear(last, 1))
            for _ in range(n)
        )

    def gate_logits(self, r: Tensor, d: Tensor) -> Tensor:
        """Each row's logits from its domain's gate: every domain's gate in one matmul
        (n x n_experts outputs a row, a few dozen), then the row's domain's picked."""
        n, rep, e = self.gate_weight.shape
        every = (r @ self.gate_weight.permute(1, 0, 2).reshape(rep, n * e)).view(-1, n, e)
        own = torch.gather(every, 1, d.view(-1, 1, 1).expand(-1, 1, e)).squeeze(1)
        return own + self.gate_bias[d]

    def fusion_weights(self) -> tuple[Tensor, Tensor]:
        """(weight of the domain part, weight of the own domain's expert within it)."""
        return torch.sigmoid(self.w_exp), torch.sigmoid(self.w_bal)

    def forward(self, batch):
        batch, inverse = group_by_domain(batch)
        out = self._forward(batch)
        return out if inverse is None else out[inverse]

    def _forward(self, batch):
        d = batch["domain_id"]
        x = self.inputs.fields(batch).flatten(1)
        r = self.star_mlp(route(d, self.star, x)) + self.skip(x)
        g = torch.softmax(self.gate_logits(r.detach(), d), dim=-1)
        shared = (g.unsqueeze(-1) * self.experts(r)).sum(dim=1)
        dom = self.domain_experts(r)  # [B, n, width]
        own = dom[torch.arange(len(d), device=d.device), d]
        n = dom.shape[1]
        others = (dom.sum(dim=1) - own) / (n - 1) if n > 1 else torch.zeros_like(own)
        w_exp, w_bal = self.fusion_weights()
        fused = shared + w_exp * (w_bal * own + (1 - w_bal) * others)
        return route(d, lambda k, rows: self.towers[k](rows).squeeze(-1), fused)
