"""The trainer, the data loader, the framework tools and the config overrides."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn
from train_fixtures import tiny_overrides

from mdrbench.config import RunConfig, TrainConfig, apply_overrides, convert, parse_sets
from mdrbench.data import load_dataset
from mdrbench.errors import UserError
from mdrbench.frameworks import (
    EpochStats,
    Framework,
    Optimizer,
    Stage,
    embedding_param_names,
    set_sparse_embeddings,
    sparse_param_names,
    specific_param_names,
)
from mdrbench.models import build_model
from mdrbench.trainer import resolve_config, train

# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "model,method", [("mlp", "alternate"), ("star", "joint"), ("mmoe", "finetune")]
)
def test_same_seed_same_metrics(amazon_path, model, method):
    """Same seed, same dataset: identical metrics (exactly, as JSON), data loaded afresh."""
    runs = [
        train(amazon_path, model, method, seed=3, overrides=tiny_overrides(model, epochs=2))
        for _ in range(2)
    ]
    a, b = (json.dumps(r.record["metrics"], sort_keys=True) for r in runs)
    assert a == b
    assert runs[0].record["best_epoch"] == runs[1].record["best_epoch"]
    other = train(amazon_path, model, method, seed=4, overrides=tiny_overrides(model, epochs=2))
    assert json.dumps(other.record["metrics"], sort_keys=True) != a


# ----------------------------------------------------------------------------- sparse updates


def _mlp_pair(info):
    nets = []
    for sparse in (True, False):
        torch.manual_seed(0)
        net = build_model("mlp", info, emb_dim=8, hidden=[16], dropout=0.0)
        set_sparse_embeddings(net, sparse)
        nets.append(net)
    return nets


def _step(net, batch, opt):
    opt.zero_grad()
    loss = nn.functional.binary_cross_entropy_with_logits(net(batch), batch["label"])
    loss.backward()
    opt.step()


def test_sparse_and_dense_sgd_agree_and_untouched_rows_stay(amazon):
    sparse, dense = _mlp_pair(amazon.info)
    assert sparse_param_names(sparse) == {
        "inputs.user.weight",
        "inputs.item.weight",
        "inputs.domain.weight",
    }
    assert sparse_param_names(dense) == set()
    before = {n: p.detach().clone() for n, p in sparse.named_parameters()}
    batch = amazon.train.take(torch.arange(0, 40))
    for net in (sparse, dense):
        opt = Optimizer(dict(net.named_parameters()), sparse_param_names(net), name="sgd", lr=0.5)
        _step(net, batch, opt)
    assert sparse.inputs.user.weight.grad.is_sparse
    assert not dense.inputs.user.weight.grad.is_sparse
    ps, pd = dict(sparse.named_parameters()), dict(dense.named_parameters())
    for n in ps:
        torch.testing.assert_close(ps[n], pd[n], rtol=0, atol=1e-7)
    touched = torch.zeros(amazon.info.n_users, dtype=torch.bool)
    touched[batch["user_id"]] = True
    w = ps["inputs.user.weight"].detach()
    assert torch.equal(w[~touched], before["inputs.user.weight"][~touched])
    assert not torch.equal(w[touched], before["inputs.user.weight"][touched])


def test_sparse_adam_leaves_untouched_rows_over_many_steps(amazon):
    """SparseAdam moves only the rows of each batch; dense Adam keeps moving rows that got
    gradients earlier (momentum), so after a step on other rows they differ."""
    sparse, dense = _mlp_pair(amazon.info)
    first = amazon.train.take(torch.arange(0, 40))
    second = amazon.train.take(torch.arange(40, 80))
    only_first = torch.zeros(amazon.info.n_users, dtype=torch.bool)
    only_first[first["user_id"]] = True
    only_first[second["user_id"]] = False
    assert only_first.any()
    moved = {}
    for name, net in (("sparse", sparse), ("dense", dense)):
        opt = Optimizer(dict(net.named_parameters()), sparse_param_names(net))
        _step(net, first, opt)
        after_first = net.inputs.user.weight.detach().clone()
        _step(net, second, opt)
        moved[name] = not torch.equal(
            net.inputs.user.weight.detach()[only_first], after_first[only_first]
        )
    assert moved == {"sparse": False, "dense": True}


def test_dense_switch_trains(amazon_path):
    res = train(
        amazon_path, "mlp", "alternate", overrides=tiny_overrides("mlp", sparse_embeddings=False)
    )
    assert res.record["config"]["train"]["sparse_embeddings"] is False
    assert sparse_param_names(res.framework.model) == set()


# ----------------------------------------------------------------------------- data


def test_batches_cover_each_row_once_and_domains_stay_apart(amazon):
    split = amazon.train
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([b["user_id"] * 1000 + b["item_id"] for b in split.batches(64, None, g)])
    assert len(seen) == len(split)
    assert sorted(seen.tolist()) == sorted((split.user_id * 1000 + split.item_id).tolist())
    for d in range(split.n_domains):
        rows = 0
        for b in split.batches(32, d, g):
            assert set(b["domain_id"].tolist()) == {d}
            rows += len(b["label"])
        assert rows == split.n_rows(d)
    a = [b["user_id"] for b in split.batches(64, None, torch.Generator().manual_seed(5))]
    b_ = [b["user_id"] for b in split.batches(64, None, torch.Generator().manual_seed(5))]
    assert all(torch.equal(x, y) for x, y in zip(a, b_))


def test_load_taobao_features(taobao_path):
    data = load_dataset(taobao_path)
    assert data.info.feature_dim == 128 and data.info.kind == "taobao"
    table = pq.read_table(taobao_path / "user_features.parquet")
    feats = np.stack(table.column("features").to_pylist()).astype(np.float32)
    batch = data.train.take(torch.arange(0, 10))
    np.testing.assert_array_equal(batch["user_features"].numpy(), feats[batch["user_id"].numpy()])
    manifest = json.loads((taobao_path / "manifest.json").read_text())
    assert data.info.domain_names == tuple(d["name"] for d in manifest["domains"])
    assert data.train.offsets[-1] == manifest["totals"]["n_train"]


def test_missing_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no built dataset"):
        load_dataset(tmp_path / "nope")


def test_single_class_domain_is_reported_not_crashed(amazon_path):
    data = load_dataset(amazon_path)
    rows = data.val.rows(2)
    data.val.label[rows] = 0.0
    res = train(data, "mlp", "finetune", overrides=tiny_overrides("mlp", epochs=1))
    val = res.record["metrics"]["val"]
    assert val["domains"]["Domain C"]["auc"] is None
    assert val["undefined_auc"] == ["Domain C"]
    assert res.record["metrics"]["test"]["domains"]["Domain C"]["auc"] is not None


# ----------------------------------------------------------------------------- frameworks


class _Scripted(Framework):
    """Trains nothing; predicts perfectly at epoch 2 only: best epoch 2, stop after 5."""

    def train_epoch(self, epoch, domains):
        self.epoch = epoch
        return EpochStats(loss=0.0, samples=1)

    def predict(self, split, batch_size=None):
        y = split.label.numpy().astype(np.float64)
        if getattr(self, "epoch", 0) == 2:
            return 0.25 + 0.5 * y
        return np.random.default_rng(self.epoch).random(len(split))

    def state_dict(self):
        return {"epoch": self.epoch}

    def load_state_dict(self, state):
        self.epoch = state["epoch"]


def test_early_stopping_keeps_best_state(amazon):
    res = train(amazon, "mlp", _Scripted, overrides=tiny_overrides("mlp", epochs=20))
    assert res.record["best_epoch"] == 2
    assert len(res.history) == 5  # patience 3 after the best
    assert res.record["metrics"]["test"]["auc_mean"] == 1.0
    assert res.record["method"] == "_Scripted"


class _Failing(_Scripted):
    """As _Scripted, but training fails at epoch 4 (after the best state was kept)."""

    def train_epoch(self, epoch, domains):
        if epoch == 4:
            raise RuntimeError("boom")
        return super().train_epoch(epoch, domains)


def test_best_state_is_kept_on_disk_and_removed(amazon, tmp_path, monkeypatch):
    """The best state goes to a temporary folder (as the authors' ModelCheckpoint), not a
    copy in memory; the folder is gone after the run and after a failed run."""
    import gc
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    saved = []
    real = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: (saved.append(obj), real(obj, f)))
    res = train(amazon, "mlp", _Scripted, overrides=tiny_overrides("mlp", epochs=20))
    assert res.record["best_epoch"] == 2 and res.record["metrics"]["test"]["auc_mean"] == 1.0
    assert saved == [1, 2]  # each entry of the state {"epoch": n} in its own file
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="boom"):
        train(amazon, "mlp", _Failing, overrides=tiny_overrides("mlp", epochs=20))
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_a_kept_state_is_read_back_one_part_at_a_time(tmp_path, monkeypatch):
    """Each entry of a state, and each element of a list entry (MAMDR's theta_d per
    domain), is its own file, read only when a framework asks for that element: putting a
    state back holds one part's copy at a time, never all of them."""
    import tempfile

    from mdrbench.trainer import _BestStates

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kept = _BestStates()
    state = {
        "model": {"w": torch.arange(4.0)},
        "offsets": [{"t": torch.full((3,), d)} for d in range(3)],
    }
    kept.save("stage", state)
    assert len(list(kept.dir.iterdir())) == 4
    reads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda f, **kw: reads.append(str(f)) or real(f, **kw))
    back = kept.load("stage")
    assert len(reads) == 1 and torch.equal(back["model"]["w"], state["model"]["w"])
    assert len(back["offsets"]) == 3 and len(reads) == 1  # nothing read yet
    for d, off in enumerate(back["offsets"]):
        assert len(reads) == 2 + d and torch.equal(off["t"], state["offsets"][d]["t"])
    kept.save("stage", {"model": {"w": torch.zeros(1)}})  # a new best replaces the old files
    assert len(list(kept.dir.iterdir())) == 1 and kept.has("stage")
    kept.drop("stage")
    assert not kept.has("stage") and list(kept.dir.iterdir()) == []
    kept.close()
    assert list(tmp_path.iterdir()) == []


