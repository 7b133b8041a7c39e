"""The Python API at the top level (docs/api.md) and `mdrbench score`: data in one call,
training, results as a DataFrame, submissions from a model trained outside mdrbench."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from train_fixtures import tiny_overrides

import mdrbench
from mdrbench.cli import cli


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny taobao-10, built by the real pipeline from synthetic raw files."""
    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.synth import synthesize

    root = tmp_path_factory.mktemp("api")
    synthesize("taobao", root / "raw", n_domains=10, size="tiny", seed=0)
    return build_dataset("taobao-10", raw_dir=root / "raw", out=root / "data")


def test_import_is_light():
    code = (
        "import sys, mdrbench; "
        "assert 'torch' not in sys.modules and 'polars' not in sys.modules, 'heavy import'; "
        "mdrbench.load_dataset; mdrbench.Evaluator; mdrbench.load_results; "
        "assert 'torch' not in sys.modules; print(sorted(mdrbench.__all__))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for name in ("load_dataset", "train", "evaluate", "Evaluator", "load_results"):
        assert name in r.stdout


def test_build_load_train_load_results_in_python(built, tmp_path, monkeypatch):
    # A name resolves in the data directory, as for the CLI.
    monkeypatch.setenv("MDRBENCH_DATA", str(built.parent))
    ds = mdrbench.load_dataset("taobao-10")
    assert ds.path == built and ds.name == "taobao-10" and ds.n_domains == 10
    train = ds.split("train")
    assert train.columns == ["user_id", "item_id", "domain_id", "label", "domain"]
    assert train.height == ds.manifest["totals"]["n_train"]
    assert train["domain"].dtype == pl.Enum(list(ds.domain_names))
    first = train.filter(pl.col("domain_id") == 3)["domain"].unique().to_list()
    assert first == [ds.domain_names[3]]
    assert ds.split("validation").height == ds.manifest["totals"]["n_val"]
    assert ds.features("user").height == ds.manifest["totals"]["n_users"]
    assert ds.verify() == []
    tensors = ds.to_torch()
    assert len(tensors.train) == train.height and tensors.info.domain_names == ds.domain_names

    out = tmp_path / "results"
    for seed in (0, 1):
        res = mdrbench.train(ds, "mlp", "alternate", seed=seed, out=out, **tiny_overrides("mlp"))
        assert res.path.is_file() and res.path.with_suffix("").name.endswith(f"seed{seed}")
    df = mdrbench.load_results(out)
    assert isinstance(df, pl.DataFrame)
    from mdrbench.results import FRAME_COLUMNS

    assert df.columns == list(FRAME_COLUMNS)
    # One row per result x split x domain.
    assert df.height == 2 * 2 * 10
    assert df.group_by("seed", "split").len()["len"].to_list() == [10] * 4
    assert set(df["domain"]) == set(ds.domain_names)
    row = df.filter((pl.col("seed") == 1) & (pl.col("split") == "test")).row(0, named=True)
    record = json.loads(res.path.read_text())
    first_domain = ds.domain_names[0]
    assert row["domain"] == first_domain and row["dataset"] == "taobao-10"
    assert row["auc"] == record["metrics"]["test"]["domains"][first_domain]["auc"]
    assert row["split_auc_mean"] == record["metrics"]["test"]["auc_mean"]
    assert row["manifest_sha256"] == ds.manifest_sha256
    # Per-epoch history in the result file.
    assert record["history"] == res.history and len(res.history) == 1
    assert {"epoch", "stage", "loss", "val_auc"} <= record["history"][0].keys()
    # The same long table from the CLI.
    r = CliRunner().invoke(cli, ["table", str(out), "--format", "csv", "--long"])
    assert r.exit_code == 0, r.output
    import io

    from polars.testing import assert_frame_equal

    assert_frame_equal(pl.read_csv(io.StringIO(r.output), schema=df.schema), df)
    r = CliRunner().invoke(cli, ["table", str(out), "--format", "csv", "--long", "--split", "val"])
    assert pl.read_csv(io.StringIO(r.output))["split"].unique().to_list() == ["val"]
    r = CliRunner().invoke(cli, ["table", str(out), "--long"])
    assert r.exit_code != 0 and "--format csv" in str(r.exception)

    # The pandas view, where pandas is installed (it is no dependency).
    try:
        import pandas  # noqa: F401
    except ImportError:
        return
    assert ds.to_pandas("test").shape[0] == ds.manifest["totals"]["n_test"]


def test_mdrbench_evaluate_is_the_one_evaluator(built):
    from mdrbench.evaluate import evaluate

    assert mdrbench.evaluate is evaluate
    ev = mdrbench.Evaluator(built)
    assert "score" in ev.expected_input_format
    rng = np.random.default_rng(0)
    scores = rng.random(ev.rows.height)
    got = ev.eval({"score": scores}, in_split_order=True)
    want = evaluate(ev.rows["domain_id"], ev.rows["label"], scores, ev.dataset.domain_names)
    assert got == want
    # Keyed input in any order gives the same numbers.
    keyed = ev.rows.with_columns(score=pl.Series(scores)).sample(fraction=1.0, shuffle=True, seed=1)
    assert ev.eval(keyed.drop("label")) == want
    with pytest.raises(mdrbench.UserError, match="rows"):
        ev.eval({"score": scores[:-1]}, in_split_order=True)
    with pytest.raises(mdrbench.UserError, match="probabilities"):
        ev.eval({"score": scores * 3}, in_split_order=True)
    with pytest.raises(mdrbench.UserError, match="label differs"):
        ev.eval({"score": scores, "label": 1 - ev.rows["label"].to_numpy()}, in_split_order=True)


def _numpy_model_predictions(ds, split: str) -> pl.DataFrame:
    """A plain NumPy model, no torch: logistic regression on the Taobao feature tables
    (user and item features concatenated), a few steps of gradient descent on train."""
    uf = np.stack(ds.features("user")["features"].to_numpy())
    itf = np.stack(ds.features("item")["features"].to_numpy())

    def x_of(df):
        return np.hstack([uf[df["user_id"].to_numpy()], itf[df["item_id"].to_numpy()]])

    tr = ds.split("train")
    x, y = x_of(tr), tr["label"].to_numpy().astype(np.float64)
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= 0.5 * x.T @ (p - y) / len(y)
    df = ds.split(split, domain_names=False)
    return df.select("user_id", "item_id", "domain_id").with_columns(
        score=1 / (1 + np.exp(-(x_of(df) @ w)))
    )


def test_score_a_numpy_models_predictions_then_validate(built, tmp_path):
    ds = mdrbench.load_dataset(built)
    preds = _numpy_model_predictions(ds, "test")
    f = tmp_path / "preds.parquet"
    # Rows shuffled, as another framework may write them: matched by key.
    preds.sample(fraction=1.0, shuffle=True, seed=0).write_parquet(f)
    val = tmp_path / "val.csv"
    _numpy_model_predictions(ds, "val").write_csv(val)
    out = tmp_path / "results"
    runner = CliRunner()
    for seed in (0, 1, 2):
        per_seed = tmp_path / f"preds-seed{seed}.parquet"  # each run has its own file
        per_seed.write_bytes(f.read_bytes())
        r = runner.invoke(cli, [
            "score", str(per_seed), "--dataset", str(built), "--model-name", "logreg-numpy",
            "--method-name", "joint", "--seed", str(seed), "--val-predictions", str(val),
            "--n-parameters", "256", "--set", "lr=0.5", "--set", "steps=50", "--out", str(out),
        ])  # fmt: skip
        assert r.exit_code == 0, r.output
    assert "Test AUC per domain" in r.output and "mdrbench validate" in r.output
    result = out / "taobao-10__logreg-numpy__joint__seed2.json"
    record = json.loads(result.read_text())
    assert record["metrics"]["test"]["auc_mean"] > 0.5  # the features carry signal
    assert record["metrics"]["test"] == mdrbench.Evaluator(ds).eval(preds)
    assert record["metrics"]["val"]["domains"].keys() == record["metrics"]["test"]["domains"].keys()
    assert (out / "taobao-10__logreg-numpy__joint__seed2.predictions.parquet").is_file()
    assert record["config"] == {
        "seed": 2, "source": "mdrbench score", "hyperparameters": {"lr": "0.5", "steps": "50"}
    }  # fmt: skip

    r = runner.invoke(cli, ["validate", str(out), "--dataset", str(built)])
    assert r.exit_code == 0, r.output
    assert "OK: 3 results file(s), 3 predictions file(s) recomputed" in r.output
    # The result also stacks with ours.
    df = mdrbench.load_results(out)
    assert df.height == 3 * 2 * 10

    # A refused overwrite leaves the file as it was.
    before = result.read_bytes()
    r = runner.invoke(cli, ["score", str(f), "--dataset", str(built), "--model-name",
                            "logreg-numpy", "--method-name", "joint", "--seed", "2",
                            "--out", str(out)])  # fmt: skip
    assert r.exit_code != 0 and "exists" in str(r.exception or r.output)
    assert result.read_bytes() == before

    # Tampered: a better AUC written into the JSON ...
    d = record["metrics"]["test"]["domains"]
    name = next(iter(d))
    d[name]["auc"] = min(1.0, d[name]["auc"] + 0.05)
    result.write_text(json.dumps(record))
    r = runner.invoke(cli, ["validate", str(out), "--dataset", str(built)])
    assert r.exit_code == 1
    assert f"metrics.test.domains['{name}'].auc" in r.output
    # ... or scores changed in the predictions file beside it.
    save = tmp_path / "orig.json"
    save.write_bytes(before)
    result.write_bytes(before)
    p = out / "taobao-10__logreg-numpy__joint__seed2.predictions.parquet"
    t = pl.read_parquet(p)
    t.with_columns(score=pl.col("score").reverse()).write_parquet(p)
    r = runner.invoke(cli, ["validate", str(out), "--dataset", str(built)])
    assert r.exit_code == 1 and "recomputed from" in r.output


def test_score_refuses_bad_predictions(built, tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"prediction": [0.5, 0.2]}).write_parquet(bad)
    args = ["--dataset", str(built), "--model-name", "x", "--method-name", "y",
            "--out", str(tmp_path / "o")]  # fmt: skip
    r = runner.invoke(cli, ["score", str(bad), *args])
    assert isinstance(r.exception, mdrbench.UserError) and "no 'score' column" in str(r.exception)
    r = runner.invoke(cli, ["score", str(tmp_path / "none.parquet"), *args])
    assert "no predictions file" in str(r.exception)
    assert not (tmp_path / "o").exists()


def test_docs_example_runs(tmp_path, monkeypatch):
    """docs/api.md's runnable example, as written (offline, tiny data)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setattr("tempfile.mkdtemp", lambda *a, **k: str(tmp_path))
    exec(compile(code, "docs/api.md", "exec"), {"__name__": "docs_example"})
    assert len(list((tmp_path / "results").glob("*.json"))) == 2


def test_score_needs_no_torch(built, tmp_path):
    """A submission from another framework is scored and written without importing torch."""
    ev = mdrbench.Evaluator(built)
    f = tmp_path / "p.csv"
    pl.DataFrame({"score": np.linspace(0, 1, ev.rows.height)}).write_csv(f)
    code = (
        "import sys\nfrom mdrbench.cli import main\n"
        f"try:\n    main(['score', {str(f)!r}, '--dataset', {str(built)!r}, '--model-name', 'm',"
        f" '--method-name', 'x', '--out', {str(tmp_path / 'r')!r}, '--in-split-order', '-q'])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r" / "taobao-10__m__x__seed0.json").is_file()
