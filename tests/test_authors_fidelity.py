"""Issue 19: the authors' optimisation, checked by hand. Keras' l2(lambda) on whole
embedding tables (DeepCTR's `l2_reg_embedding`), TF1's AdamOptimizer over whole tables
(every row moves at every step, epsilon where TF puts it), STAR's Keras tables (uniform
+-0.05, no L2), and what the paper profile records."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_frameworks import DOMAINS, LinearCTR, close, first_row_split, grad, hand_data, make, theta
from torch import nn
from train_fixtures import tiny_overrides

from mdrbench.errors import UserError
from mdrbench.frameworks import FRAMEWORKS, Context, LossMeter
from mdrbench.models import build_model
from mdrbench.trainer import resolve_config, train

LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8


class Table(nn.Module):
    """logit = <table[user], v>: one embedding table of 3 rows with a Keras l2(lam)."""

    def __init__(self, lam: float, sparse: bool = False):
        super().__init__()
        self.emb = nn.Embedding(3, 2, sparse=sparse)
        with torch.no_grad():
            self.emb.weight.copy_(torch.tensor([[0.3, -0.2], [-0.1, 0.4], [1e-4, -2e-4]]))
        self.register_buffer("v", torch.tensor([1.5, -0.5]))
        self.lam = lam

    def forward(self, batch):
        return self.emb(batch["user_id"]) @ self.v

    def l2_penalties(self):
        return {"emb.weight": self.lam}


def _framework(amazon, net, method="joint"):
    ctx = Context(data=amazon, train=resolve_config("mlp", method).train,
                  device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))  # fmt: skip
    return FRAMEWORKS.get(method)(net, ctx)


def keras_adam(w, grads, lam):
    """tf.train.AdamOptimizer on the loss + lam * sum(w^2) (Keras l2: gradient 2 lam w),
    written out: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), w -= lr_t m / (sqrt(v) + eps)."""
    w = w.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = g + 2 * lam * w
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        lr_t = LR * math.sqrt(1 - B2**t) / (1 - B1**t)
        w = w - lr_t * m / (np.sqrt(v) + EPS)
    return w


def bce_grad(w, v, users, labels):
    """d mean BCE(<w[u], v>, y) / d w, by hand."""
    z = w[users] @ v
    r = (1 / (1 + np.exp(-z)) - labels) / len(users)
    g = np.zeros_like(w)
    for u, ri in zip(users, r):
        g[u] += ri * v
    return g


def test_l2_step_on_a_3_row_table_equals_keras_update_written_out(amazon):
    """Two steps on batches that touch rows 0 and 1 only: every row, row 2 included, moves
    as Keras' l2(lam) + TF1's Adam move it (row 2's gradient 2 lam w ~ 4e-9 is below
    eps: where TF puts eps decides how far it moves)."""
    lam = 1e-5
    net = Table(lam)
    fw = _framework(amazon, net)
    opt = fw.make_optimizer(fw.named_params())
    w0 = net.emb.weight.detach().numpy().astype(np.float64).copy()
    v = net.v.numpy().astype(np.float64)
    batches = [([0, 1, 0], [1.0, 0.0, 0.0]), ([1, 1, 0], [0.0, 1.0, 1.0])]
    w, grads = w0.copy(), []
    for users, labels in batches:
        batch = {"user_id": torch.tensor(users), "label": torch.tensor(labels)}
        grads.append(bce_grad(w, v, np.array(users), np.array(labels)))
        fw.step(opt, batch)
        w = keras_adam(w0, grads, lam)
        np.testing.assert_allclose(net.emb.weight.detach().numpy(), w, rtol=2e-6, atol=1e-12)
    assert not np.allclose(w[2], w0[2], rtol=0, atol=1e-6)  # the untouched row moved
    # torch's own epsilon (after the bias correction) would move row 2 ~30x further at t=1
    g2 = 2 * lam * w0[2]
    torch_eps_step = LR * g2 / (np.abs(g2) + EPS)
    tf_step = (
        LR * math.sqrt(1 - B2) / (1 - B1) * (1 - B1) * g2 / (math.sqrt(1 - B2) * np.abs(g2) + EPS)
    )
    assert np.all(np.abs(torch_eps_step) > 10 * np.abs(tf_step))


def test_untouched_row_moves_under_dense_adam_not_under_sparse(amazon):
    """Dense Adam (sparse_embeddings=false): a row no batch touches still moves (its L2
    gradient, then its momentum); the sparse fast path (SparseAdam, no L2) leaves it."""
    batch = {"user_id": torch.tensor([0, 1]), "label": torch.tensor([1.0, 0.0])}
    moved = {}
    for name, lam, sparse in (("dense+l2", 1e-5, False), ("dense", 0.0, False),
                              ("sparse", 0.0, True)):  # fmt: skip
        net = Table(lam, sparse)
        fw = _framework(amazon, net)
        opt = fw.make_optimizer(fw.named_params())
        before = net.emb.weight.detach().clone()
        fw.step(opt, batch)
        first = bool((net.emb.weight.detach()[2] != before[2]).any())
        after_first = net.emb.weight.detach().clone()
        fw.step(opt, {"user_id": torch.tensor([1]), "label": torch.tensor([1.0])})
        momentum = bool((net.emb.weight.detach()[0] != after_first[0]).any())
        moved[name] = (first, momentum)
    # row 2: moved by the L2 alone; row 0 (touched at step 1 only): moved at step 2
    assert moved == {"dense+l2": (True, True), "dense": (False, True), "sparse": (False, False)}


def test_fused_adam_with_weight_decay_matches_foreach():
    """The fused kernel (one pass per tensor) is torch's foreach/for-loop Adam with L2
    weight decay up to float rounding (same formula)."""
    from mdrbench.frameworks.base import _Adam

    out = []
    for fused in (True, False):
        torch.manual_seed(0)
        p = nn.Parameter(torch.randn(200, 8) * 1e-2)
        opt = _Adam([p], [2e-5], lr=LR)
        if not fused:
            for g in opt.param_groups:
                g["fused"], g["foreach"] = False, True
        assert opt.param_groups[0]["fused"] is (True if fused else False)
        gen = torch.Generator().manual_seed(1)
        for _ in range(20):
            p.grad = torch.randn(p.shape, generator=gen) * 1e-3
            p.grad[::3] = 0
            opt.step()
        out.append(p.detach().clone())
    torch.testing.assert_close(out[0], out[1], rtol=1e-6, atol=1e-8)


def test_l2_with_sparse_tables_is_refused(amazon):
    net = Table(1e-5, sparse=True)
    with pytest.raises(UserError, match="sparse_embeddings=false"):
        _framework(amazon, net)


def test_models_declare_their_l2(amazon):
    mlp = build_model("mlp", amazon.info, emb_dim=8, hidden=[8], emb_l2=1e-5)
    assert mlp.l2_penalties() == {f"inputs.{t}.weight": 1e-5 for t in ("domain", "user", "item")}
    wdl = build_model("wdl", amazon.info, emb_dim=8, hidden=[8], emb_l2=1e-5, linear_l2=2e-5)
    pen = wdl.l2_penalties()
    assert pen["inputs.linear_user.weight"] == 2e-5 and pen["inputs.user.weight"] == 1e-5
    assert build_model("mlp", amazon.info, emb_dim=8, hidden=[8]).l2_penalties() == {}
    with pytest.raises(UserError, match="emb_l2 must be >= 0"):
        resolve_config("mlp", "alternate", {"emb_l2": "-1"})
    with pytest.raises(UserError, match="emb_init"):
        resolve_config("mlp", "alternate", {"emb_init": "xavier"})


def test_star_tables_are_uniform_005(amazon):
    """STAR's tables: Keras layers.Embedding's RandomUniform(-0.05, 0.05); the DeepCTR
    models' stay N(0, 1e-4)."""
    torch.manual_seed(0)
    star = build_model("star", amazon.info, emb_dim=64)
    for t in (star.inputs.user, star.inputs.item, star.inputs.domain):
        w = t.weight.detach()
        assert w.abs().max() <= 0.05
        assert w.max() > 0.045 and w.min() < -0.045
    w = star.inputs.user.weight.detach()
    assert abs(float(w.std()) - 0.05 / math.sqrt(3)) < 0.002  # the uniform's std
    assert star.l2_penalties() == {}
    mlp = build_model("mlp", amazon.info, emb_dim=64)
    assert abs(float(mlp.inputs.user.weight.detach().std()) - 1e-4) < 1e-5


