"""synth -> build -> stats -> verify, offline, for every registered dataset; thread-count
independence of the Parquet bytes."""

import json
import os
import subprocess
import sys

import pytest

from mdrbench.builders.specs import DATASETS

MDR = [sys.executable, "-m", "mdrbench.cli"]


def run(*args, env=None):
    r = subprocess.run([*MDR, *args], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    run("synth", "amazon", "--out", str(root / "amazon"), "--size", "tiny")
    run("synth", "taobao", "--out", str(root / "taobao"), "--size", "tiny")
    return root


@pytest.mark.parametrize("name", DATASETS.names())
def test_synth_build_stats_verify(raw, tmp_path, name):
    kind = DATASETS.get(name).kind
    out = tmp_path / "out"
    run("build", name, "--raw-dir", str(raw / kind), "--out", str(out), "--offline", "-q")
    m = json.loads((out / name / "manifest.json").read_text())
    assert [d["name"] for d in m["domains"]] == DATASETS.get(name).domain_names
    assert all(d["n_pos"] > 0 and d["n_neg"] > 0 for d in m["domains"])
    stats = run("stats", str(out / name))
    assert all(d["name"] in stats for d in m["domains"])
    assert "OK" in run("verify", str(out / name))


@pytest.mark.parametrize("name", ["amazon-6", "taobao-10"])
def test_parquet_bytes_do_not_depend_on_thread_count_or_run(raw, tmp_path, name):
    """POLARS_MAX_THREADS=1, =2, and =2 again (a second run): the same bytes, split included."""
    kind = DATASETS.get(name).kind
    builds = []
    for run_no, threads in enumerate(("1", "2", "2")):
        env = dict(os.environ, POLARS_MAX_THREADS=threads)
        out = tmp_path / f"run{run_no}-t{threads}"
        run("build", name, "--raw-dir", str(raw / kind), "--out", str(out), "--offline", "-q",
            env=env)  # fmt: skip
        builds.append(out / name)
    parquet = sorted(p.name for p in builds[0].glob("*.parquet"))
    assert len(parquet) >= 3
    for other in builds[1:]:
        assert sorted(p.name for p in other.glob("*.parquet")) == parquet
        for f in [*parquet, "manifest.json"]:
            assert (other / f).read_bytes() == (builds[0] / f).read_bytes(), f
