"""`mdrbench validate`: every rule, each violation with its own message."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import polars as pl
import pytest
from publish_fixtures import edit_result, make_dataset, make_result, make_results_dir, run_cli

import mdrbench.validate as V
from mdrbench.builders.specs import SPEC_VERSION, spec_major
from mdrbench.errors import UserError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_dataset(root, "amazon-6")


@pytest.fixture
def results(tmp_path, data):
    """Two entries x three seeds, each with its predictions Parquet."""
    return make_results_dir(
        tmp_path / "results", data, [("mlp", "alternate", 1.0), ("mlp", "mamdr", 2.0)]
    )


def builds(*paths):
    return V.KnownBuilds.discover(paths, use_default_data_dir=False)


def messages(report):
    return [str(v) for v in report.violations]


def one_file(results):
    return sorted(results.glob("*.json"))[0]


def test_consistent_results_pass_and_every_prediction_is_recomputed(results, data):
    report = V.validate([results], builds(data))
    assert messages(report) == []
    assert report.n_files == 6 and len(report.results) == 6
    assert report.n_predictions_checked == 6


def test_validator_recomputes_with_the_one_evaluator():
    assert V.evaluate is sys.modules["mdrbench.evaluate"].evaluate


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d: d.pop("metrics"), "missing field 'metrics'"),
        (lambda d: d.update(seed="0"), "field 'seed' must be an integer"),
        (lambda d: d.update(schema_version=2), "schema_version is 2; this mdrbench reads version 1"),
        (lambda d: d["dataset"].update(manifest_sha256="ABC"), "field 'dataset.manifest_sha256' must be 64 lowercase hex"),
        (lambda d: d["metrics"]["test"]["domains"]["Prime Pantry"].update(auc=1.5), "domains['Prime Pantry'].auc' must be a number in [0, 1]"),
        (lambda d: d["config"]["train"].update(seed=7), "seed is 0 but the config's seed is 7"),
    ],
)  # fmt: skip
def test_schema_violations(results, data, edit, expected):
    path = one_file(results)
    edit_result(path, edit)
    report = V.validate([results], builds(data))
    assert any(str(path) in m and expected in m for m in messages(report)), messages(report)


def test_result_on_an_unknown_build_is_rejected(results, data):
    path = one_file(results)
    edit_result(path, lambda d: d["dataset"].update(manifest_sha256="f" * 64))
    msgs = messages(V.validate([results], builds(data)))
    assert any("build ffffffffffff... is not a build this mdrbench knows" in m for m in msgs), msgs


def test_result_on_a_rebuilt_dataset_is_rejected(tmp_path, results, data):
    """Same name, other bytes (a different build): the sha256 no longer matches."""
    other = make_dataset(tmp_path / "other", "amazon-6", seed=1)
    msgs = messages(V.validate([results], builds(other)))
    assert sum("is not a build this mdrbench knows" in m for m in msgs) == 6


@pytest.mark.parametrize("version", ["1.0", "1.3", "0.9"])
def test_build_from_another_major_spec_version_is_rejected_with_the_reason(tmp_path, version):
    old = make_dataset(tmp_path / "d", "amazon-6", spec_version=version)
    res = make_results_dir(tmp_path / "r", old, [("mlp", "alternate", 1.0)])
    msgs = messages(V.validate([res], builds(old)))
    want = (f"was made with spec version {version}, but this mdrbench's spec for 'amazon-6' is "
            f"version {SPEC_VERSION}; results on builds of different major spec versions are "
            "never ranked together: spec 2.0 splits each domain's positives once and each "
            "user's negatives on their own")  # fmt: skip
    assert sum(want in m for m in msgs) == 3, msgs


def test_build_of_the_same_major_spec_version_is_accepted(tmp_path):
    newer = make_dataset(tmp_path / "d", "amazon-6", spec_version=f"{spec_major(SPEC_VERSION)}.9")
    res = make_results_dir(tmp_path / "r", newer, [("mlp", "alternate", 1.0)])
    assert V.validate([res], builds(newer)).ok


def test_leaderboard_refuses_a_1x_result_beside_2x_ones_and_says_why(tmp_path, capsys, data):
    old = make_dataset(tmp_path / "old", "amazon-6", spec_version="1.0", seed=3)
    new = make_results_dir(tmp_path / "r" / "new", data, [("mlp", "alternate", 1.0)])
    make_results_dir(tmp_path / "r" / "old", old, [("mlp", "mamdr", 2.0)])
    site = tmp_path / "site"
    code, _, err = run_cli(capsys, "leaderboard", "build", tmp_path / "r", "--out", site,
                           "--dataset", data, "--dataset", old)  # fmt: skip
    assert code == 2 and not site.exists()
    assert "spec version 1.0" in err and "never ranked together" in err
    assert "Rebuild the dataset" in err and "Traceback" not in err
    assert V.validate([new], builds(data)).ok  # the 2.x results alone pass


def test_dataset_name_must_match_the_build(results, data):
    path = one_file(results)
    edit_result(path, lambda d: d["dataset"].update(name="amazon-13"))
    msgs = messages(V.validate([results], builds(data)))
    assert any(
        "dataset.name is 'amazon-13' but the build with that manifest sha256" in m for m in msgs
    ), msgs


def test_unregistered_dataset_name_gets_the_valid_names(results, data):
    edit_result(one_file(results), lambda d: d["dataset"].update(name="amazon6"))
    msgs = messages(V.validate([results], builds(data)))
    assert any("unknown dataset 'amazon6'; did you mean 'amazon-6'?" in m for m in msgs), msgs


def test_average_must_equal_mean_of_per_domain_aucs(results, data):
    path = one_file(results)
    d = json.loads(path.read_text())
    want = np.mean([v["auc"] for v in d["metrics"]["val"]["domains"].values()])
    edit_result(
        path, lambda d: d["metrics"]["val"].update(auc_mean=d["metrics"]["val"]["auc_mean"] + 0.01)
    )
    msgs = messages(V.validate([results], builds(data)))
    expected = f"metrics.val.auc_mean is {want + 0.01:.6f} but the mean of the 6 defined per-domain AUCs is {want:.6f}"
    assert [m for m in msgs if "auc_mean" in m] == [f"{path}: {expected}"]


def test_weighted_average_is_checked_too(results, data):
    edit_result(one_file(results), lambda d: d["metrics"]["test"].update(auc_weighted=0.5))
    msgs = messages(V.validate([results], builds(data)))
    assert any(
        "metrics.test.auc_weighted is 0.500000 but the sample-weighted mean" in m for m in msgs
    ), msgs


def test_domains_and_split_sizes_must_match_the_build(results, data):
    def rename(d):
        doms = d["metrics"]["test"]["domains"]
        doms["Gift Cards"] = doms.pop("Video Games")
        d["metrics"]["val"]["domains"]["Office Products"]["n"] += 1

    path = one_file(results)
    edit_result(path, rename)
    msgs = messages(V.validate([results], builds(data)))
    assert f"{path}: metrics.test lacks the build's domain(s) 'Video Games'" in msgs
    assert f"{path}: metrics.test has domain(s) 'Gift Cards' that the build does not have" in msgs
    assert any(
        "metrics.val.domains['Office Products'].n is" in m and "split has" in m for m in msgs
    )


def test_predictions_that_disagree_with_reported_aucs_are_rejected(results, data):
    """A per-domain AUC changed consistently with its averages: only the predictions catch it."""
    path = one_file(results)

    def bump(d):
        t = d["metrics"]["test"]
        t["domains"]["Prime Pantry"]["auc"] = 0.999
        aucs = [v["auc"] for v in t["domains"].values()]
        t["auc_mean"] = float(np.mean(aucs))
        t["auc_weighted"] = float(np.average(aucs, weights=[v["n"] for v in t["domains"].values()]))

    edit_result(path, bump)
    msgs = messages(V.validate([results], builds(data)))
    assert any(
        "metrics.test.domains['Prime Pantry'].auc is 0.999000 but recomputed from" in m
        for m in msgs
    ), msgs
    assert any("metrics.test.auc_mean is" in m and "recomputed from" in m for m in msgs), msgs
    assert not any("per-domain AUCs is" in m for m in msgs)  # averages themselves are consistent


def test_predictions_must_be_of_the_test_split(results, data):
    path = one_file(results)
    pred = V.predictions_path(path)
    df = pl.read_parquet(pred)
    df.reverse().write_parquet(pred)
    msgs = messages(V.validate([results], builds(data)))
    assert any("domain_id/label differ from the build's test split" in m for m in msgs), msgs
    df.head(5).write_parquet(pred)
    msgs = messages(V.validate([results], builds(data)))
    assert any("has 5 rows but the build's test split has" in m for m in msgs), msgs
    df.drop("score").write_parquet(pred)
    msgs = messages(V.validate([results], builds(data)))
    assert any("lacks column(s) score" in m for m in msgs), msgs


def test_missing_predictions_only_fail_when_required(results, data):
    path = one_file(results)
    V.predictions_path(path).unlink()
    assert V.validate([results], builds(data)).ok
    msgs = messages(V.validate([results], builds(data), require_predictions=True))
    assert msgs == [
        f"{path}: no predictions file {path.stem}.predictions.parquet beside it (--require-predictions)"
    ]


def test_a_ranked_entry_needs_three_seeds(tmp_path, data):
    res = make_results_dir(tmp_path / "r", data, [("mmoe", "alternate", 1.0)], seeds=(0, 1))
    report = V.validate([res], builds(data))
    assert [v.kind for v in report.violations] == ["few_seeds"]
    assert (
        "mmoe + alternate: has 2 seed(s) (0, 1); a ranked entry needs at least 3"
        in messages(report)[0]
    )
    assert V.validate([res], builds(data), min_seeds=2).ok


def test_configs_that_differ_make_separate_entries(tmp_path, data):
    res = make_results_dir(tmp_path / "r", data, [("mlp", "alternate", 1.0)])
    make_result(data, res / "lr", model="mlp", method="alternate", seed=0, config={"lr": 0.01})
    report = V.validate([res], builds(data))
    assert [v.kind for v in report.violations] == ["few_seeds"]


def test_duplicate_seed_is_reported(results, data):
    path = one_file(results)
    shutil.copy(path, path.with_name("copy.json"))
    report = V.validate([results], builds(data))
    assert [v.kind for v in report.violations] == ["duplicate_seed"]
    assert "seed 0 appears in 2 files" in messages(report)[0]


def test_each_violation_of_one_file_is_its_own_message(results, data):
    path = one_file(results)
    edit_result(
        path, lambda d: (d.update(n_parameters=-1, train_seconds="fast"), d.pop("best_epoch"))
    )
    msgs = messages(V.validate([results], builds(data)))
    assert msgs[:3] == [
        f"{path}: missing field 'best_epoch' (an integer >= 0)",
        f"{path}: field 'train_seconds' must be a number >= 0, got 'fast'",
        f"{path}: field 'n_parameters' must be an integer >= 0, got -1",
    ]
    # A file that fails the schema does not count as a seed of its entry.
    assert msgs[3:] == [msgs[3]] and "has 2 seed(s) (1, 2)" in msgs[3]


def test_unreadable_and_foreign_json(tmp_path, results, data):
    (results / "broken.json").write_text("{not json")
    (results / "other.json").write_text('{"hello": 1}')
    msgs = messages(V.validate([results], builds(data)))
    assert any("broken.json: not a readable JSON file" in m for m in msgs)
    assert any("other.json: no 'schema_version': not an mdrbench results file" in m for m in msgs)


def test_builds_are_found_in_a_folder_of_datasets_and_bad_paths_fail(tmp_path, data):
    assert len(builds(data.parent)) == 1
    with pytest.raises(UserError, match="no built dataset at"):
        builds(tmp_path / "nothing")
    # The default data directory is searched when it exists; the official table is empty.
    assert V.OFFICIAL_BUILDS == {}
    assert len(V.KnownBuilds.discover(data_dir=data.parent)) == 1


def test_cli_exit_codes_and_messages(capsys, monkeypatch, tmp_path, results, data):
    monkeypatch.setenv("MDRBENCH_DATA", str(tmp_path / "empty"))
    code, out, err = run_cli(capsys, "validate", results, "--dataset", data)
    assert code == 0 and out.startswith("OK: 6 results file(s), 6 predictions file(s) recomputed")
    edit_result(one_file(results), lambda d: d["metrics"]["test"].update(auc_mean=0.1))
    code, out, err = run_cli(capsys, "validate", results, "--dataset", data)
    assert code == 1
    assert "metrics.test.auc_mean is 0.100000 but the mean" in out
    assert "FAILED: 2 violation(s) in 1 file(s)" in err  # the average and the predictions
    # Without the build, the results are refused: the default data dir is empty here.
    code, out, err = run_cli(capsys, "validate", results)
    assert code == 1 and out.count("is not a build this mdrbench knows") == 6
    code, out, err = run_cli(capsys, "validate", tmp_path / "missing")
    assert code == 2 and "Error: no results file or folder at" in err


def test_a_real_training_run_validates_and_its_predictions_recompute(tmp_path, data):
    """Contract check against the reference trainer: its results JSON passes, and the
    probabilities it predicts on the test split reproduce its test metrics exactly."""
    pytest.importorskip("torch")
    from mdrbench.data import load_dataset
    from mdrbench.trainer import result_filename, train

    mdr = load_dataset(data, "cpu")
    run = train(mdr, "mlp", "alternate", seed=0, overrides={"epochs": 1, "device": "cpu"})
    path = tmp_path / result_filename(run.record)
    path.write_text(json.dumps(run.record))
    test = pl.read_parquet(data / "test.parquet")
    probs = np.asarray(run.framework.predict(mdr.splits["test"]))
    pl.DataFrame(
        {"domain_id": test["domain_id"], "label": test["label"], "score": probs}
    ).write_parquet(V.predictions_path(path))
    report = V.validate([tmp_path], builds(data), min_seeds=1)
    assert messages(report) == [] and report.n_predictions_checked == 1