class UserModel(nn.Module):
    """A model a user writes: any module with forward(batch) -> logits."""

    def __init__(self, n_users, n_items):
        super().__init__()
        self.u = nn.Embedding(n_users, 4)
        self.i = nn.Embedding(n_items, 4)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return (self.u(batch["user_id"]) * self.i(batch["item_id"])).sum(1) + self.bias


@pytest.mark.parametrize("method", ["joint", "alternate", "finetune", "separate"])
def test_frameworks_take_a_user_model_unchanged(amazon, method):
    torch.manual_seed(0)
    net = UserModel(amazon.info.n_users, amazon.info.n_items)
    keys = list(net.state_dict())
    res = train(
        amazon,
        net,
        method,
        overrides={"batch_size": 64, "epochs": 1, "threads": 1, "device": "cpu"},
    )
    assert type(res.framework.model) is UserModel and list(net.state_dict()) == keys
    assert res.record["model"] == "UserModel" and res.record["config"]["model"] == {}
    assert net.u.sparse  # the trainer's sparse switch reaches a user's tables too


def test_separate_never_edits_the_model(amazon):
    torch.manual_seed(0)
    net = UserModel(amazon.info.n_users, amazon.info.n_items)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    res = train(
        amazon,
        net,
        "separate",
        overrides={"batch_size": 64, "epochs": 2, "threads": 1, "device": "cpu"},
    )
    for n, p in net.named_parameters():
        assert torch.equal(p, before[n])
    fw = res.framework
    p0, p1 = fw.params_for_domain(0), fw.params_for_domain(1)
    assert not torch.equal(p0["u.weight"], p1["u.weight"])
    assert res.record["n_parameters"] == 3 * sum(t.numel() for t in before.values())


