"""Tiny built datasets (tests/train_fixtures.py), one per test module: `amazon_path` /
`taobao_path` (folders) and `amazon` / `taobao` (loaded). A module may define its own
fixture of the same name (test_synth.py, test_download.py do), which then wins."""

from __future__ import annotations

import os

import pytest
from train_fixtures import write_dataset

from mdrbench.data import load_dataset


@pytest.fixture(scope="session", autouse=True)
def _mdrbench_cache(tmp_path_factory):
    """The dataset-check cache (mdrbench.paths.cache_dir) in a temporary folder, not ~/.cache."""
    os.environ["MDRBENCH_CACHE"] = str(tmp_path_factory.mktemp("mdrbench-cache"))


@pytest.fixture(scope="module")
def amazon_path(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("amazon"), "amazon")


@pytest.fixture(scope="module")
def taobao_path(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("taobao"), "taobao")


@pytest.fixture(scope="module")
def amazon(amazon_path):
    return load_dataset(amazon_path)


@pytest.fixture(scope="module")
def taobao(taobao_path):
    return load_dataset(taobao_path)
