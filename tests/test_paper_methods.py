"""Issue 11: the methods as the authors ran them. The paper profile against a table
transcribed by hand from the authors' config/ files, the finetune stage (SGD by hand, at
least one epoch, the pre-finetune state not a candidate, before/after metrics), epoch caps
that say so, and `mdrbench eval --config` reruns bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_frameworks import DOMAINS, hand_data, make, sgd_pass, theta
from train_fixtures import tiny_overrides, write_dataset

from mdrbench.cli import cli, main
from mdrbench.errors import UserError
from mdrbench.frameworks import LossMeter
from mdrbench.trainer import resolve_config, train

# ----------------------------------------------------------------------------- the profile

# Transcribed from github RManLuo/MAMDR config/<dir>/<file>.json ("train.learning_rate",
# "model.hidden_dim", "model.tower_hidden_dim", "model.num_experts" /
# "specific_expert_num", "shared_expert_num"): dataset, model -> lr, hidden, tower, experts.
AUTHORS_MODELS = {
    ("amazon-6", "mmoe"): (1e-4, [256, 128], [64], 5),  # Amazon_6/mmoe.json
    ("amazon-13", "mmoe"): (1e-4, [256, 128], [64], 5),  # Amazon_13/mmoe.json
    ("amazon-6", "ple"): (1e-4, [512, 256], [64], (2, 5)),  # Amazon_6/ple.json
    ("amazon-13", "ple"): (1e-4, [512, 256], [64], (2, 5)),
    ("amazon-6", "shared_bottom"): (1e-3, [256, 128], [64], None),  # Amazon_6/shared_bottom
    ("amazon-13", "shared_bottom"): (1e-3, [256, 128], [64], None),
    ("taobao-10", "mmoe"): (1e-4, [512, 256, 128], [64], 2),  # Taobao-10/mmoe.json
    ("taobao-10", "ple"): (1e-4, [256], [64], (2, 10)),  # Taobao-10/ple.json
    ("taobao-10", "shared_bottom"): (1e-4, [512, 256, 128], [64], None),
    ("taobao-20", "mmoe"): (1e-4, [512, 256], [128], 2),  # Taobao_20/mmoe.json
    ("taobao-20", "ple"): (1e-4, [256], [64], (2, 15)),  # Taobao_20/ple.json
    ("taobao-20", "shared_bottom"): (1e-4, [512, 256], [128], None),
    ("taobao-30", "mmoe"): (1e-4, [512, 256], [128], 2),  # Taobao_30/mmoe.json
    ("taobao-30", "ple"): (1e-4, [512, 256], [64], (2, 3)),  # Taobao_30/ple.json
    ("taobao-30", "shared_bottom"): (1e-4, [512, 256], [128], None),
}
ALL = ("amazon-6", "amazon-13", "taobao-10", "taobao-20", "taobao-30")
# deepctr_DN+DR.json "sample_num" per dataset directory
AUTHORS_K = {"amazon-6": 3, "amazon-13": 5, "taobao-10": 5, "taobao-20": 19, "taobao-30": 5}


@pytest.mark.parametrize("key", sorted(AUTHORS_MODELS))
def test_profile_models_equal_the_authors_configs(key):
    dataset, model = key
    lr, hidden, tower, experts = AUTHORS_MODELS[key]
    run = resolve_config(model, "alternate", dataset=dataset)
    m = run.model
    assert run.train.lr == lr and m.tower_hidden == tower and m.dropout == 0.5
    if model == "shared_bottom":
        assert m.shared_hidden == hidden
    else:
        assert m.expert_hidden == hidden and m.gate_hidden == [64]
    if model == "mmoe":
        assert m.n_experts == experts
    if model == "ple":
        assert (m.n_shared_experts, m.n_specific_experts) == experts
    assert run.profile["name"] == "paper" and run.profile["applied"]["train.lr"] == lr


@pytest.mark.parametrize("dataset", ALL)
def test_profile_methods_equal_the_authors_configs(dataset):
    for model in ("mlp", "star"):  # deepctr*.json / star*.json: lr 1e-3, [256, 128, 64]
        run = resolve_config(model, "alternate", dataset=dataset)
        assert run.train.lr == 1e-3 and run.model.hidden == [256, 128, 64]
        assert run.framework.shuffle_domains is True  # random.shuffle(train_sequence)
    star = resolve_config("star", "alternate", dataset=dataset).model
    assert (star.dropout, star.aux_net) == (0.0, False)  # no dropout key, auxiliary_net false
    mamdr = resolve_config("mlp", "mamdr", dataset=dataset).framework
    # deepctr_DN+DR.json: sample_num, meta_learning_rate 0.1 (DN and DR), learning_rate
    # 0.001, meta_parms ["all"], add_query_domain true, name ..._finetune
    assert mamdr.k == AUTHORS_K[dataset]
    assert (mamdr.alpha, mamdr.beta, mamdr.gamma) == (1e-3, 0.1, 0.1)
    assert (mamdr.specific_params, mamdr.add_target, mamdr.theta_d_init) == ("all", True, "random")
    assert (mamdr.finetune, mamdr.finetune_lr, mamdr.finetune_optimizer) == (True, 1e-3, "sgd")
    dn = resolve_config("mlp", "dn", dataset=dataset).framework  # deepctr_DN*.json
    assert (dn.alpha, dn.beta, dn.finetune) == (1e-3, 0.1, True)
    # Taobao-10's files (the only ones for these methods)
    maml = resolve_config("mlp", "maml", dataset=dataset).framework
    assert (maml.alpha, maml.beta, maml.support_fraction, maml.finetune) == (1e-3, 1e-3, 0.2, True)
    reptile = resolve_config("mlp", "reptile", dataset=dataset).framework
    assert (reptile.beta, reptile.finetune) == (0.1, True)
    mldg = resolve_config("mlp", "mldg", dataset=dataset)
    assert (mldg.train.lr, mldg.framework.alpha, mldg.framework.beta) == (1e-4, 1e-4, 1e-4)
    assert not hasattr(mldg.framework, "finetune")  # mlp_meta_mldg: no _finetune
    assert (mldg.framework.variant, mldg.framework.meta_train_fraction) == ("authors", 0.8)
    pcgrad = resolve_config("mlp", "pcgrad", dataset=dataset)  # deepctr_pcgrad_taobao_10.json
    assert (pcgrad.train.lr, pcgrad.framework.variant, pcgrad.framework.sample_num) == (
        1e-3,
        "authors",
        5,
    )


def test_profile_none_and_set_and_other_datasets():
    assert resolve_config("mmoe", "alternate", dataset="taobao-20", profile="none").train.lr == 1e-3
    assert resolve_config("mmoe", "alternate", {"lr": 0.01}, dataset="taobao-20").train.lr == 0.01
    own = resolve_config("mmoe", "alternate", dataset="my-data")
    assert own.train.lr == 1e-3 and own.profile["applied"] == {}
    with pytest.raises(UserError, match="--profile"):
        resolve_config("mlp", "alternate", profile="authors")


def test_profile_record_lists_what_set_replaced_not_a_value_out_of_force():
    """--set over a profile value: the record's `applied` no longer claims the profile's value
    (the run uses the --set one); the key is listed under `overridden`. threads < 0 refused."""
    run = resolve_config("mlp", "alternate", {"batch_size": "64"}, dataset="taobao-10")
    assert run.train.batch_size == 64
    assert "train.batch_size" not in run.profile["applied"]
    assert run.profile["overridden"] == ["train.batch_size"]
    plain = resolve_config("mlp", "alternate", dataset="taobao-10")
    assert plain.profile["applied"]["train.batch_size"] == 1024
    assert "overridden" not in plain.profile
    with pytest.raises(UserError, match="threads must be >= 0"):
        resolve_config("mlp", "alternate", {"threads": "-1"})


def test_every_profile_value_is_a_field_of_its_run():
    """Each entry's names exist for its model/method (resolve_config raises otherwise)."""
    from mdrbench.baselines.paper import load_configs
    from mdrbench.frameworks import FRAMEWORKS
    from mdrbench.models import MODELS

    for e in load_configs()["entries"]:
        models = [e["model"]] if isinstance(e["model"], str) else (e["model"] or ["mlp"])
        methods = [e["method"]] if e["method"] else list(FRAMEWORKS)
        for ds in e["datasets"]:
            for model in models:
                assert model in MODELS
                for method in methods:
                    run = resolve_config(model, method, dataset=ds)
                    for key in e["set"]:
                        assert key in run.profile["applied"]


