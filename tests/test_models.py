"""Every registered model x every basic framework trains one epoch on tiny data.

MODELS_TESTED / FRAMEWORKS_TESTED are written out by hand: tests/test_registry_coverage.py
fails when a registered model or framework is missing from them (add it here, with tiny
sizes in tests/train_fixtures.py's TINY when it has new hyperparameters)."""

from __future__ import annotations

import math

import pytest
import torch
from train_fixtures import tiny_overrides

from mdrbench.frameworks import embedding_param_names
from mdrbench.models import MODELS, build_model
from mdrbench.trainer import train

MODELS_TESTED = (
    "mlp",
    "wdl",
    "nfm",
    "autoint",
    "deepfm",
    "shared_bottom",
    "mmoe",
    "ple",
    "star",
    # issue 20 (mdrbench/models/scenario.py; their own tests: tests/test_models_swr.py)
    "sarnet",
    "m2m",
    "adasparse",
    "adaptdhm",
    "epnet",
    "ppnet",
    "hamur",
    "m3oe",
)
FRAMEWORKS_TESTED = ("joint", "alternate", "finetune", "separate")
# models with parameters of each domain's own (the others of issue 20 read the domain only
# through its embedding: tests/test_models_swr.py checks that their rows are independent)
MULTI_DOMAIN = {"shared_bottom", "mmoe", "ple", "star", "sarnet", "ppnet", "hamur", "m3oe"}


def _check_record(rec, data):
    assert rec["best_epoch"] >= 1
    for split in ("val", "test"):
        m = rec["metrics"][split]
        assert list(m["domains"]) == list(data.info.domain_names)
        assert m["auc_mean"] is not None and 0.0 <= m["auc_mean"] <= 1.0
        assert math.isfinite(m["logloss"])
    assert rec["n_parameters"] > 0 and rec["samples_per_second"] > 0


@pytest.mark.parametrize("method", FRAMEWORKS_TESTED)
@pytest.mark.parametrize("model", MODELS_TESTED)
def test_model_framework_trains_one_epoch(amazon, model, method):
    res = train(amazon, model, method, overrides=tiny_overrides(model, epochs=1))
    _check_record(res.record, amazon)
    assert res.record["model"] == model and res.record["method"] == method
    assert {h["stage"] for h in res.history} == {s.name for s in res.framework.stages()}


@pytest.mark.parametrize("model", MODELS_TESTED)
def test_model_with_fixed_features(taobao, model):
    """Taobao-like data: the batch's fixed features, no id embeddings in the model."""
    res = train(taobao, model, "joint", overrides=tiny_overrides(model, epochs=1))
    _check_record(res.record, taobao)
    names = dict(res.framework.model.named_parameters())
    assert not any(n.startswith(("inputs.user.", "inputs.item.")) for n in names)
    assert "inputs.domain.weight" in names


@pytest.mark.parametrize("model", MODELS_TESTED)
def test_forward_shapes_and_functional_call(amazon, model):
    """logits [B]; functional_call with a copy of the parameters gives the same logits and
    sparse gradients for the embedding tables, leaving the model's own parameters alone."""
    torch.manual_seed(0)
    net = build_model(
        model,
        amazon.info,
        **{
            k: v
            for k, v in tiny_overrides(model).items()
            if k in MODELS.get(model).Config.__dataclass_fields__
        },
    )
    net.eval()
    batch = amazon.train.take(slice(0, 50))
    out = net(batch)
    assert out.shape == (50,)
    params = {n: p.detach().clone().requires_grad_() for n, p in net.named_parameters()}
    out2 = torch.func.functional_call(net, params, (batch,))
    assert torch.allclose(out, out2)
    out2.sum().backward()
    tables = embedding_param_names(net)
    assert "inputs.user.weight" in tables
    for n in tables:  # every table of every model: only the batch's rows in the gradient
        assert params[n].grad is None or params[n].grad.is_sparse, n
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("model", sorted(MULTI_DOMAIN))
def test_multi_domain_models_route_by_domain(amazon, model):
    """A row's logit depends only on its own domain's tower: mixing rows of other domains
    into the batch does not change it (eval mode)."""
    torch.manual_seed(0)
    cfg_names = MODELS.get(model).Config.__dataclass_fields__
    net = build_model(
        model, amazon.info, **{k: v for k, v in tiny_overrides(model).items() if k in cfg_names}
    )
    net.eval()
    mixed = amazon.train.take(torch.arange(0, len(amazon.train), 7))
    d0 = mixed["domain_id"] == 0
    alone = {k: v[d0] for k, v in mixed.items()}
    assert torch.allclose(net(mixed)[d0], net(alone), atol=1e-6)
    # ...and each domain has parameters of its own
    other = {**alone, "domain_id": torch.ones_like(alone["domain_id"])}
    assert not torch.allclose(net(alone), net(other))


def test_unknown_model_suggests_close_match(amazon):
    from mdrbench.errors import UserError

    with pytest.raises(UserError, match="did you mean 'mmoe'"):
        build_model("mmeo", amazon.info)
