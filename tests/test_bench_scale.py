"""benchmarks/train_scale.py: its data generator keeps Amazon-6's shape at any size, and the
script runs end to end (tiny sizes; the figures themselves are measured by hand)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_scale.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_scale", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_positives_cover_the_id_space_in_amazon6_shape(bench):
    pos = bench.scale_positives(3000, 1000, 40_000, seed=0)
    assert pos["user_id"].n_unique() == 3000 and pos["item_id"].n_unique() == 1000
    assert pos.select("user_id", "item_id", "domain_id").is_duplicated().sum() == 0
    # an item belongs to one category, as in Amazon's per-category files
    per_item = pos.group_by("item_id").agg(n=pl.col("domain_id").n_unique())
    assert per_item.height == 1000 and per_item["n"].max() == 1
    # the largest and smallest domains are Table II's (Toys and Games, Prime Pantry)
    counts = pos.group_by("domain_id").len().sort("domain_id")["len"].to_numpy()
    assert np.argmax(counts) == 4 and np.argmin(counts) == 3
    # same seed, same rows
    assert pos.equals(bench.scale_positives(3000, 1000, 40_000, seed=0))


def test_too_few_rows_for_the_id_space_is_refused(bench):
    with pytest.raises(SystemExit, match="too few"):
        bench.scale_positives(3000, 1000, 2_000, seed=0)


def test_built_dataset_has_the_exact_id_space_and_is_cached(bench, tmp_path):
    from mdrbench.data import load_dataset

    folder = bench.scale_dataset(tmp_path, 3000, 1000, 40_000, seed=0)
    data = load_dataset(folder)
    assert (data.info.n_users, data.info.n_items, data.info.n_domains) == (3000, 1000, 6)
    assert data.info.name == "amazon-6-scale"  # never mistaken for a real amazon-6 build
    assert 0.9 * 40_000 <= len(data.train) <= 1.1 * 40_000
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert bench.scale_dataset(tmp_path, 3000, 1000, 40_000, seed=0) == folder
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp


def test_script_runs_end_to_end(tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(SCRIPT), "--work", str(tmp_path), "--users", "400",
           "--items", "200", "--train-rows", "5000", "--threads", "1",
           "--systems", "alternate,mamdr,reptile", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())["results"]
    alt, mamdr = res["alternate"], res["mamdr"]
    assert alt["samples"] == alt["train_rows"]  # one pass
    # MAMDR with k = 3 on 6 domains: DN (1 pass) + DR (2k + 2 = 8 passes)
    assert 8 * mamdr["train_rows"] < mamdr["samples"] < 10 * mamdr["train_rows"]
    assert mamdr["parts"]["DN"]["calls"] == 1 and mamdr["parts"]["DR"]["calls"] == 6
    assert alt["peak_rss_mib"] >= alt["rss_before_mib"] > 0
    # Reptile: one snapshot per domain; its tables copied row by row, never per batch
    rep = res["reptile"]
    # (6 in its epoch, 6 more in the finetune stage's epoch: one per domain)
    assert rep["parts"]["snapshot: dense copies"]["calls"] == 12
    copied, rows = rep["snapshot_rows_copied"], rep["table_rows"]
    assert copied["inputs.user.weight"] <= 12 * rows["inputs.user.weight"]
    assert "rows copied per table" in proc.stdout
    assert "MAMDR epoch / alternate epoch" in proc.stdout
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--systems", "alternat"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown system(s) alternat" in bad.stderr
    assert "mamdr" in bad.stderr and "reptile" in bad.stderr  # the valid names
