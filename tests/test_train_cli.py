"""`mdrbench eval`, `mdrbench table`, `mdrbench quickstart` through the click group."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from train_fixtures import write_dataset

from mdrbench.cli import cli, main
from mdrbench.cli.train import parse_seeds
from mdrbench.errors import UserError

TINY_SETS = [
    "--set",
    "emb_dim=8",
    "--set",
    "hidden=[16]",
    "--set",
    "batch_size=64",
    "--set",
    "threads=1",
]
RESULT_KEYS = {
    "schema_version",
    "mdrbench_version",
    "dataset",
    "model",
    "method",
    "seed",
    "track",
    "config",
    "best_epoch",
    "metrics",
    "train_seconds",
    "samples_per_second",
    "n_parameters",
    "history",
    "stages",
    "stopped_at_cap",
    "environment",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), "taobao")


def _eval(dataset, out, *extra):
    args = [
        "eval",
        "--dataset",
        str(dataset),
        "--epochs",
        "1",
        "--out",
        str(out),
        "-q",
        *TINY_SETS,
        *extra,
    ]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_eval_writes_one_json_per_seed_and_table_renders(dataset, tmp_path):
    out = tmp_path / "results"
    res = _eval(dataset, out, "--model", "mlp", "--method", "alternate", "--seeds", "0,1")
    assert res.exit_code == 0, res.output
    assert "Domain A" in res.output and "Average AUC" in res.output and " ± " in res.output
    files = sorted(out.glob("*.json"))
    assert [f.name for f in files] == [
        "tiny-taobao-3__mlp__alternate__seed0.json",
        "tiny-taobao-3__mlp__alternate__seed1.json",
    ]
    rec = json.loads(files[0].read_text())
    assert set(rec) == RESULT_KEYS
    assert rec["schema_version"] == 1
    import hashlib

    sha = hashlib.sha256((dataset / "manifest.json").read_bytes()).hexdigest()
    assert rec["dataset"] == {"name": "tiny-taobao-3", "manifest_sha256": sha}
    for split in ("val", "test"):
        m = rec["metrics"][split]
        assert {"auc_mean", "auc_weighted", "logloss", "domains"} <= set(m)
        assert list(m["domains"]) == ["Domain A", "Domain B", "Domain C"]
        assert all(set(v) == {"auc", "logloss", "n"} for v in m["domains"].values())
    assert rec["config"]["model"]["hidden"] == [16] and rec["config"]["train"]["epochs"] == 1

    res = _eval(dataset, out, "--model", "mlp", "--method", "finetune")
    assert res.exit_code == 0, res.output
    for fmt, marker in (
        ("md", "| mlp   | finetune"),
        ("csv", "Model,Method,"),
        ("latex", "\\begin{tabular}"),
    ):
        t = CliRunner().invoke(cli, ["table", str(out), "--format", fmt], catch_exceptions=False)
        assert t.exit_code == 0 and marker in t.output, t.output
    t = CliRunner().invoke(cli, ["table", str(out), "--dataset", "tiny-taobao-3"])
    assert "RANK" in t.output and "Domain C" in t.output


def test_table_refuses_unknown_dataset_and_mixed_builds(dataset, tmp_path):
    out = tmp_path / "r"
    assert _eval(dataset, out).exit_code == 0
    res = CliRunner().invoke(cli, ["table", str(out), "--dataset", "amazon-6"])
    assert isinstance(res.exception, UserError) and "found: tiny-taobao-3" in str(res.exception)
    f = next(out.glob("*.json"))
    rec = json.loads(f.read_text())
    rec["dataset"]["manifest_sha256"] = "0" * 64
    rec["method"] = "joint"
    (out / "other.json").write_text(json.dumps(rec))
    res = CliRunner().invoke(cli, ["table", str(out)])
    assert isinstance(res.exception, UserError) and "different builds" in str(res.exception)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "mlpp"], "unknown model 'mlpp'; did you mean 'mlp'"),
        (["--method", "altenate"], "did you mean 'alternate'"),
        (["--set", "lr=abc"], "expected float"),
        (["--seeds", "a,b"], "--seeds"),
    ],
)
def test_eval_user_errors_exit_2_without_traceback(dataset, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--dataset", str(dataset), "--out", str(tmp_path), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and message in err and "Traceback" not in err


def test_eval_missing_dataset(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--dataset", str(tmp_path / "none")])
    assert "no built dataset" in capsys.readouterr().err


def test_parse_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]


def test_help_and_cli_module_do_not_import_torch():
    code = (
        "import sys; from click.testing import CliRunner; from mdrbench.cli import cli; "
        "import mdrbench.cli.train; "
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(cli, ['eval', '--help']); assert 'Example:' in r.output; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_quickstart_tiny(tmp_path):
    pytest.importorskip("mdrbench.builders.synth")
    res = CliRunner().invoke(
        cli,
        ["quickstart", "--out", str(tmp_path), "--size", "tiny", "--epochs", "1", "-q"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    from mdrbench.frameworks import best_framework

    best = best_framework()  # the highest `priority`: finetune here, mamdr with issue 4
    assert "mlp+alternate AUC" in res.output and f"mlp+{best} AUC" in res.output
    assert len(list((tmp_path / "results").glob("taobao-10__mlp__*.json"))) == 2
    # the tuned comparison's command (docs/tuning.md) runs as printed
    import shlex

    line = next(x.strip() for x in res.output.splitlines() if x.strip().startswith("mdrbench tune"))
    args = shlex.split(line)
    assert args[:2] == ["mdrbench", "tune"] and "docs/tuning.md" in res.output
    dry = CliRunner().invoke(cli, [*args[1:], "--dry-run"], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert "2 studies, 16 trial runs" in dry.output and f"mlp+{best}" in dry.output


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real build (synth + build) of a benchmark name, so validate knows it."""
    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.synth import synthesize

    root = tmp_path_factory.mktemp("built")
    synthesize("taobao", root / "raw", n_domains=10, size="tiny", seed=0)
    return build_dataset("taobao-10", raw_dir=root / "raw", out=root / "data", seed=0)


