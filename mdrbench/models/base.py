"""What every model shares: the registry, the input module, DNN blocks and domain routing.

A model is an `nn.Module` whose `forward(batch)` returns logits of shape [B]; `batch` is a
dict of tensors (mdrbench.data) that always holds `domain_id`. Registered models subclass
`MDRModel`, which gives them a typed `Config` (defaults = the paper's hyperparameters) and
one shared `Inputs` module: trainable user/item/domain embeddings (Amazon), or the batch's
fixed user/item features plus a trainable domain embedding (Taobao).

Embedding tables are `nn.Embedding(sparse=True)`: their gradients hold only the rows a
batch touches. The trainer switches them to dense (`sparse_embeddings=False`) by setting
the modules' `sparse` flag, so a model never needs to know.

L2 penalties (Keras' `l2(lambda)` regularizers: lambda * sum(w^2) over the whole tensor,
added to the loss) are declared, not computed, by a model: `l2_penalties()` names each
penalised parameter and its lambda, and the frameworks apply them (as the optimizer's
weight decay 2 * lambda where a step follows one batch's gradient, or added to a gradient
they accumulate themselves: mdrbench.frameworks.base `Framework.add_penalty`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import field

import torch
from torch import Tensor, nn

from mdrbench.config import ModelConfig, apply_overrides
from mdrbench.data import DatasetInfo
from mdrbench.errors import UserError
from mdrbench.registry import Registry

MODELS: Registry[type[MDRModel]] = Registry("model")


class MDRModel(nn.Module):
    """Base of the registered models: `Model(info, cfg=None, **overrides)`."""

    Config: type[ModelConfig] = ModelConfig
    # The model's own per-domain parameters as a `specific_params` rule ("re:REGEX"), None
    # when it has none: `--set specific_params=<it>` gives MAMDR's and DR's theta_d (and
    # `finetune_params` the finetune stage) those parts only (docs/models.md).
    domain_specific: str | None = None

    def __init__(self, info: DatasetInfo, cfg: ModelConfig | None = None, **overrides):
        super().__init__()
        cfg = dataclasses.replace(cfg) if cfg is not None else self.Config()
        if not isinstance(cfg, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}")
        if overrides:
            from mdrbench.config import RunConfig

            apply_overrides(RunConfig(model=cfg), {f"model.{k}": v for k, v in overrides.items()})
        self.info = info
        self.cfg = cfg

    def forward(self, batch: dict[str, Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def l2_penalties(self) -> dict[str, float]:
        """{parameter name: lambda} of the model's L2 penalties (only lambda > 0): each
        `Inputs` module's embedding tables get the config's `emb_l2` (DeepCTR's
        `l2_reg_embedding`), its linear part `linear_l2` (DeepCTR's `l2_reg_linear`) where
        the model has that option."""
        emb = self.cfg.emb_l2
        lin = getattr(self.cfg, "linear_l2", 0.0)
        out: dict[str, float] = {}
        for prefix, mod in self.named_modules():
            if isinstance(mod, Inputs):
                for name, lam in mod.l2_penalties(emb, lin).items():
                    if lam > 0:
                        out[f"{prefix}.{name}" if prefix else name] = lam
        return out


def build_model(name: str, info: DatasetInfo, cfg: ModelConfig | None = None, **overrides):
    """A registered model by name (unknown names raise UserError with the valid ones)."""
    return MODELS.get(name)(info, cfg, **overrides)


# ----------------------------------------------------------------------------- inputs


def embedding(n: int, dim: int, init_std: float, init: str = "normal") -> nn.Embedding:
    """A table of `n` rows, drawn N(0, init_std) (`init="normal"`: DeepCTR 0.9.0's
    `SparseFeat` default, stddev 1e-4) or U(-init_std, init_std) (`"uniform"`: Keras
    `layers.Embedding`'s default `RandomUniform(-0.05, 0.05)`, the authors' STAR)."""
    emb = nn.Embedding(n, dim, sparse=True)
    if init == "uniform":
        nn.init.uniform_(emb.weight, -init_std, init_std)
    else:
        nn.init.normal_(emb.weight, 0.0, init_std)
    return emb


class Inputs(nn.Module):
    """The fields every model sees, each emb_dim wide, in the order of `names`: user, item,
    domain. Models that treat fields differently (scenario fields, id fields) select them by
    name (`index`), never by position, so a dataset with more categorical fields only adds
    names here.

    Ids are embedded when the dataset has no fixed features (Amazon). With fixed features
    (Taobao) the batch's `user_features`/`item_features` are used as they are (not trained;
    they live in the batch, not in the model, so frameworks never copy them); when their
    width differs from emb_dim a trainable projection maps them (emb_dim = 128 = the
    features' width in the paper's setting, so no projection there). The domain is always
    a trainable embedding.

    `linear=True` adds the wide/linear part of WDL, NFM and DeepFM: a 1-d weight per id
    (or a linear map of the fixed features). The field tables are drawn by `init`
    (`embedding`); the linear part is always normal.

    Side fields (a build's manifest `fields`, `DatasetInfo.fields`; docs/format.md) follow
    the domain in `names`, categorical ones first, each in the manifest's order. A
    categorical field is embedded with emb_dim in a table of its own (`side.<k>`: sparse
    like the id tables, drawn by `init`, under `emb_l2`, and covered by MAMDR's
    `specific_params=all` through the same sparse offsets). A dense field's value x is
    projected as AutoInt (Song et al., CIKM 2019, section 4.2) and DeepCTR's DenseFeat in
    FM/DeepFM treat a numerical field: x times a learned emb_dim vector (row k of
    `dense_weight`). Each is then one more field of `fields()`, so every model combines it
    as it combines the others: pairwise for FM and AutoInt, concatenated for an MLP and the
    models built on one, gated or routed with the rest in the scenario models. The wide
    part gets a 1-d weight per value of each categorical field (`linear_side.<k>`) and one
    weight per dense field (`linear_dense`). A dataset without side fields builds exactly
    the parameters (and draws exactly the random numbers) it did before side fields
    existed.
    """

    names: tuple[str, ...] = ("user", "item", "domain")
    n_fields = len(names)
    TABLES = ("domain", "user", "item")  # the field tables (emb_l2), with `side.<k>`
    # linear_l2, with `linear_side.<k>` and `linear_dense`
    LINEAR = ("linear_domain", "linear_user", "linear_item", "linear_features")

    def __init__(
        self,
        info: DatasetInfo,
        emb_dim: int,
        init_std: float,
        linear: bool = False,
        init: str = "normal",
    ):
        super().__init__()
        self.emb_dim = emb_dim
        self.has_features = info.has_features
        self.domain = embedding(info.n_domains, emb_dim, init_std, init)
        if self.has_features:
            self.project = (
                nn.Identity()
                if info.feature_dim == emb_dim
                else nn.Linear(info.feature_dim, emb_dim, bias=False)
            )
        else:
            self.user = embedding(info.n_users, emb_dim, init_std, init)
            self.item = embedding(info.n_items, emb_dim, init_std, init)
        self.has_linear = linear
        if linear:
            self.linear_domain = embedding(info.n_domains, 1, init_std)
            if self.has_features:
                self.linear_features = nn.Linear(2 * info.feature_dim, 1, bias=False)
                nn.init.normal_(self.linear_features.weight, 0.0, init_std)
            else:
                self.linear_user = embedding(info.n_users, 1, init_std)
                self.linear_item = embedding(info.n_items, 1, init_std)
        categorical, dense = info.categorical_fields, info.dense_fields
        self.categorical = tuple(f.name for f in categorical)
        self.dense = tuple(f.name for f in dense)
        if self.categorical or self.dense:
            self.names = (*Inputs.names, *self.categorical, *self.dense)
            self.n_fields = len(self.names)
        self.side = nn.ModuleList(
            embedding(int(f.cardinality or 0), emb_dim, init_std, init) for f in categorical
        )
        if self.dense:
            self.dense_weight = nn.Parameter(torch.empty(len(self.dense), emb_dim))
            nn.init.normal_(self.dense_weight, 0.0, init_std)
        if linear:
            self.linear_side = nn.ModuleList(
                embedding(int(f.cardinality or 0), 1, init_std) for f in categorical
            )
            if self.dense:
                self.linear_dense = nn.Parameter(torch.empty(len(self.dense)))
                nn.init.normal_(self.linear_dense, 0.0, init_std)

    def _dense_values(self, batch: dict[str, Tensor]) -> Tensor:
        """[B, n_dense]: the dense fields' values."""
        return torch.stack([batch[n] for n in self.dense], dim=1)

    @property
    def out_dim(self) -> int:
        return self.n_fields * self.emb_dim

    def l2_penalties(self, emb_l2: float, linear_l2: float = 0.0) -> dict[str, float]:
        """{parameter name (in this module): lambda}: the field tables' `emb_l2`, the
        linear part's `linear_l2` (DeepCTR 0.9.0: `l2_reg_embedding` on every SparseFeat
        table, `l2_reg_linear` on the linear part's tables and kernel)."""
        own = dict(self.named_parameters())
        out = {f"{m}.weight": emb_l2 for m in self.TABLES if f"{m}.weight" in own}
        out.update({f"side.{k}.weight": emb_l2 for k in range(len(self.side))})
        out.update({f"{m}.weight": linear_l2 for m in self.LINEAR if f"{m}.weight" in own})
        if self.has_linear:
            out.update({f"linear_side.{k}.weight": linear_l2 for k in range(len(self.side))})
            if self.dense:
                out["linear_dense"] = linear_l2
        return out

    def index(self, names: list[str] | tuple[str, ...], what: str = "fields") -> list[int]:
        """Positions of the named fields in `fields()`; an unknown name is a UserError."""
        bad = [n for n in names if n not in self.names]
        if bad:
            raise UserError(
                f"{what}: unknown field(s) {', '.join(map(repr, bad))}; fields: "
                f"{', '.join(self.names)}"
            )
        return [self.names.index(n) for n in names]

    def embed(self, batch: dict[str, Tensor]) -> list[Tensor]:
        """The fields one by one, each [B, emb_dim], in the order of `names`."""
        if self.has_features:
            u = self.project(batch["user_features"])
            i = self.project(batch["item_features"])
        else:
            u = self.user(batch["user_id"])
            i = self.item(batch["item_id"])
        parts = [u, i, self.domain(batch["domain_id"])]
        parts += [emb(batch[n]) for emb, n in zip(self.side, self.categorical)]
        if self.dense:  # x_k * v_k, each [B, emb_dim]
            parts += (self._dense_values(batch).unsqueeze(-1) * self.dense_weight).unbind(1)
        return parts

    def fields(self, batch: dict[str, Tensor]) -> Tensor:
        """[B, n_fields, emb_dim], in the order of `names`."""
        return torch.stack(self.embed(batch), dim=1)

    @staticmethod
    def concat(parts: list[Tensor], index: list[int]) -> Tensor:
        """The fields at `index` (positions in `names`) side by side, [B, len * emb_dim]: a
        concatenation, whose backward splits (indexing a stacked tensor would fill a zero
        gradient of all fields for each selection)."""
        return torch.cat([parts[i] for i in index], dim=1)

    def linear(self, batch: dict[str, Tensor]) -> Tensor:
        """[B]: the linear logit (wide part)."""
        out = self.linear_domain(batch["domain_id"]).squeeze(-1)
        for w, n in zip(self.linear_side, self.categorical):
            out = out + w(batch[n]).squeeze(-1)
        if self.dense:
            out = out + self._dense_values(batch) @ self.linear_dense
        if self.has_features:
            x = torch.cat([batch["user_features"], batch["item_features"]], dim=1)
            return out + self.linear_features(x).squeeze(-1)
        return (
            out
            + self.linear_user(batch["user_id"]).squeeze(-1)
            + self.linear_item(batch["item_id"]).squeeze(-1)
        )


# ----------------------------------------------------------------------------- blocks


class BatchNorm(nn.BatchNorm1d):
    """BatchNorm1d that, in training, passes a batch of one row through with its running
    statistics instead of failing (a domain's group of a mixed batch can be one row)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < 2:
            return torch.nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, eps=self.eps
            )
        return super().forward(x)


def _init_linear(layer: nn.Linear) -> nn.Linear:
    # Glorot normal kernels and zero biases: DeepCTR's (TF) defaults, which the paper used.
    nn.init.xavier_normal_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def linear(in_dim: int, out_dim: int, bias: bool = True) -> nn.Linear:
    return _init_linear(nn.Linear(in_dim, out_dim, bias=bias))


class DNN(nn.Sequential):
    """Linear -> ReLU -> Dropout for each hidden width; `out_dim` is the last width.

    `batch_norm=True` puts a BatchNorm after each Linear (Scenario-Wise Rec's MLP block:
    scenario_wise_rec/basic/layers.py `MLP`); `act` is the activation's class; `glorot=False`
    keeps torch's default Linear initialisation (Scenario-Wise Rec's) instead of Glorot
    normal kernels and zero biases (DeepCTR's)."""

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        dropout: float,
        batch_norm: bool = False,
        act: Callable[[], nn.Module] = nn.ReLU,
        glorot: bool = True,
    ):
        layers: list[nn.Module] = []
        for h in hidden:
            layers.append(linear(in_dim, h) if glorot else nn.Linear(in_dim, h))
            if batch_norm:
                layers.append(BatchNorm(h))
            layers.append(act())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = h
        super().__init__(*layers)
        self.out_dim = in_dim


