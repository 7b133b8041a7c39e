"""Issue 4's learning frameworks: values computed by hand on tiny linear models, the paper's
claims about DN (beta = 1 is alternate training), DR's order and gamma step, MAML's inner
and outer steps, PCGrad's projection, uncertainty weights, the copy-on-write snapshot of
embedding tables, and every model x framework training one epoch.

FRAMEWORKS_TESTED lists the frameworks this file covers (for tests/test_registry_coverage.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from torch import nn
from train_fixtures import tiny_overrides

from mdrbench.config import TrainConfig
from mdrbench.data import DatasetInfo, MDRData, Split
from mdrbench.errors import UserError
from mdrbench.frameworks import FRAMEWORKS, Context, LossMeter, Stage, sparse_param_names
from mdrbench.frameworks.params import GradSum, Snapshot
from mdrbench.frameworks.pcgrad import authors_project, pcgrad, surgery
from mdrbench.models import MODELS
from mdrbench.trainer import resolve_config, train

FRAMEWORKS_TESTED = ("weighted_loss", "pcgrad", "maml", "reptile", "mldg", "dn", "dr", "mamdr")


# ----------------------------------------------------------------------------- hand fixtures


class LinearCTR(nn.Module):
    """nn.Linear wrapped to take a batch dict: logit = w . (user_id, item_id) / 10 + b."""

    def __init__(self, w=(0.5, -0.3), b=0.1):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([w]))
            self.lin.bias.fill_(b)

    def forward(self, batch):
        x = torch.stack([batch["user_id"], batch["item_id"]], 1).float() / 10
        return self.lin(x).squeeze(-1)


# (user, item, label) rows per domain; ids double as features for LinearCTR
DOMAINS = [
    [(1, 2, 1), (3, 1, 0), (2, 5, 1), (4, 4, 0)],
    [(5, 1, 0), (1, 6, 1), (2, 2, 1)],
    [(6, 3, 1), (2, 7, 0), (7, 1, 0), (3, 3, 1), (1, 1, 0)],
    [(4, 2, 1), (6, 6, 0)],
]


def hand_data(domains=DOMAINS) -> MDRData:
    rows = [(u, i, d, y) for d, dom in enumerate(domains) for (u, i, y) in dom]
    t = torch.tensor(rows, dtype=torch.int64)
    offsets = np.cumsum([0] + [len(d) for d in domains]).tolist()
    split = Split(t[:, 0], t[:, 1], t[:, 2], t[:, 3].float(), offsets)
    info = DatasetInfo(
        "hand", "amazon", 10, 10, len(domains), tuple(f"D{d}" for d in range(len(domains)))
    )
    return MDRData(info=info, splits={"train": split, "val": split, "test": split})


def make(name, data, model=None, seed=0, lr=1e-3, **cfg):
    model = model or LinearCTR()
    cls = FRAMEWORKS.get(name)
    ctx = Context(
        data=data,
        train=TrainConfig(batch_size=1000, lr=lr, seed=seed),
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed),
    )
    fw = cls(model, ctx, cls.Config(**cfg))
    fw.begin_stage(fw.stages()[0])
    return fw


def theta(model) -> np.ndarray:
    return np.concatenate(
        [
            model.lin.weight.detach().double().numpy().ravel(),
            model.lin.bias.detach().double().numpy(),
        ]
    )


def grad(th: np.ndarray, domain) -> np.ndarray:
    """Gradient of the mean BCE of LinearCTR with parameters th = (w1, w2, b) on `domain`."""
    x = np.array([[u / 10, i / 10] for u, i, _ in domain])
    y = np.array([lab for _, _, lab in domain], dtype=np.float64)
    r = 1 / (1 + np.exp(-(x @ th[:2] + th[2]))) - y
    return np.concatenate([x.T @ r / len(y), [r.mean()]])


def sgd_pass(th, domain, lr):
    return th - lr * grad(th, domain)  # one batch: the whole domain


def close(a, b, tol=1e-6):
    np.testing.assert_allclose(a, b, rtol=0, atol=tol)


# ----------------------------------------------------------------------------- DN


def test_dn_outer_update_by_hand():
    """theta~ = sequential SGD over the epoch's domain order; theta + beta (theta~ - theta)."""
    data = hand_data()
    fw = make("dn", data, alpha=0.3, beta=0.5, inner_optimizer="sgd", outer_optimizer="sgd")
    th = theta(fw.model)
    fw.train_epoch(1, range(4))
    assert sorted(fw.order) == [0, 1, 2, 3]
    tilde = th
    for d in fw.order:
        tilde = sgd_pass(tilde, DOMAINS[d], 0.3)
    close(theta(fw.model), th + 0.5 * (tilde - th))


def test_dn_outer_optimizer_gets_theta_minus_theta_tilde():
    """With Adam outside, the first step moves each coordinate by beta against
    sign(theta - theta~): .grad held theta - theta~."""
    data = hand_data()
    fw = make("dn", data, alpha=0.3, beta=0.01, inner_optimizer="sgd", outer_optimizer="adam")
    th = theta(fw.model)
    fw.train_epoch(1, range(4))
    tilde = th
    for d in fw.order:
        tilde = sgd_pass(tilde, DOMAINS[d], 0.3)
    close(theta(fw.model), th - 0.01 * np.sign(th - tilde), tol=1e-5)


def test_dn_shuffles_the_domain_order_every_epoch():
    fw = make("dn", hand_data())
    orders = []
    for e in range(6):
        fw.train_epoch(e + 1, range(4))
        assert sorted(fw.order) == [0, 1, 2, 3]
        orders.append(tuple(fw.order))
    assert len(set(orders)) > 1


# MLP, STAR, and issue 20's models (their buffers: BatchNorm and partitioned-norm moving
# averages, AdaptDHM's centres, AdaSparse's alpha, move identically in both)
BETA_ONE_MODELS = ["mlp", "star", "sarnet", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet",
                   "hamur", "m3oe"]  # fmt: skip


