"""mdrbench.builders.synth: synthetic raw files in the real formats (tiny sizes, offline)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mdrbench.builders.specs import AMAZON_6, AMAZON_13, amazon_file_name
from mdrbench.builders.synth import (
    AMAZON_CATEGORIES,
    domain_profile,
    output_files,
    resolve_size,
    synthesize,
)
from mdrbench.errors import UserError

TAOBAO_FILES = {
    "theme_click_log.csv": "user_id,theme_id,item_id,leaf_cate_id,cate_level1_id,clk_cnt,reach_time",
    "user_embedding.csv": "user_id,emb",
    "item_embedding.csv": "item_id,emb",
    "theme_item_pool.csv": "theme_id,item_id",
    "user_item_purchase_log.csv": "user_id,item_id,paytime",
}
REQUIRED = {"overall", "verified", "reviewTime", "reviewerID", "asin", "reviewerName", "unixReviewTime"}  # fmt: skip
OPTIONAL = {"vote", "style", "image", "reviewText", "summary"}


@pytest.fixture(scope="module")
def amazon(tmp_path_factory) -> Path:
    return synthesize("amazon", tmp_path_factory.mktemp("amazon"), size="tiny", seed=0)


@pytest.fixture(scope="module")
def taobao(tmp_path_factory) -> Path:
    return synthesize("taobao", tmp_path_factory.mktemp("taobao"), size="tiny", seed=0)


def _sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _amazon_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def _csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


# ---- amazon ---------------------------------------------------------------------------------
def test_amazon_files_and_order(amazon):
    names = sorted(p.name for p in amazon.iterdir())
    assert names == sorted(amazon_file_name(c) for c in AMAZON_13)
    assert AMAZON_CATEGORIES[:6] == AMAZON_6 and set(AMAZON_CATEGORIES) == set(AMAZON_13)
    assert output_files("amazon", 6) == [amazon_file_name(c) for c in AMAZON_6]


def test_amazon_gzip_header(amazon):
    raw = (amazon / "Gift_Cards_5.json.gz").read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x08"  # gzip, deflate, FNAME set
    assert raw[4:8] == b"\0\0\0\0"  # mtime 0
    assert raw[10:].startswith(b"Gift_Cards_5.json\0")


def test_amazon_lines_parse_with_stdlib_json(amazon):
    keys, orders, total = Counter(), Counter(), 0
    for c in AMAZON_13:
        for line in _amazon_lines(amazon / amazon_file_name(c)):
            d = json.loads(line)
            total += 1
            keys.update(d.keys())
            orders[tuple(d.keys())] += 1
            assert REQUIRED <= d.keys() <= REQUIRED | OPTIONAL
            assert isinstance(d["overall"], float) and 1.0 <= d["overall"] <= 5.0
            assert isinstance(d["verified"], bool)
            assert isinstance(d["unixReviewTime"], int) and d["unixReviewTime"] % 86400 == 0
            rid, asin = d["reviewerID"], d["asin"]
            assert rid[0] == "A" and 12 <= len(rid) <= 14 and rid.isalnum() and rid.isupper()
            assert len(asin) == 10 and asin.isalnum() and (asin.startswith("B0") or asin.isdigit())
            month, day, year = d["reviewTime"].replace(",", "").split(" ")
            assert len(month) == 2 and not day.startswith("0") and len(year) == 4
            if "vote" in d:
                assert isinstance(d["vote"], str) and d["vote"].replace(",", "").isdigit()
            if "style" in d:
                assert isinstance(d["style"], dict)
                assert all(k.endswith(":") and v.startswith(" ") for k, v in d["style"].items())
            if "image" in d:
                assert all(u.startswith("https://") for u in d["image"])
    assert total == 3000  # size = review lines over all written domains
    # optional fields present on some lines, missing on many
    for k in ("vote", "style"):
        assert 0 < keys[k] < total
    assert len(orders) >= 4  # keys in varying order


def test_amazon_duplicates_and_rerated_pairs(tmp_path):
    out = synthesize("amazon", tmp_path, n_domains=2, size=20_000, seed=3)
    exact = rerated = 0
    for c in AMAZON_6[:2]:
        lines = _amazon_lines(out / amazon_file_name(c))
        exact += len(lines) - len(set(lines))
        ratings: dict[tuple, set] = {}
        for line in set(lines):
            d = json.loads(line)
            ratings.setdefault((d["reviewerID"], d["asin"]), set()).add(d["overall"])
        rerated += sum(len(r) > 1 for r in ratings.values())
    assert exact > 0 and rerated > 0
    assert exact < 0.02 * 20_000 and rerated < 0.02 * 20_000


def test_amazon_shared_population_and_five_core(tmp_path):
    out = synthesize("amazon", tmp_path, n_domains=6, size=30_000, seed=1)
    users_by_domain, user_deg, item_deg = [], Counter(), Counter()
    for c in AMAZON_6:
        us = set()
        for line in _amazon_lines(out / amazon_file_name(c)):
            d = json.loads(line)
            us.add(d["reviewerID"])
            user_deg[(c, d["reviewerID"])] += 1
            item_deg[(c, d["asin"])] += 1
        users_by_domain.append(us)
    in_several = Counter(u for us in users_by_domain for u in us)
    assert sum(n > 1 for n in in_several.values()) > 0.3 * len(in_several)
    assert np.mean([n >= 5 for n in user_deg.values()]) > 0.8
    assert np.mean([n >= 5 for n in item_deg.values()]) > 0.7


def test_amazon_domain_sizes_rich_to_sparse(amazon):
    sizes = np.array([len(_amazon_lines(amazon / amazon_file_name(c))) for c in AMAZON_CATEGORIES])
    share = sizes / sizes.sum()
    assert share[:6].mean() > 3 * share[6:].mean()
    assert 0.15 <= share.max() <= 0.35
    assert share.min() < 0.01
    prof = domain_profile("amazon")
    assert [p["name"] for p in prof] == list(AMAZON_CATEGORIES)


# ---- taobao ---------------------------------------------------------------------------------
def test_taobao_files_and_headers(taobao):
    assert sorted(p.name for p in taobao.iterdir()) == sorted(TAOBAO_FILES)
    for name, header in TAOBAO_FILES.items():
        with open(taobao / name) as f:
            assert f.readline().rstrip("\n") == header


def test_taobao_click_log(taobao):
    rows = _csv(taobao / "theme_click_log.csv")[1:]
    assert len(rows) == 3000
    for r in rows[:200]:
        assert len(r) == 7 and all(x.isdigit() for x in r)
        assert len(r[6]) == 14 and r[6].startswith("20")
    themes = list(dict.fromkeys(r[1] for r in rows))
    assert len(themes) == 30
    assert [int(t) for t in themes] != sorted(int(t) for t in themes)  # not sorted by id
    triples = Counter((r[0], r[2], r[1]) for r in rows)
    assert any(n > 1 for n in triples.values())  # repeated clicks
    pool = {(r[0], r[1]) for r in _csv(taobao / "theme_item_pool.csv")[1:]}
    assert all((r[1], r[2]) in pool for r in rows)
    # rich -> sparse, decreasing-ish in order of first appearance
    sizes = Counter(r[1] for r in rows)
    s = np.array([sizes[t] for t in themes], dtype=float) / len(rows)
    assert s[:10].mean() > 3 * s[-10:].mean()
    assert np.corrcoef(np.arange(30), s)[0, 1] < -0.5


def test_taobao_embeddings(taobao):
    for name in ("user_embedding.csv", "item_embedding.csv"):
        text = (taobao / name).read_text()
        assert '"' not in text  # one unquoted field of space-separated floats
        rows = _csv(taobao / name)[1:]
        assert len({r[0] for r in rows}) == len(rows)
        for r in rows[:50]:
            assert len(r) == 2
            vals = r[1].split(" ")
            assert len(vals) == 128
            np.array(vals, dtype=np.float64)


def test_taobao_some_clicked_lack_embeddings_but_order_survives(taobao):
    rows = _csv(taobao / "theme_click_log.csv")[1:]
    users = {r[0] for r in _csv(taobao / "user_embedding.csv")[1:]}
    items = {r[0] for r in _csv(taobao / "item_embedding.csv")[1:]}
    clicked_u, clicked_i = {r[0] for r in rows}, {r[2] for r in rows}
    miss_u, miss_i = clicked_u - users, clicked_i - items
    assert 0 < len(miss_u) < 0.1 * len(clicked_u)
    assert 0 < len(miss_i) < 0.1 * len(clicked_i)
    kept = [r for r in rows if r[0] in users and r[2] in items]
    assert len(kept) < len(rows)
    # theme numbering by first appearance is the same with or without the dropped rows
    assert list(dict.fromkeys(r[1] for r in kept)) == list(dict.fromkeys(r[1] for r in rows))


def test_taobao_purchases(taobao):
    rows = _csv(taobao / "user_item_purchase_log.csv")[1:]
    assert rows and all(len(r) == 3 and len(r[2]) == 14 for r in rows)


# ---- determinism, sizes, errors -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["amazon", "taobao"])
def test_deterministic(kind, tmp_path):
    a = _sha(synthesize(kind, tmp_path / "a", n_domains=3, size=1_500, seed=7))
    b = _sha(synthesize(kind, tmp_path / "b", n_domains=3, size=1_500, seed=7))
    c = _sha(synthesize(kind, tmp_path / "c", n_domains=3, size=1_500, seed=8))
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_no_temp_files_left(amazon, taobao):
    for folder in (amazon, taobao):
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_n_domains_and_int_size(tmp_path):
    out = synthesize("taobao", tmp_path, n_domains=10, size=2_000, seed=0)
    rows = _csv(out / "theme_click_log.csv")[1:]
    assert len(rows) == 2_000 and len({r[1] for r in rows}) == 10


def test_sizes():
    assert resolve_size("amazon", "tiny", 13) < resolve_size("amazon", "small", 13)
    assert resolve_size("taobao", "small", 30) < resolve_size("taobao", "medium", 30)
    assert resolve_size("amazon", 1234, 6) == 1234
    assert resolve_size("amazon", "paper", 6) < resolve_size("amazon", "paper", 13)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "movielens"}, "amazon, taobao"),
        ({"kind": "amazon", "size": "huge"}, "tiny, small, medium, paper"),
        ({"kind": "amazon", "size": 0}, "tiny"),
        ({"kind": "amazon", "size": 50}, "at least 260"),
        ({"kind": "amazon", "n_domains": 14}, "1 to 13"),
        ({"kind": "taobao", "n_domains": 0}, "1 to 100"),
        ({"kind": "amazon", "seed": -1}, "seed"),
    ],
)
def test_errors(kwargs, match, tmp_path):
    kind = kwargs.pop("kind")
    with pytest.raises(UserError, match=match):
        synthesize(kind, tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()
