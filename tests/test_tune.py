"""`mdrbench tune`: search spaces, the draw, selection on validation only, tuned results and
their tracks in tables and on the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from publish_fixtures import make_dataset
from train_fixtures import write_dataset

import mdrbench.validate as V
from mdrbench import tune
from mdrbench.cli import cli, main
from mdrbench.track import best_trial, check_track, config_values, profile_track
from mdrbench.trial import is_trial

TINY = ["--set", "emb_dim=8", "--set", "hidden=[16]", "--set", "batch_size=64",
        "--set", "threads=1", "--set", "device=cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), "taobao")


def _tune(*args):
    return CliRunner().invoke(cli, ["tune", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tuned(dataset, tmp_path_factory):
    """The issue's run: budget 4, seeds 0,1,2, 2 epochs."""
    out = tmp_path_factory.mktemp("tuned")
    res = _tune("--dataset", str(dataset), "--model", "mlp", "--method", "alternate",
                "--budget", "4", "--seeds", "0,1,2", "--epochs", "2", *TINY, "--jobs", "2",
                "--out", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    return out, res


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def test_tune_writes_three_tuned_results_of_the_best_trial(tuned):
    out, res = tuned
    recs = _records(out)
    assert [r["seed"] for r in recs] == [0, 1, 2]
    for r in recs:
        assert r["track"] == "tuned" and check_track(r) == []
        t = r["tuning"]
        assert (t["budget"], t["search"], t["seed"], t["select_seeds"]) == (4, "random", 0, [0])
        assert set(t["space"]) == {"train.lr", "model.dropout"}  # mlp + alternate
        assert len(t["trials"]) == 4 and all(set(x) == {"config", "val_auc"} for x in t["trials"])
        assert len({json.dumps(x["config"], sort_keys=True) for x in t["trials"]}) == 4
        aucs = [x["val_auc"] for x in t["trials"]]
        assert t["selected"] == aucs.index(max(aucs)) == best_trial(t["trials"])
        flat = config_values(r["config"])
        assert all(flat[k] == v for k, v in t["trials"][t["selected"]]["config"].items())
        assert flat["train.epochs"] == 2 and flat["model.emb_dim"] == 8  # --epochs, --set
    assert recs[0]["tuning"] == recs[1]["tuning"] == recs[2]["tuning"]
    # each trial's val_auc is that trial's own validation AUC, as its record holds it
    trials = sorted((out / "trials").rglob("*.json"))
    assert len(trials) == 4
    got = [json.loads(p.read_text())["val_auc"] for p in trials]
    assert got == [x["val_auc"] for x in recs[0]["tuning"]["trials"]]
    assert "(selected)" in res.output and "tuned" in res.output


def _keys(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield f"{prefix}{k}"
            yield from _keys(v, f"{prefix}{k}.")
    elif isinstance(obj, list):
        for v in obj:
            yield from _keys(v, prefix)


def test_no_trial_test_metric_is_computed_printed_or_stored(tuned, dataset, tmp_path, monkeypatch):
    out, res = tuned
    # the records: a trial record has validation numbers only; the tuning record val_auc only
    for p in sorted((out / "trials").rglob("*.json")):
        doc = json.loads(p.read_text())
        assert is_trial(doc) and not any("test" in k for k in _keys(doc)), p
        assert "test auc" not in p.with_suffix(".log").read_text().lower()
    for r in _records(out):
        assert not any("test" in k for k in _keys(r["tuning"]))
    # the output: no test metric but the final results' table
    printed = res.output
    assert "test auc" not in printed.lower()
    # and the trainer never evaluates a trial's test split at all
    import mdrbench.trainer as T
    from mdrbench.trial import run_trial

    asked = []
    original = T._Evaluator.__call__
    monkeypatch.setattr(T._Evaluator, "__call__", lambda self, split: (asked.append(split),
                                                                        original(self, split))[1])
    run_trial(str(dataset), "mlp", "alternate", 0, {"epochs": 1, "emb_dim": 8, "hidden": "[16]",
              "device": "cpu"}, "paper", tmp_path / "t.json")  # fmt: skip
    assert asked and set(asked) == {"val"}


def test_a_rerun_resumes_and_reruns_no_trial(tuned, dataset):
    out, _ = tuned
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    res = _tune("--dataset", str(dataset), "--model", "mlp", "--method", "alternate",
                "--budget", "4", "--seeds", "0,1,2", "--epochs", "2", *TINY, "--jobs", "2",
                "--out", str(out))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "done   " not in res.output  # nothing ran: every trial and final run was done
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == before
    # --dry-run once every trial is done: the selection and the final runs' state
    res = _tune("--dataset", str(dataset), "--model", "mlp", "--method", "alternate",
                "--budget", "4", "--seeds", "0,1,2", "--epochs", "2", *TINY, "--out",
                str(out), "--dry-run")  # fmt: skip
    assert res.exit_code == 0, res.output
    sel = json.loads(next(out.glob("*seed0.json")).read_text())["tuning"]["selected"]
    assert f"selected: trial {sel}" in res.output
    assert "final runs: seed 0 done, seed 1 done, seed 2 done" in res.output
    # a larger budget keeps the 4 finished trials (the draw's first 4) and adds 2
    res = _tune("--dataset", str(dataset), "--model", "mlp", "--method", "alternate",
                "--budget", "6", "--seeds", "0,1,2", "--epochs", "2", *TINY, "--out",
                str(out), "--dry-run")  # fmt: skip
    assert res.exit_code == 0, res.output
    states = [line.rsplit("|", 2)[-2].strip() for line in res.output.splitlines()
              if line.startswith("| ") and not line.startswith("| trial")]  # fmt: skip
    assert states == ["done"] * 4 + ["todo"] * 2


def test_draw_is_a_grid_when_it_fits_else_a_seeded_random_draw_without_repeats():
    sp = tune.Space({"a": [1, 2, 3], "b": ["x", "y"]}, [])
    search, pts = tune.draw(sp, 6, None, 0)
    assert search == "grid" and len(pts) == 6 and pts[0] == {"a": 1, "b": "x"}
    search, pts = tune.draw(sp, 4, None, 0)
    assert search == "random" and len(pts) == 4
    assert len({json.dumps(p) for p in pts}) == 4  # no repeats
    assert tune.draw(sp, 4, None, 0) == (search, pts)  # deterministic for a seed
    assert tune.draw(sp, 4, None, 1) != (search, pts)
    assert tune.draw(sp, 5, None, 0)[1][:4] == pts  # a larger budget extends the draw
    assert tune.draw(sp, 10, "random", 0)[1] != tune.draw(sp, 10, None, 0)[1]
    assert len(tune.draw(sp, 10, "random", 0)[1]) == 6
    with pytest.raises(Exception, match="more than --budget 4"):
        tune.draw(sp, 4, "grid", 0)


def test_shipped_spaces_cover_every_model_and_method_with_a_source():
    from mdrbench.frameworks import FRAMEWORKS
    from mdrbench.models import MODELS

    spaces = tune.load_spaces()
    assert set(spaces["models"]) == set(MODELS.names())
    assert set(spaces["methods"]) == set(FRAMEWORKS.names())
    for group in ("models", "methods"):
        for entry in spaces[group].values():
            assert entry["source"] and "\n" not in entry["source"]
    # MAMDR, DN and DR cover what decides whether they train at all on small data
    assert {"framework.beta", "framework.gamma", "framework.theta_d_init", "framework.k",
            "framework.alpha"} <= set(tune.run_space(spaces, "mlp", "mamdr").values)  # fmt: skip
    assert {"framework.gamma", "framework.theta_d_init"} <= set(
        tune.run_space(spaces, "mlp", "dr").values
    )
    assert "framework.beta" in tune.run_space(spaces, "mlp", "dn").values
    # a key the method never reads is not tuned; a key fixed with --set leaves the space
    assert "train.lr" not in tune.run_space(spaces, "mlp", "mamdr").values
    assert "model.dropout" not in tune.run_space(spaces, "mlp", "alternate", ["dropout"]).values


@pytest.mark.parametrize(
    "space,message",
    [
        ({"methods": {"mamdr": {"values": {"framework.betta": [0.5]}}}},
         "'framework.betta' is not a hyperparameter here"),
        ({"methods": {"mamdr": {"values": {"framework.beta": ["0.5"]}}}},
         'framework.beta: "0.5" is not a float value'),
        ({"methods": {"mamdr": {"values": {"framework.k": [1.5]}}}}, "is not a int value"),
        ({"methods": {"mamdr": {"values": {"beta": [0.5]}}}}, "must be written section.name"),
        ({"models": {"mlpp": {"values": {}}}}, "unknown model 'mlpp'"),
        ({"common": {"values": {"train.seed": [1, 2]}}}, "train.seed is not tuned"),
        ({"methods": {"mamdr": {"valuez": {}}}}, "unknown key(s) valuez"),
        ({"methods": {"alternate": {"values": {"framework.beta": [0.5]}}}},
         "'framework.beta' is not a hyperparameter here"),
        ({"common": {"values": {"train.lr": []}}}, "non-empty list"),
        ({"methods": {"mamdr": {"values": {"framework.theta_d_init": ["zerro"]}}}},
         '"zerro" is not one of'),
        ({"common": {"values": {"model.dropout": [1.5]}}}, "dropout is a probability"),
    ],
)
def test_a_bad_space_file_is_refused_before_any_run(dataset, tmp_path, capsys, space, message):
    f = tmp_path / "space.json"
    f.write_text(json.dumps(space))
    with pytest.raises(SystemExit) as exc:
        main(["tune", "--dataset", str(dataset), "--method", "mamdr", "--space", str(f),
              "--out", str(tmp_path / "o")])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_space_file_extends_or_replaces_an_entry(tmp_path):
    f = tmp_path / "space.json"
    f.write_text(json.dumps({"methods": {"mamdr": {"values": {"framework.beta": [0.5, 2]}}},
                             "common": {"replace": True, "values": {"train.batch_size": [32]}}}))  # fmt: skip
    sp = tune.run_space(tune.load_spaces(f), "mlp", "mamdr")
    assert sp.values["framework.beta"] == [0.5, 2.0]  # converted to the field's type
    assert sp.values["framework.k"] == [1, 3, 5]  # the rest of the shipped entry stays
    assert sp.values["train.batch_size"] == [32] and "model.dropout" not in sp.values
    assert any(str(f) in s for s in sp.sources)


def test_tune_refuses_a_set_grid_and_names_the_space_file(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["tune", "--dataset", str(dataset), "--set", "lr=0.1,0.2", "--out", str(tmp_path)])
    assert "--space FILE" in capsys.readouterr().err


def test_check_track_catches_an_inconsistent_tuning_record(tuned):
    out, _ = tuned
    rec = _records(out)[0]
    t = rec["tuning"]
    other = next(i for i in range(4) if i != t["selected"])
    assert check_track({**rec, "tuning": {**t, "selected": other}})  # not the best
    bad = json.loads(json.dumps(rec))
    bad["config"]["train"]["lr"] = 123.0
    if "train.lr" in t["trials"][t["selected"]]["config"]:
        assert any("config train.lr" in e for e in check_track(bad))
    leak = json.loads(json.dumps(rec))
    leak["tuning"]["trials"][0]["test_auc"] = 0.9
    assert any("exactly config and val_auc" in e for e in check_track(leak))
    assert check_track({**rec, "track": "paper"})  # a tuning record on another track
    assert V.check_schema({**rec, "track": "best"})


def test_track_of_a_config():
    assert profile_track({"name": "paper", "applied": {"train.lr": 0.001}}) == "paper"
    assert profile_track({"name": "paper", "applied": {}}) == "custom"  # nothing applied
    assert profile_track({"name": "paper", "applied": {"x": 1}, "overridden": ["y"]}) == "custom"
    assert profile_track({"name": "none", "applied": {}}) == "custom"


@pytest.fixture(scope="module")
def two_tracks(tmp_path_factory):
    """On a benchmark-named build: mlp + alternate under the paper profile (3 seeds) and
    tuned (budget 2, 3 seeds), into one folder."""
    data = make_dataset(tmp_path_factory.mktemp("bench"), "taobao-10", n_domains=3)
    out = tmp_path_factory.mktemp("both")
    res = CliRunner().invoke(cli, ["eval", "--dataset", str(data), "--seeds", "0,1,2",
                                   "--epochs", "1", "--set", "threads=1", "--set", "device=cpu",
                                   "--out", str(out), "-q"], catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    res = _tune("--dataset", str(data), "--budget", "2", "--epochs", "1", "--set", "threads=1",
                "--set", "device=cpu", "--out", str(out / "tuned"))  # fmt: skip
    assert res.exit_code == 0, res.output
    return data, out


def test_table_shows_the_track_and_ranks_within_it(two_tracks):
    from mdrbench.results import aggregate, load_results, table_v

    data, out = two_tracks
    results = load_results(out)
    assert sorted({r["track"] for r in results}) == ["paper", "tuned"]
    assert len(results) == 6  # trial records are not results
    rows = aggregate(results)
    assert sorted(r["track"] for r in rows) == ["paper", "tuned"]
    t = table_v(rows)
    assert t.columns[:3] == ["Model", "Method", "Track"]
    assert [row[4] for row in t.rows] == [1.0, 1.0]  # each first within its own track
    res = CliRunner().invoke(cli, ["table", str(out)], catch_exceptions=False)
    assert "| paper |" in res.output and "| tuned |" in res.output


def test_leaderboard_shows_one_entry_per_track(two_tracks, tmp_path):
    import polars as pl

    data, out = two_tracks
    site = tmp_path / "site"
    res = CliRunner().invoke(cli, ["leaderboard", "build", str(out), "--dataset", str(data),
                                   "--out", str(site)], catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    csv = pl.read_csv(site / "leaderboard.csv")
    assert csv.height == 2
    assert sorted(csv["track"].to_list()) == ["paper", "tuned"]
    assert set(csv["model"]) == {"mlp"} and set(csv["method"]) == {"alternate"}
    assert csv["rank"].to_list() == [1.0, 1.0]  # ranked within a track, never across
    tuned_row = csv.filter(pl.col("track") == "tuned")
    assert json.loads(tuned_row["tuned_values"][0])  # the selected values
    doc = json.loads((site / "leaderboard.json").read_text())
    tuned_entry = next(e for e in doc["entries"] if e["track"] == "tuned")
    assert len(tuned_entry["tuning"]["trials"]) == 2
    index = (site / "index.html").read_text()
    assert 'data-track="paper"' in index and 'data-track="tuned"' in index
    page = (site / "taobao-10.html").read_text()
    assert f'id="tuned-{tuned_entry["id"]}"' in page and "Validation AUC" in page
    assert page.count('<tr class="selected">') == 1