@pytest.mark.parametrize("model", BETA_ONE_MODELS)
def test_dn_with_beta_one_is_alternate_training(amazon, model):
    """Same seed, same data order (alternate, which shuffles the domain order every epoch
    by default as the authors' baselines, draws the epoch's domain order, then each
    domain's batches, from the seeded generator exactly as DN does): the same AUCs, epoch
    by epoch, domain by domain. Parameters (and so log losses) agree to float rounding
    only: theta - 1 * (theta - theta~) is theta~ up to its last bit. DN without its
    finetune stage (`finetune=false`): the pure algorithm."""
    common = tiny_overrides(model, epochs=4, patience=10)
    # A weight whose gradient is zero in exact arithmetic gets rounding noise, and Adam makes
    # noise a step of about lr, differently in the two runs. Normalisation makes such
    # weights: HAMUR's default BatchNorms on batches of one domain (every weight that reads
    # the domain's embedding), so it runs without them here, and its adapter's b_up, which
    # the domain norm subtracts again: it and the norm's moving mean are not compared, and
    # the norm evaluates with batch statistics (norm_eval=batch), where b_up cancels.
    # (HAMUR's adapter weights start at ones: sums of many terms, rounding grows to ~1e-6.)
    skip: tuple[str, ...] = ()
    loss_tol = 1e-6
    if model == "hamur":
        common.update(batch_norm=False, norm_eval="batch")
        skip, loss_tol = ("b_up", "norm.running_mean"), 1e-5
    alt = train(amazon, model, "alternate", overrides=common)
    dn = train(amazon, model, "dn", overrides={**common, "beta": 1.0, "finetune": False})
    assert [h["val_auc"] for h in alt.history] == [h["val_auc"] for h in dn.history]
    assert [h["samples"] for h in alt.history] == [h["samples"] for h in dn.history]
    a, b = alt.framework.model.state_dict(), dn.framework.model.state_dict()
    assert list(a) == list(b)
    for k in (k for k in a if not k.endswith(skip)):  # STAR's partitioned norm divides by
        # small variances: rounding grows
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6 if model == "mlp" else 1e-4)
    for split in ("val", "test"):
        ma, md = alt.record["metrics"][split], dn.record["metrics"][split]
        assert ma["auc_mean"] == md["auc_mean"]  # AUC: exactly (same ranking of the rows)
        for name, m in ma["domains"].items():
            assert m["auc"] == md["domains"][name]["auc"]
            assert m["logloss"] == pytest.approx(md["domains"][name]["logloss"], abs=loss_tol)
    # ...and beta < 1 is not alternate training
    other = train(amazon, model, "dn", overrides={**common, "beta": 0.5, "finetune": False})
    assert [h["val_auc"] for h in other.history] != [h["val_auc"] for h in alt.history]


# ----------------------------------------------------------------------------- snapshots


def test_grad_sum_equals_autograds_accumulation_in_rounds():
    """MAML's query gradient: the mean over many passes, tables summed in rounds (GradSum)
    equals what autograd's own accumulation gives, and the sum stays a sparse tensor no
    larger than the table."""
    torch.manual_seed(0)
    emb = nn.Embedding(10, 3, sparse=True)
    head = nn.Linear(3, 1)
    params = {"emb.weight": emb.weight, "head.weight": head.weight, "head.bias": head.bias}
    batches = [torch.randint(0, 10, (4,)) for _ in range(9)]  # 36 rows > 10: merge rounds
    for p in params.values():
        p.grad = None
    for ids in batches:  # autograd's way
        head(emb(ids)).sum().backward()
    want = {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad) / 9 for n, p in params.items()}
    for p in params.values():
        p.grad = None
    acc = GradSum(params, {"emb.weight"})
    for ids in batches:
        head(emb(ids)).sum().backward()
        acc.collect()
        assert emb.weight.grad is None  # taken out after each pass
        assert sum(g._nnz() for g in acc.parts["emb.weight"]) <= 2 * 10 + 4
    got = acc.mean(9)
    assert got["emb.weight"].is_sparse and got["emb.weight"]._nnz() <= 10
    for n in params:
        g = got[n].to_dense() if got[n].is_sparse else got[n]
        torch.testing.assert_close(g, want[n], rtol=1e-6, atol=1e-7)


def test_snapshot_copies_touched_rows_only_and_restores_exactly():
    torch.manual_seed(0)
    emb = nn.Embedding(1000, 4, sparse=True)
    head = nn.Linear(4, 1)
    params = {"emb.weight": emb.weight, "head.weight": head.weight, "head.bias": head.bias}
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.SGD(params.values(), lr=0.5)
    snap = Snapshot(params, {"emb.weight"})
    assert set(snap.dense) == {"head.weight", "head.bias"}  # no copy of the table
    touched = torch.tensor([3, 7, 7, 500, 3, 42])
    for ids in (touched[:3], touched[3:]):
        opt.zero_grad()
        head(emb(ids)).sum().backward()
        snap.record()
        opt.step()
    saved = sum(len(i) for i in snap.rows["emb.weight"].idx)
    assert saved == 4  # rows 3, 7, 500, 42, each once
    moved = {n: p.detach().clone() for n, p in params.items()}
    delta = snap.delta_and_restore()
    d = delta["emb.weight"]
    assert d.is_sparse and d.is_coalesced() and d._nnz() == 4
    assert d._indices()[0].tolist() == [3, 7, 42, 500]  # sorted, as coalesce() gives
    want = (before["emb.weight"] - moved["emb.weight"])[d._indices()[0]]
    assert torch.equal(d._values(), want)
    assert torch.equal(d.to_dense(), before["emb.weight"] - moved["emb.weight"])
    assert torch.equal(delta["head.weight"], before["head.weight"] - moved["head.weight"])
    for n, p in params.items():  # theta put back exactly
        assert torch.equal(p.detach(), before[n])
    assert not snap.rows["emb.weight"].seen.any()  # the reusable mask is clean again


