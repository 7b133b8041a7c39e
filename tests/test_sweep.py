"""`mdrbench sweep`: the grid, resuming after a kill, retries, Ctrl-C, and the Ray backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from train_fixtures import write_dataset

from mdrbench.cli import cli, main
from mdrbench.errors import UserError
from mdrbench.sweep import grid_points, parse_grid_sets, split_values

REPO = Path(__file__).resolve().parents[1]
# The 2 x 2 x 2 sweep of the issue: models x methods x seeds, tiny and single-threaded.
GRID = ["--model", "mlp,wdl", "--method", "alternate,joint", "--seeds", "0,1", "--epochs", "1"]
TINY = ["--set", "emb_dim=8", "--set", "hidden=[16]", "--set", "batch_size=64",
        "--set", "threads=1", "--set", "device=cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), "taobao")


def _args(dataset, out, *extra):
    return ["sweep", "--dataset", str(dataset), *GRID, *TINY, "--out", str(out), *extra]


def _sweep(dataset, out, *extra):
    return CliRunner().invoke(cli, _args(dataset, out, *extra), catch_exceptions=False)


@pytest.fixture(scope="module")
def fresh(dataset, tmp_path_factory):
    """A fresh, uninterrupted sweep: the reference the other sweeps must equal."""
    out = tmp_path_factory.mktemp("fresh")
    res = _sweep(dataset, out, "--jobs", "2")
    assert res.exit_code == 0, res.output
    assert "8 done now" in res.output
    return out


def _without_wall_time(rec: dict) -> dict:
    """A result minus what measures wall time (two runs of one config and seed differ only
    there): train_seconds, samples_per_second, each epoch's seconds."""
    rec = {k: v for k, v in rec.items() if k not in ("train_seconds", "samples_per_second")}
    rec["history"] = [{k: v for k, v in e.items() if k != "seconds"} for e in rec["history"]]
    return rec


def _results(out: Path) -> dict[str, dict]:
    """Each result (wall-time fields dropped) and its predictions table, by relative path."""
    got = {}
    for f in sorted(out.rglob("*.json")):
        rec = _without_wall_time(json.loads(f.read_text()))
        pred = f.with_name(f.stem + ".predictions.parquet")
        got[str(f.relative_to(out))] = {"record": rec, "predictions": pq.read_table(pred)}
    return got


def assert_same_results(a: Path, b: Path) -> None:
    ra, rb = _results(a), _results(b)
    assert sorted(ra) == sorted(rb) and len(ra) == 8
    for name in ra:
        assert ra[name]["record"] == rb[name]["record"], name  # metrics bit for bit
        assert ra[name]["predictions"].equals(rb[name]["predictions"]), name


def test_split_values_and_grid_points():
    assert split_values("0.1,0.5") == ["0.1", "0.5"]
    assert split_values("[64,32],[128,64]") == ["[64,32]", "[128,64]"]
    sets = parse_grid_sets(["beta=0.1,0.5", "hidden=[16]", "lr=0.01,0.001"])
    points = grid_points(sets)
    assert len(points) == 4
    assert points[0] == ({"beta": "0.1", "hidden": "[16]", "lr": "0.01"}, "beta=0.1,lr=0.01")
    with pytest.raises(UserError, match="--seeds"):
        grid_points({"seed": ["1", "2"]})


