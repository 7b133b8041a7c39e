import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from mdrbench.evaluate import auc, evaluate


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_sklearn_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    s = rng.random(500)
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_sklearn_on_tied_scores(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    s = rng.integers(0, 5, 400) / 4.0  # five distinct values: many ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_single_class_is_none():
    assert auc(np.ones(4), np.arange(4)) is None
    assert auc(np.zeros(4), np.arange(4)) is None


def test_evaluate_per_domain_and_averages():
    rng = np.random.default_rng(0)
    d = rng.integers(0, 3, 900)
    y = rng.integers(0, 2, 900)
    p = rng.random(900)
    y[d == 2] = 1  # domain 2 is single-class: reported, not crashed on
    res = evaluate(d, y, p, ["a", "b", "c"])
    for k, name in enumerate(["a", "b"]):
        m = d == k
        assert res["domains"][name]["auc"] == pytest.approx(roc_auc_score(y[m], p[m]))
        assert res["domains"][name]["logloss"] == pytest.approx(log_loss(y[m], p[m]))
        assert res["domains"][name]["n"] == int(m.sum())
    assert res["domains"]["c"]["auc"] is None
    assert res["undefined_auc"] == ["c"]
    aucs = [res["domains"][n]["auc"] for n in "ab"]
    assert res["auc_mean"] == pytest.approx(np.mean(aucs))
    ns = [res["domains"][n]["n"] for n in "ab"]
    assert res["auc_weighted"] == pytest.approx(np.average(aucs, weights=ns))
    assert res["logloss"] == pytest.approx(log_loss(y, p))


def test_evaluate_rejects_logits_and_bad_shapes():
    with pytest.raises(ValueError, match="probabilities"):
        evaluate(np.zeros(3, int), np.array([0, 1, 0]), np.array([-1.0, 2.0, 0.5]), ["a"])
    with pytest.raises(ValueError, match="one entry per sample"):
        evaluate(np.zeros(3, int), np.array([0, 1]), np.array([0.1, 0.2, 0.5]), ["a"])