# ----------------------------------------------------------------------------- finetune stage


def test_finetune_stage_is_sgd_on_every_weight_per_domain_by_hand():
    """One finetune epoch (batch = the whole domain): each domain's weights are theta minus
    finetune_lr times the gradient of its own rows; the model keeps theta."""
    data = hand_data()
    fw = make("dn", data, finetune_lr=0.3)
    th = theta(fw.model)
    stage = fw.stages()[1]
    assert stage.name == "finetune"
    fw.begin_stage(stage)
    runner = fw.stage_runner(stage)
    runner.train_epoch(1, range(4))
    for d in range(4):
        p = runner.params_for_domain(d)
        got = np.concatenate([p["lin.weight"].detach().numpy().ravel(),
                              p["lin.bias"].detach().numpy()])  # fmt: skip
        np.testing.assert_allclose(got, sgd_pass(th, DOMAINS[d], 0.3), atol=1e-6)
    np.testing.assert_allclose(theta(fw.model), th, atol=0)


def test_mamdr_finetune_starts_from_theta_s_plus_theta_d():
    data = hand_data()
    fw = make("mamdr", data, k=1)
    fw.train_epoch(1, range(4))
    before = {d: fw.params_for_domain(d) for d in range(4)}
    stage = fw.stages()[1]
    fw.begin_stage(stage)
    runner = fw.stage_runner(stage)
    for d in range(4):
        for n, t in runner.params_for_domain(d).items():
            torch.testing.assert_close(t, before[d][n])