def test_dn_on_sparse_tables_moves_touched_rows_only(amazon):
    """A DN epoch on an MLP with sparse tables: rows no training batch touches keep their
    values; the outer step moves the others."""
    res = train(amazon, "mlp", "dn", overrides=tiny_overrides("mlp", epochs=1, dropout=0.0))
    fw = res.framework
    assert "inputs.user.weight" in sparse_param_names(fw.model)
    torch.manual_seed(0)
    init = MODELS.get("mlp")(
        amazon.info, resolve_config("mlp", "dn", tiny_overrides("mlp", dropout=0.0)).model
    )
    seen = torch.zeros(amazon.info.n_users, dtype=torch.bool)
    seen[amazon.train.user_id] = True
    w, w0 = fw.model.inputs.user.weight.detach(), init.inputs.user.weight.detach()
    if (~seen).any():
        assert torch.equal(w[~seen], w0[~seen])
    assert not torch.equal(w[seen], w0[seen])


# ----------------------------------------------------------------------------- DR / MAMDR


def test_dr_order_and_gamma_step_by_hand():
    """Algorithm 2 for target 0 over sampled [2, 0]: per sampled j, theta~ = theta_S +
    theta_0, SGD on j then on 0, theta_0 += gamma (theta~ - (theta_S + theta_0))."""
    data = hand_data()
    fw = make(
        "mamdr",
        data,
        alpha=0.4,
        gamma=0.5,
        inner_optimizer="sgd",
        outer_optimizer="sgd",
        theta_d_init="zero",
    )
    shared = theta(fw.model)
    fw.regularize(0, [2, 0], LossMeter())
    off = np.zeros(3)
    for j in (2, 0):
        start = shared + off
        w = sgd_pass(sgd_pass(start, DOMAINS[j], 0.4), DOMAINS[0], 0.4)
        off = off + 0.5 * (w - start)
    got = fw.offsets.dense[0]
    close(
        np.concatenate(
            [got["lin.weight"].detach().numpy().ravel(), got["lin.bias"].detach().numpy()]
        ),
        off,
    )
    close(theta(fw.model), shared)  # theta_S untouched by DR
    assert all(not t.any() for d in (1, 2, 3) for t in fw.offsets.dense[d].values())
    # the domain is evaluated with theta_S + theta_0, the model keeps theta_S
    p = fw.params_for_domain(0)
    close(
        np.concatenate([p["lin.weight"].detach().numpy().ravel(), p["lin.bias"].detach().numpy()]),
        shared + off,
    )
    probs = fw.predict(data.test)
    x = np.array([[u / 10, i / 10] for u, i, _ in DOMAINS[0]])
    th0 = shared + off
    close(probs[: len(DOMAINS[0])], 1 / (1 + np.exp(-(x @ th0[:2] + th0[2]))), tol=1e-6)
    close(theta(fw.model), shared)


def _record_passes(fw):
    calls = []
    original = fw.train_pass

    def spy(d, opt, meter, params=None, snap=None, rows=None, only=None):
        calls.append((d, "specific" if only is not None else "shared"))
        return original(d, opt, meter, params, snap, rows, only)

    fw.train_pass = spy
    return calls


@pytest.mark.parametrize("name", ["mamdr", "dr"])
def test_mamdr_epoch_order_dn_then_dr_with_target_appended(name):
    data = hand_data()
    fw = make(name, data, k=2)
    calls = _record_passes(fw)
    fw.train_epoch(1, range(4))
    order = fw.order
    assert calls[:4] == [(d, "shared") for d in order]  # DN (or alternate): every domain once
    dr = calls[4:]
    assert all(kind == "specific" for _, kind in dr)
    at = 0
    for i in order:  # per target i: k others then i itself, each pass "other, then target"
        sampled = [dr[at + 2 * s][0] for s in range(3)]
        assert [dr[at + 2 * s + 1][0] for s in range(3)] == [i, i, i]
        assert len(set(sampled[:2])) == 2 and i not in sampled[:2] and sampled[2] == i
        at += 6
    assert at == len(dr)


def test_dr_k_is_capped_and_target_optional():
    fw = make("mamdr", hand_data(), k=10, add_target=False)
    s = fw.sample_domains(1, [0, 1, 2, 3])
    assert sorted(s) == [0, 2, 3]
    fw = make("mamdr", hand_data(), k=0)
    assert fw.sample_domains(3, [0, 1, 2, 3]) == [3]


def test_mamdr_memory_is_domains_times_specific_params(amazon):
    over = tiny_overrides("mlp", epochs=1, k=1, specific_params="dense", finetune=False)
    res = train(amazon, "mlp", "mamdr", overrides=over)
    fw = res.framework
    emb = {"inputs.user.weight", "inputs.item.weight", "inputs.domain.weight"}
    specific = [n for n, _ in fw.model.named_parameters() if n not in emb]
    assert all(set(o) == set(specific) for o in fw.offsets.dense)  # no table per domain
    assert all(not t for t in fw.offsets.tables)
    own = sum(p.numel() for p in fw.model.parameters())
    spec = sum(dict(fw.model.named_parameters())[n].numel() for n in specific)
    assert res.record["n_parameters"] == own + amazon.info.n_domains * spec
    # the best state holds the offsets (references, saved at once as the trainer does);
    # loading it back restores them
    buf = io.BytesIO()
    torch.save(fw.state_dict(), buf)
    for o in fw.offsets.dense:
        for t in o.values():
            t.data.zero_()
    buf.seek(0)
    fw.load_state_dict(torch.load(buf, weights_only=False))
    assert any(t.any() for t in fw.offsets.dense[0].values())


def _touched(data, domains) -> tuple[set[int], set[int]]:
    tr = data.train
    users, items = set(), set()
    for d in domains:
        rows = tr.rows(d)
        users |= set(tr.user_id[rows].tolist())
        items |= set(tr.item_id[rows].tolist())
    return users, items