@pytest.fixture(scope="module")
def amazon6(tmp_path_factory):
    """A tiny synthetic amazon-6 (a benchmark name: the paper profile applies)."""
    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.synth import synthesize

    root = tmp_path_factory.mktemp("amazon6")
    synthesize("amazon", root / "raw", n_domains=6, size="tiny", seed=0)
    return build_dataset("amazon-6", raw_dir=root / "raw", out=root / "data")


def test_paper_profile_records_l2_dense_adam_and_star_tables(amazon6):
    mlp = train(amazon6, "mlp", "alternate", overrides=tiny_overrides("mlp"))
    cfg = mlp.record["config"]
    assert cfg["model"]["emb_l2"] == 1e-5 and cfg["train"]["sparse_embeddings"] is False
    assert cfg["profile"]["applied"]["model.emb_l2"] == 1e-5
    assert cfg["profile"]["applied"]["train.sparse_embeddings"] is False
    star = train(amazon6, "star", "alternate", overrides=tiny_overrides("star"))
    m = star.record["config"]["model"]
    assert (m["emb_init"], m["init_std"], m["emb_l2"]) == ("uniform", 0.05, 0.0)
    assert star.record["config"]["train"]["sparse_embeddings"] is False
    fast = train(amazon6, "mlp", "alternate",
                 overrides=tiny_overrides("mlp", sparse_embeddings=True, emb_l2=0.0))  # fmt: skip
    overridden = fast.record["config"]["profile"]["overridden"]
    assert {"model.emb_l2", "train.sparse_embeddings"} <= set(overridden)  # "not paper"
    with pytest.raises(UserError, match="sparse_embeddings=false"):
        train(amazon6, "mlp", "alternate", overrides=tiny_overrides("mlp", sparse_embeddings=True))
    for model in ("wdl", "nfm", "deepfm"):
        assert resolve_config(model, "alternate", dataset="amazon-6").model.linear_l2 == 1e-5