class Tower(nn.Module):
    """DNN then a linear map to one logit per row: [B, in] -> [B]."""

    def __init__(self, in_dim: int, hidden: list[int], dropout: float):
        super().__init__()
        self.dnn = DNN(in_dim, hidden, dropout)
        self.out = linear(self.dnn.out_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.dnn(x)).squeeze(-1)


class ExpertBank(nn.Module):
    """`n` experts with the same layer sizes, computed as batched matmuls: [B, in] -> [B, n, out]."""

    def __init__(self, n: int, in_dim: int, hidden: list[int], dropout: float):
        super().__init__()
        if not hidden:
            raise UserError("experts need at least one hidden layer")
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for h in hidden:
            w = torch.empty(n, in_dim, h)
            for e in range(n):
                nn.init.xavier_normal_(w[e])  # Glorot: symmetric in fan-in and fan-out
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(n, 1, h)))
            in_dim = h
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        h = x.unsqueeze(0)  # [1, B, in], broadcast over experts
        for w, b in zip(self.weights, self.biases):
            h = self.dropout(torch.relu(torch.matmul(h, w) + b))  # [n, B, out]
        return h.transpose(0, 1)  # [B, n, out]


def softmax_gate(in_dim: int, hidden: list[int], n_out: int, dropout: float) -> nn.Sequential:
    dnn = DNN(in_dim, hidden, dropout)
    return nn.Sequential(dnn, linear(dnn.out_dim, n_out, bias=False), nn.Softmax(dim=-1))