def test_mamdr_table_offsets_hold_only_the_rows_a_domains_passes_touched(amazon):
    """specific_params=all (the default, as published): theta_d of an embedding table is
    the rows domain d's DR passes changed (its own and its sampled domains' users/items),
    never a dense copy: untouched rows cost nothing, whatever the table's size."""
    res = train(amazon, "mlp", "mamdr", overrides=tiny_overrides("mlp", epochs=1, k=1))
    fw = res.framework
    offs = fw.offsets
    assert set(offs.table_names) == {"inputs.user.weight", "inputs.item.weight",
                                     "inputs.domain.weight"}  # fmt: skip
    all_users, all_items = _touched(amazon, range(amazon.info.n_domains))
    for d in range(amazon.info.n_domains):
        rows, _ = offs.tables[d]["inputs.user.weight"]
        own_users, _ = _touched(amazon, [d])
        assert own_users <= set(rows.tolist()) <= all_users  # its own rows, only touched ones
        assert len(set(rows.tolist())) == len(rows)
        assert offs.tables[d]["inputs.item.weight"][0].numel() <= len(all_items)
    n_users = amazon.info.n_users
    stored = sum(v.numel() for t in offs.tables for _, v in t.values())
    assert offs.numel() == stored + sum(t.numel() for o in offs.dense for t in o.values())
    # evaluation: domain d sees theta_S + its rows; other rows of the table are theta_S
    p = fw.params_for_domain(0)
    own = dict(fw.model.named_parameters())["inputs.user.weight"]
    rows, vals = offs.tables[0]["inputs.user.weight"]
    torch.testing.assert_close(p["inputs.user.weight"][rows], own[rows] + vals)
    untouched = sorted(set(range(n_users)) - set(rows.tolist()))
    assert torch.equal(p["inputs.user.weight"][untouched], own[untouched])


def test_memory_of_table_offsets_is_independent_of_untouched_rows():
    """The same training rows with a user table 100x larger: the same stored offsets."""
    sizes = []
    for n_users in (10, 1000):
        data = hand_data()
        data = MDRData(info=dataclasses.replace(data.info, n_users=n_users), splits=data.splits)
        net = MODELS.get("mlp")(data.info, MODELS.get("mlp").Config(emb_dim=4, hidden=[4]))
        fw = make("mamdr", data, model=net, k=1)
        fw.train_epoch(1, range(4))
        sizes.append([fw.offsets.table_rows(d) for d in range(4)])
    assert sizes[0] == sizes[1]


def test_theta_d_starts_as_a_fresh_random_draw(amazon):
    """theta_d_init=random (the authors' init_layer): each domain's dense theta_d is a new
    draw of the layers' initialisers (Glorot kernels, zero biases here), different per
    domain; tables start with no rows; "zero" starts at zero."""
    fw = train(amazon, "mlp", "mamdr", overrides=tiny_overrides("mlp", epochs=1, k=1)).framework
    ctx = fw.ctx
    net = MODELS.get("mlp")(amazon.info, fw.model.cfg)
    fresh = FRAMEWORKS.get("mamdr")(net, ctx, fw.cfg)
    fresh.begin_stage(Stage("train"))
    kernels = [n for n in fresh.offsets.dense_names if n.endswith("weight")]
    biases = [n for n in fresh.offsets.dense_names if n.endswith("bias")]
    assert kernels and biases
    d0, d1 = fresh.offsets.dense[0], fresh.offsets.dense[1]
    for n in kernels:
        assert d0[n].std() > 0 and not torch.equal(d0[n], d1[n])
        fan_in, fan_out = d0[n].shape[1], d0[n].shape[0]
        assert float(d0[n].detach().std()) == pytest.approx(
            (2 / (fan_in + fan_out)) ** 0.5, rel=0.3
        )
    assert all(not d0[n].any() for n in biases)
    assert all(not t for t in fresh.offsets.tables)
    cfg = dataclasses.replace(fw.cfg, theta_d_init="zero")
    zero = FRAMEWORKS.get("mamdr")(MODELS.get("mlp")(amazon.info, fw.model.cfg), ctx, cfg)
    zero.begin_stage(Stage("train"))
    assert all(not t.any() for o in zero.offsets.dense for t in o.values())


def test_bad_hyperparameters_are_user_errors():
    with pytest.raises(UserError, match="alpha must be > 0"):
        make("dn", hand_data(), alpha=0.0)
    with pytest.raises(UserError, match="unknown optimizer"):
        make("mamdr", hand_data(), outer_optimizer="rmsprop")
    with pytest.raises(UserError, match="k must be >= 0"):
        make("mamdr", hand_data(), k=-1)
    with pytest.raises(UserError, match="support_fraction"):
        make("maml", hand_data(), support_fraction=1.0)
    with pytest.raises(UserError, match="'beta' is a hyperparameter of framework"):
        resolve_config("mlp", "dr", {"beta": 0.5})  # dr has no outer step on theta_S


# ----------------------------------------------------------------------------- MAML, Reptile, MLDG


def first_row_split(data) -> tuple[list, list]:
    """A known split of each hand domain's training rows: its first row, and the rest
    (in place of MAML's support/query and MLDG's meta-train/meta-val draws)."""
    offsets = data.train.offsets
    first = [torch.tensor([offsets[d]]) for d in range(len(offsets) - 1)]
    rest = [torch.arange(offsets[d] + 1, offsets[d + 1]) for d in range(len(offsets) - 1)]
    return first, rest


def test_maml_inner_and_outer_steps_by_hand():
    """Per domain: theta' = theta - alpha grad L_support(theta);
    theta <- theta - beta grad L_query(theta') (first-order; SGD inside and outside)."""
    data = hand_data()
    fw = make("maml", data, alpha=0.5, beta=0.2, inner_optimizer="sgd", outer_optimizer="sgd")
    th = theta(fw.model)
    fw.support, fw.query = first_row_split(data)  # support: the first row, query: the rest
    fw.train_epoch(1, range(4))
    for d in fw.order:
        support, query = DOMAINS[d][:1], DOMAINS[d][1:]
        prime = sgd_pass(th, support, 0.5)
        th = th - 0.2 * grad(prime, query)
    close(theta(fw.model), th)


def test_maml_splits_each_domain_into_disjoint_support_and_query(amazon):
    """split_each_epoch=false: one disjoint cut per stage (the default, the authors'
    take/skip anew each epoch: tests/test_authors_fidelity.py)."""
    over = tiny_overrides("mlp", epochs=1, split_each_epoch=False)
    res = train(amazon, "mlp", "maml", overrides=over)
    fw = res.framework
    for d in range(amazon.info.n_domains):
        s, q = set(fw.support[d].tolist()), set(fw.query[d].tolist())
        rows = set(range(amazon.train.offsets[d], amazon.train.offsets[d + 1]))
        assert s and q and not s & q and s | q == rows
        assert len(s) == int(len(rows) * 0.2)