# ----------------------------------------------------------------------------- shuffle buffer


def _tf_shuffle(n: int, buffer: int, rng) -> list[int]:
    """tf.data's shuffle(buffer) over inputs 0..n-1, step by step."""
    buf, nxt, out = list(range(min(buffer, n))), min(buffer, n), []
    while buf:
        j = int(rng.integers(len(buf)))
        out.append(buf[j])
        if nxt < n:
            buf[j], nxt = nxt, nxt + 1
        else:
            buf.pop(j)
    return out


def test_buffered_order_is_tf_shuffle_in_distribution():
    """Where each input lands, over many draws: the vectorised order and a step-by-step
    tf.data shuffle agree (each is a permutation; an input cannot come out before the
    buffer reached it)."""
    from mdrbench.data import buffered_order

    n, buffer, draws = 7, 3, 6000
    g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    ours, tf = np.zeros((n, n)), np.zeros((n, n))
    for _ in range(draws):
        o = buffered_order(n, buffer, g).tolist()
        assert sorted(o) == list(range(n))
        assert all(o.index(i) > i - buffer for i in range(n))  # no input before its turn
        for pos, i in enumerate(o):
            ours[i, pos] += 1
        for pos, i in enumerate(_tf_shuffle(n, buffer, rng)):
            tf[i, pos] += 1
    np.testing.assert_allclose(ours / draws, tf / draws, atol=0.03)
    assert ours[n - 1, 0] == 0 and ours[0, 0] > draws / 4  # the last input is never first
    assert torch.equal(buffered_order(5, 5, torch.Generator().manual_seed(1)),
                       torch.randperm(5, generator=torch.Generator().manual_seed(1)))  # fmt: skip


def test_framework_batches_go_through_the_run_buffer(amazon):
    """shuffle_buffer=b: a domain's first batch holds rows from its first b + batch rows."""
    fw = _framework(amazon, Table(0.0))
    fw.ctx.train.batch_size, fw.ctx.train.shuffle_buffer = 4, 3
    d = max(range(amazon.train.n_domains), key=amazon.train.n_rows)
    start = amazon.train.offsets[d]
    first = next(fw.batches(d))
    pos = {(int(u), int(i)) for u, i in zip(first["user_id"], first["item_id"])}
    rows = range(start, start + 3 + 4 - 1)  # step t emits one of inputs < t + 3
    window = {(int(amazon.train.user_id[r]), int(amazon.train.item_id[r])) for r in rows}
    assert pos <= window
    assert resolve_config("mlp", "alternate", dataset="taobao-30").train.shuffle_buffer == 10000


# ----------------------------------------------------------------------------- gradient passes


def _dropout_mlp(amazon):
    torch.manual_seed(0)
    return build_model("mlp", amazon.info, emb_dim=8, hidden=[16, 8], dropout=0.5)


def _record_modes(net) -> list[bool]:
    """The model's mode at every forward (a hook the test adds; the model is unchanged)."""
    modes: list[bool] = []
    net.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
    return modes