def test_finetune_stage_as_published(amazon):
    """The finetune baseline (alternate, then the finetune stage): every weight of each
    domain its own (tables as the rows the domain changed), the pre-finetune state not a
    candidate, before/after metrics in the record."""
    res = train(amazon, "mlp", "finetune", overrides=tiny_overrides("mlp", epochs=2))
    fw = res.framework
    assert [s["name"] for s in res.record["stages"]] == ["train", "finetune"]
    assert [h["stage"] for h in res.history] == ["train"] * 2 + ["finetune"] * 2
    emb = embedding_param_names(fw.model)
    runner = res.framework.stage_runner(fw.stages()[-1])  # a fresh one: starts at theta_S
    assert set(runner.offsets.table_names) == emb and runner.offsets.dense_names
    before, after = (s["metrics"]["test"] for s in res.record["stages"])
    assert res.record["metrics"]["test"] == after and before != after


def test_specific_param_rules(amazon):
    net = build_model("mmoe", amazon.info, emb_dim=8)
    emb = embedding_param_names(net)
    dense = specific_param_names(net, "dense")
    assert emb and not set(dense) & emb
    assert set(dense) | emb == {n for n, _ in net.named_parameters()}
    assert specific_param_names(net, "re:^towers\\.") == [
        n for n in dense if n.startswith("towers.")
    ]
    assert specific_param_names(net, "none") == []
    with pytest.raises(UserError, match="specific_params"):
        specific_param_names(net, "dens")