def test_eval_writes_predictions_that_validate_recomputes(built, tmp_path):
    dataset, out = built, tmp_path / "results"
    res = _eval(dataset, out, "--model", "mlp", "--method", "alternate", "--seeds", "0,1")
    assert res.exit_code == 0, res.output
    preds = sorted(p.name for p in out.glob("*.predictions.parquet"))
    assert preds == [
        "taobao-10__mlp__alternate__seed0.predictions.parquet",
        "taobao-10__mlp__alternate__seed1.predictions.parquet",
    ]
    t = pq.read_table(out / preds[0])
    test = pq.read_table(dataset / "test.parquet")
    assert t.column_names == ["domain_id", "label", "score"] and t.num_rows == test.num_rows
    assert t.column("label").to_pylist() == test.column("label").to_pylist()
    args = ["validate", str(out), "--dataset", str(dataset), "--min-seeds", "2"]
    ok = CliRunner().invoke(cli, [*args, "--require-predictions"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert "2 predictions file(s) recomputed" in ok.output + ok.stderr
    # a tampered score is caught by the recomputation
    tampered = t.set_column(2, "score", pa.array([0.5] * t.num_rows, pa.float64()))
    pq.write_table(tampered, out / preds[0])
    bad = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert bad.exit_code == 1 and "recomputed from" in bad.output


def test_eval_no_predictions_writes_json_only(dataset, tmp_path):
    out = tmp_path / "results"
    res = _eval(dataset, out, "--seeds", "0", "--no-predictions")
    assert res.exit_code == 0, res.output
    assert [p.suffix for p in out.iterdir()] == [".json"]