def test_reptile_by_hand():
    """theta~ = one SGD pass on the domain; theta += beta (theta~ - theta), per domain."""
    fw = make("reptile", hand_data(), alpha=0.5, beta=0.3, inner_optimizer="sgd")
    th = theta(fw.model)
    fw.train_epoch(1, range(4))
    for d in fw.order:
        th = th + 0.3 * (sgd_pass(th, DOMAINS[d], 0.5) - th)
    close(theta(fw.model), th)


def test_mldg_step_by_hand():
    """theta <- theta - lr (grad F(theta) + w grad G(theta - alpha grad F(theta)))."""
    data = hand_data()
    fw = make(
        "mldg", data, variant="li", alpha=0.5, beta=0.1, outer_optimizer="sgd", meta_weight=2.0
    )
    th = theta(fw.model)
    tr, te = data.train.take(slice(0, 4)), data.train.take(slice(4, 7))
    fw.mldg_step(tr, te, LossMeter(), 0, 1)
    prime = th - 0.5 * grad(th, DOMAINS[0])
    close(theta(fw.model), th - 0.1 * (grad(th, DOMAINS[0]) + 2.0 * grad(prime, DOMAINS[1])))


def test_mldg_authors_step_by_hand():
    """The authors' MLDG (model_zoo/mldg.py): per domain, theta' = theta - beta G_tr(theta);
    theta <- theta - beta (G_tr(theta) + G_val(theta')) (SGD outside)."""
    data = hand_data()
    fw = make("mldg", data, variant="authors", beta=0.1, outer_optimizer="sgd")
    th = theta(fw.model)
    fw.meta_train, fw.meta_val = first_row_split(data)  # meta-train: the first row
    fw.train_epoch(1, range(4))
    for d in fw.order:
        tr, va = DOMAINS[d][:1], DOMAINS[d][1:]
        prime = th - 0.1 * grad(th, tr)
        th = th - 0.1 * (grad(th, tr) + grad(prime, va))
    close(theta(fw.model), th)


def test_mldg_authors_splits_each_domain_80_20(amazon):
    over = tiny_overrides("mlp", epochs=1, split_each_epoch=False)
    res = train(amazon, "mlp", "mldg", overrides=over)
    fw = res.framework
    assert fw.cfg.variant == "authors"
    for d in range(amazon.info.n_domains):
        tr, va = set(fw.meta_train[d].tolist()), set(fw.meta_val[d].tolist())
        rows = set(range(amazon.train.offsets[d], amazon.train.offsets[d + 1]))
        assert tr and va and not tr & va and tr | va == rows
        assert len(tr) == int(len(rows) * 0.8)


@pytest.mark.parametrize(
    "method,variant", [("mldg", "li"), ("mldg", "authors"), ("pcgrad", "yu"), ("pcgrad", "authors")]
)
def test_both_variants_train_end_to_end(amazon, method, variant):
    res = train(amazon, "mlp", method, overrides=tiny_overrides("mlp", epochs=2, variant=variant))
    assert res.framework.cfg.variant == variant
    m = res.record["metrics"]["test"]
    assert m["auc_mean"] is not None and math.isfinite(m["logloss"])


@pytest.mark.parametrize("method", ["mldg", "pcgrad"])
def test_unknown_variant_is_a_user_error(method):
    with pytest.raises(UserError, match="variant"):
        make(method, hand_data(), variant="textbook")


# ----------------------------------------------------------------------------- PCGrad


def test_pcgrad_projects_two_known_conflicting_gradients():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # <g1, g2> = -1: conflict
    # g1' = g1 - (-1)/|g2|^2 g2 = (0.5, 0.5); g2' = g2 - (-1)/|g1|^2 g1 = (0, 1)
    torch.testing.assert_close(pcgrad(g), torch.tensor([0.5, 1.5]))
    agree = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # no conflict: plain sum
    torch.testing.assert_close(pcgrad(agree), torch.tensor([2.0, 1.0]))


def test_pcgrad_leaves_no_conflict_with_the_others():
    torch.manual_seed(0)
    g = torch.randn(2, 50)
    g[1] = -g[0] + 0.1 * torch.randn(50)
    pc = g.clone()
    for i, j in ((0, 1), (1, 0)):
        pc[i] = g[i] - (g[i] @ g[j]) / (g[j] @ g[j]) * g[j]
        assert pc[i] @ g[j] == pytest.approx(0.0, abs=1e-5)
    torch.testing.assert_close(pcgrad(g), pc.sum(0))


def test_surgery_acts_on_shared_entries_only():
    """Dense tensor reached by both domains: projected. A tensor only one domain reaches
    (its tower) and table rows only one domain touches: summed as they are."""

    def sp(rows, vals):
        return torch.sparse_coo_tensor(
            torch.tensor([rows]), torch.tensor(vals), (5, 1), check_invariants=True
        )

    g1 = {
        "shared": torch.tensor([1.0, 0.0]),
        "tower0": torch.tensor([3.0]),
        "tower1": None,
        "emb": sp([0, 2], [[1.0], [5.0]]),
    }
    g2 = {
        "shared": torch.tensor([-1.0, 0.0]),
        "tower0": None,
        "tower1": torch.tensor([4.0]),
        "emb": sp([2, 4], [[-2.0], [7.0]]),
    }
    out = surgery([g1, g2], {"shared", "tower0", "tower1", "emb"})
    # shared vector per domain: (shared..., emb row 2) = (1, 0, 5) and (-1, 0, -2): dot -11
    a, b = torch.tensor([1.0, 0.0, 5.0]), torch.tensor([-1.0, 0.0, -2.0])
    want = (a - (a @ b) / (b @ b) * b) + (b - (b @ a) / (a @ a) * a)
    torch.testing.assert_close(out["shared"], want[:2])
    torch.testing.assert_close(out["tower0"], torch.tensor([3.0]))
    torch.testing.assert_close(out["tower1"], torch.tensor([4.0]))
    emb = out["emb"].to_dense().squeeze(1)
    torch.testing.assert_close(emb, torch.tensor([1.0, 0.0, float(want[2]), 0.0, 7.0]))