def test_dry_run_lists_every_run_and_grid_points_get_their_own_folder(dataset, tmp_path):
    res = _sweep(dataset, tmp_path, "--set", "dropout=0.1,0.5", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "16 runs: 16 todo" in res.output
    assert f"{tmp_path}/dropout=0.1/tiny-taobao-3__wdl__joint__seed1.json" in res.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_grid_file_is_the_same_as_the_options(dataset, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        f'dataset = "{dataset}"\nmodel = ["mlp", "wdl"]\nmethod = "alternate,joint"\n'
        'seeds = [0, 1]\nepochs = 1\nprofile = "paper"\n[set]\nemb_dim = 8\nhidden = [[16]]\nbatch_size = 64\n'
        'threads = 1\ndevice = "cpu"\n'
    )
    by_file = CliRunner().invoke(
        cli, ["sweep", "--grid", str(grid), "--out", str(tmp_path), "--dry-run"]
    )
    by_options = _sweep(dataset, tmp_path, "--dry-run")
    assert by_file.exit_code == 0, by_file.output
    assert by_file.output == by_options.output
    grid.write_text("modle = 'mlp'\n")
    res = CliRunner().invoke(cli, ["sweep", "--grid", str(grid), "--dry-run"])
    assert isinstance(res.exception, UserError) and "unknown key(s) modle" in str(res.exception)


def test_killed_sweep_resumes_and_equals_a_fresh_one(dataset, fresh, tmp_path):
    """Must show: 2 x 2 x 2, --jobs 2, killed (SIGKILL, the whole process group) after the
    first result; the rerun finishes, skips what was done, and equals a fresh sweep."""
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "mdrbench.cli", *_args(dataset, out, "--jobs", "2")]
    proc = subprocess.Popen(args, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("*.json")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no result after 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in out.glob("*.json")}
    assert 1 <= len(first) < 8, "the sweep was not interrupted"

    res = _sweep(dataset, out, "--jobs", "2")
    assert res.exit_code == 0, res.output
    assert f"{len(first)} already done (skipped), {8 - len(first)} done now, 0 failed" in res.output
    for name, (data, mtime) in first.items():  # what was done is not redone
        assert (out / name).read_bytes() == data and (out / name).stat().st_mtime_ns == mtime
    assert_same_results(out, fresh)
    log = (out / "tiny-taobao-3__wdl__joint__seed1.log").read_text()
    assert "== attempt 1 (pid " in log and "epoch   1 [" in log and "wrote " in log
    again = _sweep(dataset, out, "--jobs", "2")
    assert "8 already done (skipped), 0 done now" in again.output


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(dataset, fresh, tmp_path):
    out = tmp_path / "interrupted"
    args = [sys.executable, "-m", "mdrbench.cli", *_args(dataset, out, "--jobs", "2")]
    proc = subprocess.Popen(args, cwd=REPO, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("*.json")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no result after 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "Sweep interrupted" in output and "Rerun the same command" in output
    assert "Traceback" not in output
    res = _sweep(dataset, out, "--jobs", "2")
    assert res.exit_code == 0 and " 0 failed" in res.output, res.output
    assert_same_results(out, fresh)


def test_results_that_do_not_count_are_redone_and_others_refused(dataset, fresh, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    for f in fresh.glob("*"):
        if not f.name.endswith(".log"):
            (out / f.name).write_bytes(f.read_bytes())
    (out / "tiny-taobao-3__mlp__alternate__seed0.json").unlink()  # killed before the commit
    (out / "tiny-taobao-3__wdl__joint__seed1.predictions.parquet").unlink()  # JSON alone
    pred = out / "tiny-taobao-3__mlp__joint__seed1.predictions.parquet"
    pred.write_bytes(pred.read_bytes()[:100])  # truncated predictions
    res = _sweep(dataset, out, "--dry-run")
    assert "5 done, 2 redo, 1 todo" in res.output, res.output
    res = _sweep(dataset, out, "--jobs", "2")
    assert "5 already done (skipped), 3 done now, 0 failed" in res.output, res.output
    assert_same_results(out, fresh)
    # a result of another configuration in the way: refused, nothing touched
    before = {f: f.read_bytes() for f in out.glob("*.json")}
    res = CliRunner().invoke(cli, _args(dataset, out, "--set", "lr=0.01"))
    assert isinstance(res.exception, UserError)
    assert "another config (train.lr: 0.001 -> 0.01)" in str(res.exception)
    assert before == {f: f.read_bytes() for f in out.glob("*.json")}
    # so is a JSON that is not a result; a cut-off one never counted: it is redone
    f = out / "tiny-taobao-3__wdl__alternate__seed0.json"
    f.write_text('{"schema_version": 1}')
    res = CliRunner().invoke(cli, _args(dataset, out))
    assert isinstance(res.exception, UserError) and "is not a valid result" in str(res.exception)
    f.write_text('{"schema_version": 1, "da')
    res = _sweep(dataset, out, "--dry-run")
    assert "7 done, 1 redo" in res.output and "cut off" in res.output, res.output


def test_profile_is_passed_to_eval_and_recorded(dataset, fresh, tmp_path):
    res = _sweep(dataset, fresh, "--profile", "none", "--dry-run")  # paper is the default
    assert "8 runs: 8 conflict" in res.output
    assert 'profile.name: "paper" -> "none"' in res.output
    args = ["sweep", "--dataset", str(dataset), "--model", "mlp", "--method", "alternate",
            "--seeds", "0", "--epochs", "1", *TINY, "--profile", "none", "--out", str(tmp_path)]  # fmt: skip
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "tiny-taobao-3__mlp__alternate__seed0.json").read_text())
    assert rec["config"]["profile"]["name"] == "none"