def test_finetune_state_before_the_stage_is_not_a_candidate(amazon):
    """A destructive finetune (lr 30) is still what the domains keep: the authors'
    checkpoint is written after an epoch, never before the first; keep_start=true keeps
    the start when it is better."""
    over = tiny_overrides("mlp", epochs=2, finetune_lr=30.0, finetune_epochs=1)
    res = train(amazon, "mlp", "dn", overrides=over)
    before, after = (s["metrics"] for s in res.record["stages"])
    assert res.record["stages"][1]["epochs"] == 1  # at least (here: at most) one epoch
    assert before["val"]["domains"] != after["val"]["domains"]
    kept = train(amazon, "mlp", "dn", overrides={**over, "finetune_keep_start": True})
    b, a = (s["metrics"]["val"]["domains"] for s in kept.record["stages"])
    for name in b:
        assert a[name]["auc"] >= b[name]["auc"]


def test_finetune_false_is_the_first_stage_of_the_same_run(amazon):
    """docs/results.md reads a method "without the finetune stage" from the first stage of
    the runs with it: the same numbers as a run with finetune=false."""
    over = tiny_overrides("mlp", epochs=2, k=1)
    with_ft = train(amazon, "mlp", "mamdr", overrides=over)
    without = train(amazon, "mlp", "mamdr", overrides={**over, "finetune": False})
    assert with_ft.record["stages"][0]["metrics"] == without.record["metrics"]
    assert [s["name"] for s in without.record["stages"]] == ["train"]