def test_pcgrad_step_equals_surgery_of_per_domain_gradients():
    data = hand_data()
    fw = make("pcgrad", data, variant="yu", lr=0.1)
    th = theta(fw.model)
    g = torch.tensor(np.stack([grad(th, DOMAINS[d]) for d in range(4)]), dtype=torch.float32)
    fw.ctx.generator.manual_seed(5)
    batches = {
        d: data.train.take(slice(data.train.offsets[d], data.train.offsets[d + 1]))
        for d in range(4)
    }
    grads = fw.domain_grads(batches, LossMeter())
    flat = torch.stack([torch.cat([x["lin.weight"].ravel(), x["lin.bias"]]) for x in grads])
    torch.testing.assert_close(flat, g, rtol=0, atol=1e-6)
    fw.ctx.generator.manual_seed(5)
    want = pcgrad(flat.double(), torch.Generator().manual_seed(5)).numpy()
    fw.ctx.generator.manual_seed(5)
    fw.pcgrad_step(batches, LossMeter())
    # Adam's first step (TF1's epsilon): lr g / (|g| + eps / sqrt(1 - b2)) ~ lr sign(g)
    close(theta(fw.model), th - 0.1 * want / (np.abs(want) + 1e-8 / np.sqrt(1e-3)), tol=1e-6)


def test_pcgrad_authors_projection_row_by_row():
    """model_zoo/pcgrad.py PCGrad.PCGrad: per row of the last axis, where g_r . a_r > 0,
    a_r -= (g_r . a_r) / |g_r| g_r; the result is g + a'."""
    g = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    a = torch.tensor([[1.0, 2.0], [-1.0, 5.0], [2.0, 2.0]])
    want = g + torch.tensor([[1.0 - 11 / 5 * 3, 2.0 - 11 / 5 * 4], [-1.0, 5.0], [2.0, 2.0]])
    torch.testing.assert_close(authors_project(g, a), want)
    # transposed (an nn.Linear weight): rows are the columns
    torch.testing.assert_close(authors_project(g.t(), a.t(), transpose=True), want.t())
    # 1-D: one row
    v, w = torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0])
    torch.testing.assert_close(authors_project(v, w), v + w - 2 / 2**0.5 * v)
    assert authors_project(None, w) is w and authors_project(v, None) is v
    # a table's sparse gradients: the same as the dense computation, and still sparse
    gs = torch.sparse_coo_tensor(torch.tensor([[0, 1, 4]]), g, (6, 2), check_invariants=False)
    ws = torch.sparse_coo_tensor(torch.tensor([[0, 1, 5]]), a, (6, 2), check_invariants=False)
    out = authors_project(gs, ws)
    assert out.is_sparse
    torch.testing.assert_close(out.to_dense(), authors_project(gs.to_dense(), ws.to_dense()))


def _authors_rule(g, a):
    """The authors' rule on LinearCTR by hand: the weight [1, 2] is Keras's [2, 1] kernel
    (one row per input, one number each), the bias one row of one number."""
    a = a.copy()
    for r in range(3):
        if g[r] * a[r] > 0:
            a[r] -= g[r] * a[r] / abs(g[r]) * g[r]
    return g + a


def test_pcgrad_authors_gradient_by_hand():
    """One domain's full-pass gradient, each sampled domain's projected onto the running
    sum (the authors' final_grads is current_grads) and added."""
    data = hand_data()
    fw = make("pcgrad", data, variant="authors", sample_num=3)
    th = theta(fw.model)
    got = fw.authors_grads(2, [0, 3, 1], LossMeter())
    want = grad(th, DOMAINS[2])
    for j in (0, 3, 1):
        want = _authors_rule(want, grad(th, DOMAINS[j]))
    close(
        np.concatenate(
            [got["lin.weight"].double().numpy().ravel(), got["lin.bias"].double().numpy()]
        ),
        want,
    )


def test_pcgrad_authors_epoch_one_step_per_domain():
    """One optimizer step per domain (Adam's first: theta - lr sign(g)), sample_num others."""
    data = hand_data()
    fw = make("pcgrad", data, variant="authors", sample_num=2, lr=0.1)
    th = theta(fw.model)
    seen = []
    real = fw.authors_grads

    def spy(d, aux, meter):
        seen.append((d, list(aux)))
        return real(d, aux, meter)

    fw.authors_grads = spy
    first = {}
    real_step = fw.opt.step

    def step():
        if not first:
            first["theta"] = th - 0.1 * np.sign(
                np.concatenate(
                    [
                        fw.model.lin.weight.grad.double().numpy().ravel(),
                        fw.model.lin.bias.grad.double().numpy(),
                    ]
                )
            )
        real_step()
        if "after" not in first:
            first["after"] = theta(fw.model)

    fw.opt.step = step
    fw.train_epoch(1, range(4))
    assert sorted(d for d, _ in seen) == [0, 1, 2, 3]
    assert all(len(aux) == 2 and d not in aux and len(set(aux)) == 2 for d, aux in seen)
    close(first["after"], first["theta"], tol=1e-6)
    assert fw.opt.optimizers[0].state[fw.model.lin.bias]["step"] == 4


# ----------------------------------------------------------------------------- weighted loss


def test_uncertainty_weights_receive_gradients_by_hand():
    data = hand_data()
    fw = make("weighted_loss", data)
    with torch.no_grad():
        fw.log_var.copy_(torch.tensor([0.2, -0.4, 0.0, 1.0]))
    batch = data.train.take(torch.tensor([0, 1, 4, 5, 6]))  # domains 0 and 1
    rows = nn.functional.binary_cross_entropy_with_logits(
        fw.forward(batch), batch["label"], reduction="none"
    )
    fw.weighted(rows, batch["domain_id"]).backward()
    s = fw.log_var.detach()
    l0, l1 = rows[:2].mean().detach(), rows[2:].mean().detach()
    want = torch.tensor([-math.exp(-0.2) * l0 + 0.5, -math.exp(0.4) * l1 + 0.5, 0.0, 0.0])
    torch.testing.assert_close(fw.log_var.grad, want)
    obj = (torch.exp(-s[0]) * l0 + s[0] / 2 + torch.exp(-s[1]) * l1 + s[1] / 2).item()
    assert fw.weighted(rows.detach(), batch["domain_id"]).item() == pytest.approx(obj)


