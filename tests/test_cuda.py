"""The CUDA path: every model and every framework trains and evaluates on a GPU, with the
parameters, the data and the per-domain state really there. Skipped without a CUDA device
(CI has none); run by hand on a GPU machine: `python -m pytest tests/test_cuda.py`.
(The rest of the suite also runs on the GPU there: the trainer's default device is "auto".)
"""

from __future__ import annotations

import math

import pytest
import torch
from train_fixtures import tiny_overrides

from mdrbench.data import load_dataset
from mdrbench.frameworks import FRAMEWORKS
from mdrbench.models import MODELS
from mdrbench.trainer import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _check(res) -> None:
    assert res.record["config"]["train"]["device"] == "cuda"
    params = list(res.framework.model.parameters())
    assert params and all(p.is_cuda for p in params)
    for split in ("val", "test"):
        for name, m in res.record["metrics"][split]["domains"].items():
            assert m["auc"] is None or 0.0 <= m["auc"] <= 1.0, (split, name)
            assert math.isfinite(m["logloss"]), (split, name)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("kind", ["amazon", "taobao"])
def test_every_model_trains_on_cuda(request, kind, model):
    path = request.getfixturevalue(f"{kind}_path")
    res = train(path, model, "alternate", overrides=tiny_overrides(model, device="cuda"))
    _check(res)


@pytest.mark.parametrize("method", sorted(FRAMEWORKS))
def test_every_framework_trains_on_cuda(amazon_path, method):
    model = "star"  # domain-routed parameters: the hardest case for per-domain state
    res = train(amazon_path, model, method, overrides=tiny_overrides(model, device="cuda"))
    _check(res)
    fw = res.framework
    for d in range(3):  # per-domain parameters (finetune, separate, mamdr, dr) on the GPU
        params = fw.params_for_domain(d)
        assert params is None or all(t.is_cuda for t in params.values())


def test_mamdr_same_seed_same_metrics_on_cuda(amazon_path):
    """Reruns agree to float tolerance on the GPU (bitwise equality is the CPU's promise:
    CUDA's atomics may add in another order)."""
    runs = [
        train(amazon_path, "mlp", "mamdr", overrides=tiny_overrides("mlp", device="cuda"))
        for _ in range(2)
    ]
    a, b = (r.record["metrics"]["test"]["auc_mean"] for r in runs)
    assert a == pytest.approx(b, abs=1e-4)


def test_data_moves_to_cuda_once(taobao_path):
    data = load_dataset(taobao_path, device="cuda")
    assert data.train.user_id.is_cuda and data.train.user_features.is_cuda
    assert data.val.user_features is data.train.user_features  # one copy of the tables
    batch = next(data.train.batches(8, 0, torch.Generator().manual_seed(0)))
    assert all(t.is_cuda for t in batch.values())


@pytest.mark.parametrize("method", ["alternate", "maml", "mldg", "pcgrad", "mamdr"])
def test_paper_optimisation_on_cuda(amazon_path, method):
    """Dense Adam over whole tables with Keras' L2 (the paper profile's optimisation), the
    fused kernel on the GPU, dropout 0.5 configured (off in the gradient-only passes)."""
    over = tiny_overrides("mlp", device="cuda", sparse_embeddings=False, emb_l2=1e-5, dropout=0.5)
    res = train(amazon_path, "mlp", method, overrides={**over, "shuffle_buffer": 16})
    _check(res)
    assert res.record["config"]["train"]["sparse_embeddings"] is False


def test_fused_adam_on_cuda_is_the_cpu_update():
    """One step of the dense Adam (TF1's epsilon, L2 as weight decay) on the GPU equals the
    same step on the CPU, to float rounding."""
    from mdrbench.frameworks.base import _Adam

    out = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        p = torch.nn.Parameter((torch.randn(64, 8) * 1e-4).to(device))
        opt = _Adam([p], [2e-5], lr=1e-3)
        for step in range(3):
            p.grad = torch.zeros_like(p)
            p.grad[step::4] = 1e-3 * (step + 1)
            opt.step()
        out.append(p.detach().cpu())
    torch.testing.assert_close(out[0], out[1], rtol=1e-5, atol=1e-10)