def test_a_failing_run_is_reported_with_its_reason_and_the_others_finish(dataset, tmp_path):
    """A damaged dataset is a user error: reported with its reason, not retried (it would
    fail the same way); the retries of other failures: tests/test_hostile.py (issue 21)."""
    broken = write_dataset(tmp_path / "broken", "amazon")
    (broken / "train.parquet").write_bytes(b"not parquet")
    out = tmp_path / "out"
    args = ["sweep", "--dataset", str(dataset), "--dataset", str(broken), "--model", "mlp",
            "--method", "alternate", "--seeds", "0", "--epochs", "1", *TINY,
            "--out", str(out), "--retries", "2"]  # fmt: skip
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 1, res.output
    assert "1 done now, 1 failed" in res.output
    log = out / "tiny-amazon-3__mlp__alternate__seed0.log"
    assert "FAILED tiny-amazon-3 mlp+alternate seed 0: dataset " in res.output
    assert "does not match its manifest" in res.output and "exit status" not in res.output
    assert f"log: {log}" in res.output
    text = log.read_text()
    assert "== attempt 1 failed" in text and "== attempt 2" not in text
    assert (out / "tiny-taobao-3__mlp__alternate__seed0.json").is_file()
    assert not (out / "tiny-amazon-3__mlp__alternate__seed0.json").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "mlpp"], "unknown model 'mlpp'"),
        (["--set", "betaa=0.1,0.5"], "unknown hyperparameter 'betaa'"),
        (["--set", "lr=0.1,abc"], "expected float"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--set", "seed=1,2"], "--seeds"),
    ],
)
def test_user_errors_exit_2_before_anything_runs(dataset, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--dataset", str(dataset), "--out", str(tmp_path / "o"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_ray_backend_without_ray_names_the_extra(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(SystemExit) as exc:
        main(_args(dataset, tmp_path, "--backend", "ray"))
    assert exc.value.code == 2
    assert "pip install 'mdrbench[ray]'" in capsys.readouterr().err


def test_sweep_module_imports_neither_ray_nor_torch():
    code = ("import sys, mdrbench.cli.sweep, mdrbench.sweep; "
            "assert 'ray' not in sys.modules and 'torch' not in sys.modules")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ray_backend_equals_local(dataset, fresh, tmp_path):
    """Must show: the same sweep on a local Ray (num_cpus=2) gives the local backend's
    results, bit for bit. Skipped without the extra (pip install 'mdrbench[ray]')."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = _sweep(dataset, tmp_path, "--backend", "ray")
    finally:
        ray.shutdown()
    assert res.exit_code == 0, res.output
    assert "8 done now, 0 failed" in res.output
    assert_same_results(tmp_path, fresh)
    assert "epoch   1 [" in (tmp_path / "tiny-taobao-3__mlp__joint__seed0.log").read_text()


# ----------------------------------------------------------------------------- from the Hub
# A benchmark given by NAME to a Ray sweep, with no copy here: the driver reads the build's
# manifest at the pinned Hub revision, and each node fetches the data (tests/test_hub.py's
# fake Hub on 127.0.0.1; HF_ENDPOINT is read at import, hence subprocesses).
HUB_GRID = ["--model", "mlp", "--method", "alternate", "--seeds", "0,1", "--epochs", "1",
            "--profile", "none", *TINY]  # fmt: skip


@pytest.fixture(scope="module")
def hub_build(tmp_path_factory):
    """A tiny trainable build named taobao-10 (a benchmark name, so it has a pinned Hub home)."""
    from publish_fixtures import make_dataset

    return make_dataset(tmp_path_factory.mktemp("hubdata"), "taobao-10", n_domains=2,
                        rows_per_domain=60)  # fmt: skip


def _hub_env(tmp: Path, hub) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "RAY_"))}
    env.update(HF_HOME=str(tmp / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_ENDPOINT=hub.url,
               HF_TOKEN=hub.token, MDRBENCH_DATA=str(tmp / "node-data"))  # fmt: skip
    return env


def _publish_pinned(env: dict, build: Path) -> str:
    """Publish `build` to its spec's Hub repo, tagged with the pinned revision."""
    from mdrbench.builders.specs import DATASETS

    spec = DATASETS.get(build.name)
    r = subprocess.run([sys.executable, "-m", "mdrbench", "publish", str(build), "--repo-id",
                        spec.hub_repo, "--tag", spec.hub_revision],
                       capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return spec.hub_repo


def _downloads(hub, before: int, file: str) -> int:
    return sum(1 for m, p, _ in hub.requests[before:] if m == "GET" and p.endswith(f"/{file}"))


ENSURE = ("import sys; from mdrbench.hub import ensure_dataset\n"
          "try:\n    print(ensure_dataset('taobao-10', sys.argv[1]))\n"
          "except Exception as e:\n    print('ERR', e); sys.exit(2)\n")  # fmt: skip


def test_ensure_dataset_two_processes_one_download_and_corrupt_kept_nowhere(hub_build, tmp_path):
    from publish_fixtures import FakeHub

    from mdrbench.atomic import Lock
    from mdrbench.builders.manifest import file_sha256

    sha = file_sha256(hub_build / "manifest.json")
    with FakeHub() as hub:
        env = _hub_env(tmp_path, hub)
        repo = _publish_pinned(env, hub_build)
        before = len(hub.requests)
        data_dir = tmp_path / "node-data"
        # --dry-run with no copy here: the runs from the Hub manifest, no data downloaded.
        r = subprocess.run([sys.executable, "-m", "mdrbench", "sweep", "--dataset", "taobao-10",
                            *HUB_GRID, "--backend", "ray", "--out", str(tmp_path / "o"),
                            "--dry-run"], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert r.returncode == 0 and "2 runs: 2 todo" in r.stdout, r.stdout + r.stderr
        assert _downloads(hub, before, "manifest.json") == 1
        assert _downloads(hub, before, "test.parquet") == 0 and not data_dir.exists()
        # Two processes at once, both held at the lock until both are waiting on it.
        lock = Lock(data_dir / ".taobao-10.lock", "testing")
        procs = [subprocess.Popen([sys.executable, "-c", ENSURE, sha], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]  # fmt: skip
        time.sleep(3)
        assert [p.poll() for p in procs] == [None, None]  # waiting, not failing
        lock.release()
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert [o.strip() for o, _ in outs] == [str(data_dir / "taobao-10")] * 2
        assert _downloads(hub, before, "test.parquet") == 1  # one download, two users
        assert [p.name for p in data_dir.iterdir()] == ["taobao-10"]  # no lock, no temp left
        assert file_sha256(data_dir / "taobao-10" / "manifest.json") == sha

        # A copy of another build in the data directory is never replaced.
        r = subprocess.run([sys.executable, "-c", ENSURE, "0" * 64], env=env, text=True,
                           capture_output=True, timeout=120)  # fmt: skip
        assert r.returncode == 2 and "holds another copy of taobao-10" in r.stdout, r.stdout

        # A download that fails its checksums keeps nothing, and says so.
        files = hub.files(repo)
        f = "data/taobao-10/val.parquet"
        files[f] = files[f][:-1] + bytes([files[f][-1] ^ 1])
        empty = tmp_path / "empty-node"
        r = subprocess.run([sys.executable, "-c", ENSURE, sha], text=True, capture_output=True,
                           env=dict(env, MDRBENCH_DATA=str(empty)), timeout=120)  # fmt: skip
        assert r.returncode == 2, r.stdout
        assert "sha256 differs from the manifest" in r.stdout and "nothing was kept" in r.stdout
        assert list(empty.iterdir()) == []


def test_ray_sweep_of_a_name_fetches_from_the_hub_and_equals_a_local_path_sweep(
    hub_build, tmp_path
):
    """Must show (issue 13): `--backend ray --dataset NAME` with no build here: each task
    gets the build from the pinned Hub home (one download for the node), and the results
    equal those of a local sweep of the same build's folder."""
    pytest.importorskip("ray")
    from publish_fixtures import FakeHub

    local = tmp_path / "local"
    res = CliRunner().invoke(cli, ["sweep", "--dataset", str(hub_build), *HUB_GRID, "--jobs",
                                   "2", "--out", str(local)], catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0 and "2 done now" in res.output, res.output
    with FakeHub() as hub:
        env = _hub_env(tmp_path, hub)
        _publish_pinned(env, hub_build)
        before = len(hub.requests)
        out = tmp_path / "ray"
        cmd = [sys.executable, "-m", "mdrbench", "sweep", "--dataset", "taobao-10", *HUB_GRID,
               "--backend", "ray", "--jobs", "2", "--out", str(out)]  # ray.init(num_cpus=2)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "2 done now, 0 failed" in r.stdout
        node_copy = tmp_path / "node-data" / "taobao-10"
        assert f"--dataset {node_copy} " in r.stdout  # the next commands name the copy here
        assert _downloads(hub, before, "test.parquet") == 1
        assert (tmp_path / "node-data" / "taobao-10" / "manifest.json").is_file()
        # Rerun: everything is skipped, nothing is downloaded again but the manifest.
        before = len(hub.requests)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0 and "2 already done (skipped)" in r.stdout, r.stdout + r.stderr
        assert _downloads(hub, before, "test.parquet") == 0
    ra, rb = _results(out), _results(local)
    assert sorted(ra) == sorted(rb) and len(ra) == 2
    for name in ra:
        assert ra[name]["record"] == rb[name]["record"], name
        assert ra[name]["predictions"].equals(rb[name]["predictions"]), name