@pytest.mark.parametrize("mixed", [False, True])
def test_weighted_loss_learns_every_domain_weight(amazon, mixed):
    res = train(
        amazon, "mlp", "weighted_loss", overrides=tiny_overrides("mlp", epochs=2, mixed=mixed)
    )
    fw = res.framework
    assert (fw.log_var.detach() != 0).all()
    assert "log_var" not in dict(fw.model.named_parameters())
    assert torch.equal(fw.state_dict()["log_var"], fw.log_var.detach())


# ----------------------------------------------------------------------------- any model


class UserModel(nn.Module):
    """A model a user writes: nn.Linear over two sparse embedding tables."""

    def __init__(self, n_users, n_items):
        super().__init__()
        self.u = nn.Embedding(n_users, 4, sparse=True)
        self.i = nn.Embedding(n_items, 4, sparse=True)
        self.out = nn.Linear(8, 1)

    def forward(self, batch):
        return self.out(torch.cat([self.u(batch["user_id"]), self.i(batch["item_id"])], 1)).squeeze(
            -1
        )


@pytest.mark.parametrize("method", FRAMEWORKS_TESTED)
def test_framework_leaves_user_model_class_and_keys_unchanged(amazon, method):
    torch.manual_seed(0)
    net = UserModel(amazon.info.n_users, amazon.info.n_items)
    keys = list(net.state_dict())
    attrs = set(vars(net))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    extra = {"k": 1} if method in ("dr", "mamdr") else {}
    res = train(
        amazon, net, method, overrides={"batch_size": 64, "epochs": 1, "device": "cpu", **extra}
    )
    assert type(res.framework.model) is UserModel and res.framework.model is net
    assert list(net.state_dict()) == keys and set(vars(net)) == attrs
    assert not net._forward_hooks and not net._forward_pre_hooks
    assert any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())  # it trained
    rec = res.record
    assert rec["method"] == method and 0.0 <= rec["metrics"]["test"]["auc_mean"] <= 1.0


# ----------------------------------------------------------------------------- every model


@pytest.mark.parametrize("method", FRAMEWORKS_TESTED)
@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_trains_one_epoch(amazon, model, method):
    extra = {"k": 1} if method in ("dr", "mamdr") else {}
    res = train(amazon, model, method, overrides=tiny_overrides(model, epochs=1, **extra))
    rec = res.record
    # one epoch per stage (the finetune stage's first epoch is always its best so far)
    assert rec["best_epoch"] == len(rec["stages"]) and rec["samples_per_second"] > 0
    for split in ("val", "test"):
        m = rec["metrics"][split]
        assert list(m["domains"]) == list(amazon.info.domain_names)
        assert m["auc_mean"] is not None and math.isfinite(m["logloss"])
    assert {h["stage"] for h in res.history} == {s.name for s in res.framework.stages()}


@pytest.mark.parametrize("method", ["mamdr", "pcgrad", "mldg"])
def test_fixed_feature_data(taobao, method):
    """Taobao-like data (fixed features in the batch, only the domain table embedded)."""
    res = train(
        taobao,
        "mlp",
        method,
        overrides=tiny_overrides("mlp", epochs=1, k=1)
        if method == "mamdr"
        else tiny_overrides("mlp", epochs=1),
    )
    assert res.record["metrics"]["test"]["auc_mean"] is not None


def test_dense_embedding_switch(amazon):
    """sparse_embeddings=false: tables get dense gradients; snapshots copy them per pass."""
    for method in ("dn", "mldg", "pcgrad"):
        res = train(
            amazon,
            "mlp",
            method,
            overrides=tiny_overrides("mlp", epochs=1, sparse_embeddings=False),
        )
        assert sparse_param_names(res.framework.model) == set()


def test_mamdr_is_the_recommended_framework():
    from mdrbench.frameworks import best_framework

    assert best_framework() == "mamdr"
    assert all(FRAMEWORKS.get(n).summary for n in FRAMEWORKS_TESTED)


def test_stage_select_mean():
    for n in FRAMEWORKS_TESTED:
        fw = make(n, hand_data())
        assert fw.stages()[0] == Stage("train")
        if getattr(fw.cfg, "finetune", False):  # then the finetune stage, per domain
            assert [s.name for s in fw.stages()] == ["train", "finetune"]
            assert fw.stages()[1].select == "domain" and not fw.stages()[1].keep_start
            assert make(n, hand_data(), finetune=False).stages() == [Stage("train")]
        else:
            assert fw.stages() == [Stage("train")]


def test_table_offsets_leave_is_the_formula_bit_for_bit():
    """DomainOffsets.leave updates a table's theta_d in place, part by part; the numbers
    are those of theta_d + rate (theta~ - theta_S - theta_d) written out, bit for bit, on
    rows domain d held already and rows new to it."""
    from mdrbench.frameworks.params import DomainOffsets

    g = torch.Generator().manual_seed(0)
    table = nn.Parameter(torch.randn(50, 3, generator=g))
    offs = DomainOffsets({"t": table}, ["t"], {"t"}, n_domains=2)
    held = torch.tensor([7, 3, 40])
    offs.tables[1]["t"] = (held, torch.randn(3, 3, generator=g))
    for rate in (1.0, 0.1):
        theta_s = table.detach().clone()
        prev_rows, prev_vals = (t.clone() for t in offs.tables[1]["t"])
        snap = Snapshot({"t": table}, {"t"})
        offs.enter(1, snap)
        # two steps that move the held rows and new ones (sparse gradients, as an optimizer)
        for rows in (torch.tensor([3, 9, 12]), torch.tensor([12, 40, 21])):
            table.grad = torch.sparse_coo_tensor(
                rows.unsqueeze(0),
                torch.randn(3, 3, generator=g),
                table.shape,
                check_invariants=True,
            )
            snap.record()
            with torch.no_grad():
                table.add_(table.grad.to_dense(), alpha=-0.5)
        moved = table.detach().clone()
        offs.leave(1, snap, rate=rate)
        assert torch.equal(table.detach(), theta_s)  # theta_S restored exactly
        rows, vals = offs.tables[1]["t"]
        assert rows[: len(prev_rows)].tolist() == prev_rows.tolist()
        old = torch.zeros(len(rows), 3)  # theta_d: 0 on rows new to the domain
        old[: len(prev_rows)] = prev_vals
        cur = moved[rows] - theta_s[rows]
        assert torch.equal(vals, old + rate * (cur - old))
        assert set(rows.tolist()) == {7, 3, 40, 9, 12, 21}
    assert offs.tables[0] == {}