def test_a_capped_stage_says_so(amazon):
    res = train(amazon, "mlp", "alternate", overrides=tiny_overrides("mlp", epochs=1))
    st = res.record["stages"]
    assert [s["stopped_by"] for s in st] == ["cap"] and res.record["stopped_at_cap"] == ["train"]
    res = train(amazon, "mlp", "alternate", overrides=tiny_overrides("mlp", epochs=0, patience=1))
    assert res.record["stages"][0]["stopped_by"] == "early_stop"
    assert res.record["stopped_at_cap"] == []
    env = res.record["environment"]
    assert env["device"] == "cpu" and env["threads"] == 1 and env["torch_version"]


def test_dr_uses_the_same_inner_optimizer_as_dn():
    """The authors compile one Keras optimizer: DR's passes step the DN inner Adam."""
    fw = make("mamdr", hand_data(), k=1)
    fw.regularize(0, [1, 0], LossMeter())
    assert fw.inner.optimizers[0].state  # Adam moments came from DR's steps


# ----------------------------------------------------------------------------- --config


def test_eval_config_reruns_a_result_bit_for_bit(tmp_path):
    data = write_dataset(tmp_path / "d", "taobao")
    sets = ["--set", "emb_dim=8", "--set", "hidden=[16]", "--set", "batch_size=64",
            "--set", "threads=1", "--set", "device=cpu"]  # fmt: skip
    args = ["eval", "--dataset", str(data), "--method", "mamdr", "--epochs", "2", "--seeds",
            "3", "--set", "k=1", "--no-predictions", "-q", *sets]  # fmt: skip
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    (first,) = (tmp_path / "a").glob("*.json")
    rec = json.loads(first.read_text())
    again = ["eval", "--config", str(first), "--dataset", str(data), "--out",
             str(tmp_path / "b"), "--no-predictions", "-q"]  # fmt: skip
    r = CliRunner().invoke(cli, again, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rec2 = json.loads((tmp_path / "b" / first.name).read_text())
    assert rec2["metrics"] == rec["metrics"] and rec2["config"] == rec["config"]
    assert rec2["seed"] == 3 and rec2["stages"] == rec["stages"]
    # a leaderboard configs/<id>.json: its runs, each with its seed and config
    doc = {"dataset": rec["dataset"], "model": rec["model"], "method": rec["method"],
           "seeds": [3], "config": {}, "runs": [{"seed": 3, "config": rec["config"]}]}  # fmt: skip
    lb = tmp_path / "lb.json"
    lb.write_text(json.dumps(doc))
    cmd = ["eval", "--config", str(lb), "--dataset", str(data), "--out", str(tmp_path / "c"),
           "--no-predictions", "-q"]  # fmt: skip
    r = CliRunner().invoke(cli, cmd, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "c" / first.name).read_text())["metrics"] == rec["metrics"]


def _main_error(capsys, args) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "Traceback" not in err
    return err


def test_eval_config_errors(tmp_path, capsys):
    data = write_dataset(tmp_path / "d", "taobao")
    bad = tmp_path / "bad.json"
    for text, msg in [("{", "not a JSON file"), ("[]", "expected a result JSON"),
                      (json.dumps({"dataset": {"name": "x"}, "model": "mlp", "method": "dn",
                                   "seed": 0, "config": {"train": {"nope": 1}}}),
                       "'train.nope' is not a hyperparameter")]:  # fmt: skip
        bad.write_text(text)
        assert msg in _main_error(capsys, ["eval", "--config", str(bad), "--dataset", str(data)])
    other = json.dumps({"dataset": {"name": "t", "manifest_sha256": "0" * 64}, "model": "mlp",
                        "method": "alternate", "seed": 0, "config": {}})  # fmt: skip
    bad.write_text(other)
    err = _main_error(capsys, ["eval", "--config", str(bad), "--dataset", str(data)])
    assert "another build" in err