def test_stage_is_a_small_value():
    assert Stage("x").select == "mean" and Stage("y", select="domain").max_epochs is None


# ----------------------------------------------------------------------------- config


def test_overrides_convert_by_declared_type():
    run = resolve_config(
        "mlp",
        "finetune",
        parse_sets(
            [
                "lr=0.01",
                "hidden=[32,16]",
                "sparse_embeddings=false",
                "finetune_epochs=4",
                "framework.specific_params=all",
                "emb_dim=16",
            ]
        ),
    )
    assert run.train.lr == 0.01 and run.train.sparse_embeddings is False
    assert run.model.hidden == [32, 16] and run.model.emb_dim == 16
    assert run.framework.finetune_epochs == 4 and run.framework.specific_params == "all"
    assert convert("64,32", list[int]) == [64, 32]
    assert set(run.to_dict()) == {"train", "model", "framework", "profile"}


@pytest.mark.parametrize(
    "sets,message",
    [
        (["lrr=0.1"], "unknown hyperparameter 'lrr'; did you mean 'lr'"),
        (["lr=fast"], "expected float, got 'fast'"),
        (["epochs=2.5"], "expected int"),
        (["hidden=[64,x]"], "expected list\\[int\\]"),
        (["sparse_embeddings=maybe"], "expected bool"),
        (["n_experts=4"], "hyperparameter of model 'mmoe'"),
        (["batch_size=0"], "batch_size must be >= 1"),
        (["nosuch.lr=1"], "unknown section"),
    ],
)
def test_override_errors(sets, message):
    with pytest.raises(UserError, match=message):
        resolve_config("mlp", "alternate", parse_sets(sets))


def test_bad_set_syntax_and_unknown_framework():
    with pytest.raises(UserError, match="NAME=VALUE"):
        parse_sets(["lr"])
    with pytest.raises(UserError, match="did you mean 'finetune'"):
        resolve_config("mlp", "finetun")


def test_valid_names_listed():
    with pytest.raises(UserError) as err:
        apply_overrides(RunConfig(train=TrainConfig()), {"zzz": 1})
    assert "Valid names:" in str(err.value) and "batch_size" in str(err.value)


def test_data_to_same_device_is_itself_and_moves_otherwise(amazon):
    assert amazon.to("cpu") is amazon
    moved = amazon.to(torch.device("meta"))
    assert moved.train.user_id.device.type == "meta" and amazon.device.type == "cpu"
    assert moved.train.offsets == amazon.train.offsets


# ----------------------------------------------------------------------------- paper values


def test_dataset_gives_the_papers_k_unless_the_user_sets_it():
    """DR sample number k: 3 for amazon-6, 19 for taobao-20 (config/Taobao_20/
    deepctr_DN+DR.json; the paper's text says 5), 5 for the others; --set wins;
    profile none: mdrbench's default."""
    assert resolve_config("mlp", "mamdr", {}, dataset="amazon-6").framework.k == 3
    assert resolve_config("mlp", "dr", {}, dataset="amazon-6").framework.k == 3
    for name in ("amazon-13", "taobao-10", "taobao-30"):
        assert resolve_config("mlp", "mamdr", {}, dataset=name).framework.k == 5
    assert resolve_config("mlp", "mamdr", {}, dataset="taobao-20").framework.k == 19
    assert resolve_config("mlp", "mamdr", {}, dataset="amazon-6", profile="none").framework.k == 5
    assert resolve_config("mlp", "mamdr", {"k": 4}, dataset="amazon-6").framework.k == 4
    assert resolve_config("mlp", "mamdr", {"framework.k": 2}, dataset="amazon-6").framework.k == 2
    assert resolve_config("mlp", "mamdr", {}, dataset="my-own-data").framework.k == 5
    alt = resolve_config("mlp", "alternate", {}, dataset="amazon-6")  # no k: untouched
    assert not hasattr(alt.framework, "k")


def test_train_records_the_datasets_k(amazon):
    import dataclasses

    renamed = dataclasses.replace(amazon, info=dataclasses.replace(amazon.info, name="amazon-6"))
    res = train(renamed, "mlp", "mamdr", overrides=tiny_overrides("mlp"))
    assert res.record["config"]["framework"]["k"] == 3
    res = train(renamed, "mlp", "mamdr", overrides=tiny_overrides("mlp", k=1))
    assert res.record["config"]["framework"]["k"] == 1