def route(domain_id: Tensor, fn: Callable[..., Tensor], *xs: Tensor) -> Tensor:
    """Rows of each domain through `fn(d, *rows_of_xs)`; results back in the input order.

    One call when the batch holds a single domain (alternate training); otherwise the rows
    are grouped by domain once (a stable sort), each group runs, and one gather restores the
    order; rows already grouped (`group_by_domain`) are neither sorted nor gathered. Domains
    absent from the batch cost nothing.
    """
    if domain_id.numel() == 0 or bool((domain_id == domain_id[0]).all()):
        d = int(domain_id[0]) if domain_id.numel() else 0
        return fn(d, *xs)
    counts = torch.bincount(domain_id).tolist()
    grouped = bool((domain_id[1:] >= domain_id[:-1]).all())
    order = None if grouped else torch.argsort(domain_id, stable=True)
    # torch.split, not one slice per domain: a slice's backward fills a zero tensor of the
    # whole batch's size, per domain; split's backward is one concatenation
    groups = [torch.split(x if order is None else x[order], counts) for x in xs]
    out = torch.cat([fn(d, *[g[d] for g in groups]) for d, c in enumerate(counts) if c])
    return out if order is None else out[inverse_permutation(order)]


def inverse_permutation(order: Tensor) -> Tensor:
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return inverse


def group_by_domain(batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor | None]:
    """The batch with its rows grouped by domain (a stable sort of every tensor of it), and
    the permutation that puts a result of the grouped rows back in the input order (None:
    the rows were grouped already). A model that routes by domain more than once sorts the
    batch's few id columns once here, instead of its wide intermediate tensors per route."""
    d = batch["domain_id"]
    if d.numel() < 2 or bool((d[1:] >= d[:-1]).all()):
        return batch, None
    order = torch.argsort(d, stable=True)
    return {k: v[order] for k, v in batch.items()}, inverse_permutation(order)


def hidden_field(*sizes: int):
    return field(default_factory=lambda: list(sizes))


__all__ = [
    "MODELS",
    "MDRModel",
    "build_model",
    "Inputs",
    "DNN",
    "BatchNorm",
    "Tower",
    "ExpertBank",
    "softmax_gate",
    "route",
    "group_by_domain",
    "linear",
    "embedding",
    "hidden_field",
]