@pytest.mark.parametrize("method", ["maml", "mldg", "pcgrad"])
def test_gradient_passes_run_without_dropout(amazon, method):
    """dropout 0.5 in the config: the authors' gradient-only passes (a K.function: Keras'
    learning phase False) see none. MLDG and PCGrad train in evaluation mode throughout;
    MAML's support steps train with dropout, its query pass without; the mode is put back
    after each pass."""
    net = _dropout_mlp(amazon)
    fw = _framework(amazon, net, method)
    fw.ctx.train.batch_size = 16
    fw.begin_stage(fw.stages()[0])
    modes = _record_modes(net)
    net.train()
    fw.train_epoch(1, range(amazon.info.n_domains))
    assert net.training and all(m.training for m in net.modules())
    if method == "maml":
        assert True in modes and False in modes  # support: training mode; query: eval
        n_support = sum(-(-int(amazon.train.n_rows(d) * 0.2) // 16) for d in range(3))
        assert modes.count(True) == n_support
    else:
        assert set(modes) == {False}
    other = _framework(amazon, _dropout_mlp(amazon), method)
    other.cfg.pass_train_mode = True
    other.ctx.train.batch_size = 16
    other.begin_stage(other.stages()[0])
    modes = _record_modes(other.model)
    other.train_epoch(1, range(amazon.info.n_domains))
    assert set(modes) == {True}


@pytest.mark.parametrize("train_mode", [False, True])
def test_pass_gradient_is_deterministic_without_dropout(amazon, train_mode):
    """Two passes over the same rows at the same theta: equal gradients in evaluation
    mode (dropout 0.5 configured but off), different ones with dropout on."""
    from mdrbench.frameworks.passes import pass_gradient

    fw = _framework(amazon, _dropout_mlp(amazon), "pcgrad")
    rows = torch.arange(amazon.train.offsets[0], amazon.train.offsets[1])
    g = [pass_gradient(fw, 0, LossMeter(), rows, train_mode=train_mode) for _ in range(2)]
    dense = [{n: t.to_dense() if t.is_sparse else t for n, t in x.items()} for x in g]
    same = all(torch.allclose(dense[0][n], dense[1][n], rtol=1e-5, atol=1e-8) for n in g[0])
    assert same is (not train_mode)


def test_model_mode_is_put_back_on_error(amazon):
    net = _dropout_mlp(amazon)
    fw = _framework(amazon, net)
    net.train()
    net.dnn.eval()  # a mixed state is restored module by module
    with pytest.raises(RuntimeError):
        with fw.model_mode(False):
            assert not any(m.training for m in net.modules())
            raise RuntimeError("boom")
    assert net.training and not net.dnn.training and not net.dnn[0].training


class PenalisedCTR(LinearCTR):
    """LinearCTR with a Keras l2(lam) on its weight."""

    lam = 0.05

    def l2_penalties(self):
        return {"lin.weight": self.lam}


@pytest.mark.parametrize("meta_grad", ["sum", "mean"])
def test_maml_outer_gradient_is_the_sum_over_query_batches(meta_grad):
    """One query row per batch: the outer SGD step takes the SUM over the query batches
    of each batch's gradient at theta' (the authors' K.update_add, average_meta_grad
    "none"), the L2's 2 lam w' once per batch; `meta_grad="mean"` divides by the
    batches. theta' = one SGD support step with the L2 as weight decay."""
    data = hand_data()
    fw = make("maml", data, model=PenalisedCTR(), alpha=0.5, beta=0.2, inner_optimizer="sgd",
              outer_optimizer="sgd", meta_grad=meta_grad)  # fmt: skip
    fw.ctx.train.batch_size = 1
    fw.support, fw.query = first_row_split(data)
    th = theta(fw.model)
    lam = np.array([2 * PenalisedCTR.lam] * 2 + [0.0])  # the bias has no L2
    fw.train_epoch(1, range(4))
    for d in fw.order:
        prime = th - 0.5 * (grad(th, DOMAINS[d][:1]) + lam * th)
        query = DOMAINS[d][1:]
        g = sum(grad(prime, [row]) + lam * prime for row in query)
        th = th - 0.2 * (g if meta_grad == "sum" else g / len(query))
    close(theta(fw.model), th)


def test_epoch_split_is_the_authors_take_and_skip(amazon):
    """support = the first int(0.2 n) rows of one shuffled stream, query = the rows after
    them in another: sizes fixed, the boundary moving from epoch to epoch."""
    from mdrbench.frameworks.passes import epoch_split

    g = torch.Generator().manual_seed(0)
    d = 0
    rows = set(range(amazon.train.offsets[d], amazon.train.offsets[d + 1]))
    n = len(rows)
    seen = []
    for _ in range(3):
        s, q = epoch_split(amazon.train, d, 0.2, g, buffer=8)
        assert len(s) == int(n * 0.2) and len(q) == n - int(n * 0.2)
        assert set(s.tolist()) <= rows and set(q.tolist()) <= rows
        seen.append(frozenset(s.tolist()))
    assert len(set(seen)) > 1