def test_best_state_is_the_live_tensors_not_a_copy(amazon):
    """state_dict() and domain_state() hand the trainer references, which it writes to
    disk at once: a copy beside the live state would set the peak memory at Amazon's id
    space (docs/benchmarks.md)."""
    fw = train(amazon, "mlp", "mamdr", overrides=tiny_overrides("mlp", epochs=1, k=1)).framework
    state = fw.state_dict()
    own = dict(fw.model.named_parameters())
    for n, t in state["model"].items():
        if n in own:
            assert t.data_ptr() == own[n].data_ptr()
    rows, vals = fw.offsets.tables[0]["inputs.user.weight"]
    saved_rows, saved_vals = state["offsets"][0]["tables"]["inputs.user.weight"]
    assert saved_rows is rows and saved_vals is vals


def test_mamdr_hands_theta_d_to_the_finetune_stage(amazon):
    """The finetune stage trains MAMDR's theta_d in place (no second set of per-domain
    offsets); with finetune_params narrower than specific_params the other theta_d are
    kept exactly and still used; n_parameters counts theta_S and the offsets once."""
    over = tiny_overrides("mlp", epochs=1, k=1, finetune_epochs=1, finetune_params="dense")
    res = train(amazon, "mlp", "mamdr", overrides={**over, "finetune": False})
    fw = res.framework
    tables = {d: {n: (r.clone(), v.clone()) for n, (r, v) in t.items()}
              for d, t in enumerate(fw.offsets.tables)}  # fmt: skip
    dense = [{n: t.detach().clone() for n, t in o.items()} for o in fw.offsets.dense]
    full = train(amazon, "mlp", "mamdr", overrides=over)
    fw2 = full.framework
    runner = fw2.stage_runner(fw2.stages()[-1])
    assert runner.offsets is fw2.offsets  # handed over, not copied
    for d, t in enumerate(fw2.offsets.tables):  # tables not finetuned: exactly MAMDR's
        assert t.keys() == tables[d].keys()
        for n, (r, v) in t.items():
            assert torch.equal(r, tables[d][n][0]) and torch.equal(v, tables[d][n][1])
    assert any(
        not torch.equal(t, dense[d][n])
        for d, o in enumerate(fw2.offsets.dense)
        for n, t in o.items()
    )  # the dense theta_d were finetuned
    own = sum(p.numel() for p in fw2.model.parameters() if p.requires_grad)
    assert full.record["n_parameters"] == own + fw2.offsets.numel()
    assert res.record["n_parameters"] == own + fw.offsets.numel()


def test_the_best_state_is_read_back_only_when_training_went_past_it(amazon, monkeypatch):
    from mdrbench import trainer

    loads: list[str] = []
    real = trainer._BestStates.load
    monkeypatch.setattr(
        trainer._BestStates, "load", lambda self, key: loads.append(key) or real(self, key)
    )
    capped = train(amazon, "mlp", "alternate", overrides=tiny_overrides("mlp", epochs=1))
    assert capped.record["stages"][0]["best_epoch"] == 1 and loads == []
    res = train(amazon, "mlp", "alternate", overrides=tiny_overrides("mlp", epochs=0))
    assert res.record["best_epoch"] < len(res.history) and loads == ["stage"]


def test_offsets_are_evaluated_in_place_and_taken_out_exactly(amazon):
    """MAMDR and the finetune stage evaluate a domain by writing theta_d into the model for
    the domain's rows (no copy of a table per domain): the same probabilities, bit for bit,
    as through a copy of theta_S + theta_d, and theta_S exactly as before, on an error too."""
    fw = train(amazon, "mlp", "mamdr", overrides=tiny_overrides("mlp", epochs=1, k=1)).framework
    before = {n: p.detach().clone() for n, p in fw.named_params().items()}

    @contextlib.contextmanager
    def copied(d):
        yield fw.params_for_domain(d)

    got = fw.predict(amazon.test)
    assert np.array_equal(got, fw.predict(amazon.test, domain_params=copied))
    for n, p in fw.named_params().items():
        assert torch.equal(p.detach(), before[n])
    with pytest.raises(RuntimeError, match="boom"):
        with fw.domain_params(0):
            assert not torch.equal(fw.model.inputs.user.weight, before["inputs.user.weight"])
            raise RuntimeError("boom")
    for n, p in fw.named_params().items():
        assert torch.equal(p.detach(), before[n])


def test_sparse_adam_is_torchs_bit_for_bit():
    """`_SparseAdam` is torch's SparseAdam made faster, the same floats: repeated ids in a
    batch (the gradient's duplicates summed by coalesce), rows no batch touches, a step
    with no gradient for one table."""
    from mdrbench.frameworks.base import _SparseAdam

    def run(cls):
        torch.manual_seed(0)
        tables = [nn.Embedding(50, 4, sparse=True), nn.Embedding(7, 3, sparse=True)]
        opt = cls([t.weight for t in tables], lr=1e-2)
        gen = torch.Generator().manual_seed(1)
        for step in range(6):
            for k, t in enumerate(tables):
                if step == 3 and k == 1:
                    continue  # no gradient this step
                ids = torch.randint(0, 20 if k == 0 else 7, (30,), generator=gen)
                (t(ids) ** 2 * torch.randn(30, 1, generator=gen)).sum().backward()
            opt.step()
            for t in tables:
                t.weight.grad = None
        return [t.weight.detach() for t in tables]

    ours, torchs = run(_SparseAdam), run(torch.optim.SparseAdam)
    assert all(torch.equal(a, b) for a, b in zip(ours, torchs))
    assert torch.equal(ours[0][20:], run(lambda ps, lr: torch.optim.SGD(ps, lr=0))[0][20:])
