"""`mdrbench build custom` and the side-field contract (docs/format.md, "Side fields")."""

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from custom_fixtures import custom_table, write_custom

from mdrbench.builders.manifest import verify
from mdrbench.builders.table import ordered_split, random_split
from mdrbench.cli import main

ARGS = ["--user-col", "user", "--item-col", "item", "--domain-col", "domain"]
FIELDS = ["--features", "city,brand", "--dense", "price"]


def build(capsys, src, out, *extra, name="shop"):
    """Run `mdrbench build custom`; return (exit code, stderr)."""
    argv = ["build", "custom", "--from", str(src), *ARGS, "--name", name, "--out", str(out),
            "-q", *extra]  # fmt: skip
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def table_csv(tmp_path_factory):
    return write_custom(tmp_path_factory.mktemp("custom") / "logs.csv")


def test_build_declares_fields_and_is_byte_identical(capsys, table_csv, tmp_path):
    for run in ("a", "b"):
        code, err = build(capsys, table_csv, tmp_path / run, "--label-col", "clicked", *FIELDS)
        assert code == 0, err
    m = json.loads((tmp_path / "a" / "shop" / "manifest.json").read_text())
    assert [(f["name"], f["kind"], f["owner"], f["cardinality"]) for f in m["fields"]] == [
        ("city", "categorical", "user", 4),
        ("brand", "categorical", "item", 7),
        ("price", "dense", "item", None),
    ]
    assert [d["name"] for d in m["domains"]] == ["books", "music", "video"]
    assert m["kind"] == "custom" and m["split"]["rule"] == "random"
    assert m["totals"]["n_samples"] == 1500
    a, b = tmp_path / "a" / "shop", tmp_path / "b" / "shop"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for f in a.iterdir():
        assert f.read_bytes() == b.joinpath(f.name).read_bytes(), f.name
    assert verify(a) == []
    card = (a / "README.md").read_text()
    assert "| `city` | categorical | user | 4 | `user_fields.parquet` |" in card
    # Stored values: codes of the sorted vocabulary; price min-max scaled.
    users = pl.read_parquet(a / "user_fields.parquet")
    assert users["user_id"].to_list() == list(range(m["totals"]["n_users"]))
    src = custom_table()
    city_of = dict(zip(src["user"], src["city"]))
    keys = sorted(set(src["user"]))
    vocab = sorted(set(src["city"]))
    assert [vocab[c] for c in users["city"]] == [city_of[k] for k in keys]
    items = pl.read_parquet(a / "item_fields.parquet")
    assert 0.0 <= items["price"].min() and items["price"].max() == 1.0


def test_batches_carry_fields_by_name(capsys, table_csv, tmp_path):
    from mdrbench.data import load_dataset

    code, err = build(capsys, table_csv, tmp_path, "--label-col", "clicked", *FIELDS,
                      "--dense", "price,dwell")  # fmt: skip
    assert code == 0, err
    data = load_dataset(tmp_path / "shop")
    assert [(f.name, f.owner) for f in data.info.fields] == [
        ("city", "user"), ("brand", "item"), ("price", "item"), ("dwell", "row")]
    batch = data.train.take(slice(0, 5))
    users = pl.read_parquet(tmp_path / "shop" / "user_fields.parquet")["city"].to_numpy()
    assert batch["city"].tolist() == users[batch["user_id"].numpy()].tolist()
    rows = pl.read_parquet(tmp_path / "shop" / "train.parquet")
    assert rows.columns == ["user_id", "item_id", "domain_id", "label", "dwell"]
    assert np.allclose(batch["dwell"].numpy(), rows["dwell"].to_numpy()[:5])
    assert batch["price"].dtype.is_floating_point and not batch["brand"].dtype.is_floating_point


def test_implicit_samples_negatives_and_splits(capsys, tmp_path):
    src = write_custom(tmp_path / "t.parquet")
    for split in ("authors", "time", "random"):
        extra = ["--time-col", "ts"] if split == "time" else []
        code, err = build(capsys, src, tmp_path / split, "--implicit", "--split", split,
                          "--negatives-per-positive", "2", "--features", "city,brand", *extra)  # fmt: skip
        assert code == 0, err
        m = json.loads((tmp_path / split / "shop" / "manifest.json").read_text())
        n_pos = custom_table().unique(["user", "item", "domain"]).height
        assert m["totals"]["n_pos"] == n_pos
        assert all(d["ctr_ratio"] == 0.5 and d["n_neg"] > 0 for d in m["domains"])
    for split, rule in (("authors", "mamdr-per-user"), ("time", "time-per-user"),
                        ("random", "random")):  # fmt: skip
        m = json.loads((tmp_path / split / "shop" / "manifest.json").read_text())
        assert m["split"]["rule"] == rule
    # A row field cannot go with sampled negatives.
    code, err = build(capsys, src, tmp_path / "bad", "--implicit", "--dense", "dwell")
    assert code == 2 and "dwell" in err and "row field" in err


def test_time_split_is_chronological_per_user():
    user = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    time = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 5, 1])
    split = ordered_split(user, time)
    assert split[:10].tolist() == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]  # latest row tests
    assert split[10:].tolist() == [0, 0]  # 2 rows: round(1.6) = 2 rows train
    assert sorted(np.bincount(random_split(1001, np.random.default_rng(0)))) == [100, 101, 800]


@pytest.mark.parametrize("case", ["missing", "null_id", "no_rows", "label", "mixed"])
def test_bad_input_exits_2_naming_column_and_row(capsys, tmp_path, case):
    df = custom_table(rows=200)
    extra = ["--label-col", "clicked"]
    if case == "missing":
        extra = ["--label-col", "clicks"]
        want = "no column 'clicks'"
    elif case == "null_id":
        df = df.with_columns(pl.when(pl.int_range(df.height) == 6).then(None)
                             .otherwise(pl.col("user")).alias("user"))  # fmt: skip
        want = "column 'user', row 7"
    elif case == "no_rows":
        extra += ["--domains", "books,games"]
        want = "domain 'games'"
    elif case == "label":
        df = df.with_columns(pl.when(pl.int_range(df.height) == 11).then(2)
                             .otherwise(pl.col("clicked")).alias("clicked"))  # fmt: skip
        want = "column 'clicked', row 12"
    else:  # an item id that is text among numbers (a CSV column of mixed types)
        df = df.with_columns(pl.col("item").cast(pl.String))
        df = df.with_columns(pl.when(pl.int_range(df.height) == 4).then(pl.lit("x17"))
                             .otherwise(pl.col("item")).alias("item"))  # fmt: skip
        want = "column 'item', row 5"
    src = tmp_path / "t.csv"
    df.write_csv(src)
    code, err = build(capsys, src, tmp_path / "out", *extra)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), err
    assert want in lines[0], lines[0]
    if case == "mixed":
        assert "mixed types" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_options_of_custom_only(capsys, tmp_path):
    try:
        main(["build", "amazon-6", "--user-col", "u", "--out", str(tmp_path)])
    except SystemExit as exc:
        assert exc.code == 2
    assert "--user-col" in capsys.readouterr().err


def test_mamdr_benchmark_bytes_unchanged(tmp_path):
    """The five MAMDR builds keep their bytes with side fields in the contract: these are
    the files of a tiny synthetic amazon-6 and taobao-10 built before issue 23."""
    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.synth import synthesize

    pinned = {
        "amazon-6": {
            "train.parquet": "fcd0cfc7e2b78bb4572c915295b2dda64b0ddd858c29859ded66c6b1a05f7a75",
            "val.parquet": "40ec30febabbf4e5873f182ecea1583354840be54efc0602046ba5b38096b1ac",
            "test.parquet": "7de2bb0878cd9ba3da6ef8bf2622bdc0b8a2394dd0fdf6390f4d5c53c8bba644",
            "README.md": "09809f92e92de7c1f7e2b43b1b8f617c490d694f441c16de20065c7f38407077",
            "manifest.json": "b6145d24de087dda7205693c152a34b369dc28d587a2ed821c33768bbf7786c8",
        },
        "taobao-10": {
            "train.parquet": "12401b7d8f852489209cbd7ef68f8e447a48c353e63b3d2a06f7b155cb379310",
            "user_features.parquet":
                "e7e3eaf3b272d1f4d908b038cdb0fad5b6dce7ec0d3e98c45355e16d8eab06a4",
            "item_features.parquet":
                "f9070fbe950a0ede8ad49b9889a6f59e37cf2569d9587b0ac9d0112869084a07",
            "README.md": "175dc19af94933c03d5a1a77cb63419c31bf9f0b6369b73f153eccdf5f2f7527",
            "manifest.json": "92f080fcbdad1c6430935cd9896143226be958fe180b8e7c983ba5f4423ae0e0",
        },
    }  # fmt: skip
    for name, kind, n in (("amazon-6", "amazon", 6), ("taobao-10", "taobao", 10)):
        raw = synthesize(kind, tmp_path / kind, n_domains=n, size="tiny")
        path = build_dataset(name, raw_dir=raw, out=tmp_path / "out", offline=True)
        got = {f: hashlib.sha256((path / f).read_bytes()).hexdigest() for f in pinned[name]}
        assert got == pinned[name], name
        assert "fields" not in json.loads((path / "manifest.json").read_text())
        assert not list(Path(path).glob("*_fields.parquet"))


def test_api_and_hub_card_declare_fields(capsys, table_csv, tmp_path):
    import mdrbench
    from mdrbench import hub

    code, err = build(capsys, table_csv, tmp_path, "--label-col", "clicked", *FIELDS,
                      "--dense", "price,dwell")  # fmt: skip
    assert code == 0, err
    ds = mdrbench.load_dataset(tmp_path / "shop")
    assert [f["name"] for f in ds.fields] == ["city", "brand", "price", "dwell"]
    assert ds.field_table("item").columns == ["item_id", "brand", "price"]
    assert "dwell" in ds.split("val").columns
    layout = hub.prepare(tmp_path / "shop", "me/shop")
    meta = hub.card_metadata(layout)
    assert {"name": "dwell", "dtype": "float32"} in meta["dataset_info"][0]["features"]
    assert [c["config_name"] for c in meta["configs"]] == [
        "shop", "shop-user-fields", "shop-item-fields"]
    card = hub.hub_card(layout)
    assert "| `brand` | categorical | item | 7 |" in card and "no sampled negatives" in card
    assert "publisher's own data" in hub.licence_file(layout.datasets)


def test_every_model_trains_on_a_custom_build(capsys, table_csv, tmp_path):
    """Two categorical side fields and one dense: every registered model, under alternate
    and MAMDR (one epoch, small embeddings)."""
    import math

    import mdrbench
    from mdrbench.data import load_dataset
    from mdrbench.models import MODELS

    code, err = build(capsys, table_csv, tmp_path, "--label-col", "clicked", *FIELDS)
    assert code == 0, err
    data = load_dataset(tmp_path / "shop")
    for model in MODELS:
        for method in ("alternate", "mamdr"):
            res = mdrbench.train(data, model, method, epochs=1, emb_dim=8, threads=1)
            test = res.record["metrics"]["test"]
            assert sorted(test["domains"]) == ["books", "music", "video"], (model, method)
            assert math.isfinite(test["auc_mean"]), (model, method)


def test_given_labels_time_split_is_chronological(capsys, tmp_path):
    src = custom_table().with_columns(pl.int_range(pl.len()).alias("row"))  # a row marker
    src.write_csv(tmp_path / "t.csv")
    code, err = build(capsys, tmp_path / "t.csv", tmp_path, "--label-col", "clicked",
                      "--split", "time", "--time-col", "ts", "--dense", "row")  # fmt: skip
    assert code == 0, err
    path = tmp_path / "shop"
    assert json.loads((path / "manifest.json").read_text())["split"]["rule"] == "time-per-user"
    n = src.height
    split = np.full(n, -1)
    for s, name in enumerate(("train", "val", "test")):
        rows = pl.read_parquet(path / f"{name}.parquet")["row"].to_numpy()  # scaled to [0, 1]
        split[np.round(rows.astype(np.float64) * (n - 1)).astype(int)] = s
    df = src.with_columns(split=pl.Series(split))
    assert (df["split"] >= 0).all()
    per_user = df.group_by("user").agg(
        pl.col("ts").filter(pl.col("split") == 0).max().alias("last_train"),
        pl.col("ts").filter(pl.col("split") == 2).min().alias("first_test"))  # fmt: skip
    assert (per_user["last_train"] <= per_user["first_test"]).all()


def test_every_model_embeds_the_side_fields(capsys, table_csv, tmp_path):
    """Each side field is one more field of every model: categorical ones embedded (their
    own sparse tables), the dense one projected; changing any field's value changes the
    logits; the new tables are under emb_l2 (the wide part's under linear_l2) and MAMDR's
    specific_params=all covers them like the id tables."""
    import torch

    import mdrbench
    from mdrbench.data import load_dataset
    from mdrbench.frameworks.base import (
        embedding_param_names,
        sparse_param_names,
        specific_param_names,
    )
    from mdrbench.models import MODELS

    code, err = build(capsys, table_csv, tmp_path, "--label-col", "clicked", *FIELDS)
    assert code == 0, err
    data = load_dataset(tmp_path / "shop")
    batch = data.test.take(slice(0, 64))
    changed = {"city": (batch["city"] + 1) % 4, "brand": (batch["brand"] + 1) % 7,
               "price": batch["price"] + 0.5}  # fmt: skip
    tables = {"inputs.side.0.weight", "inputs.side.1.weight"}
    for name in MODELS:
        torch.manual_seed(0)
        model = MODELS.get(name)(data.info, emb_dim=8, emb_l2=1e-5)
        assert model.inputs.names == ("user", "item", "domain", "city", "brand", "price"), name
        assert model.inputs.side[0].num_embeddings == 4 and model.inputs.side[1].num_embeddings == 7
        assert tables <= embedding_param_names(model) & sparse_param_names(model), name
        assert tables | {"inputs.dense_weight"} <= set(specific_param_names(model, "all")), name
        assert {n: lam for n, lam in model.l2_penalties().items() if n in tables} == {
            t: 1e-5 for t in tables}, name  # fmt: skip
        model.eval()
        with torch.no_grad():
            base = model(batch)
            for field, values in changed.items():
                assert not torch.equal(model({**batch, field: values}), base), (name, field)
    deepfm = MODELS.get("deepfm")(data.info, emb_dim=8, linear_l2=1e-3)
    assert {"inputs.linear_side.0.weight", "inputs.linear_side.1.weight",
            "inputs.linear_dense"} <= set(deepfm.l2_penalties())  # fmt: skip
    res = mdrbench.train(data, "deepfm", "mamdr", epochs=1, emb_dim=8, threads=1,
                         specific_params="all")  # fmt: skip
    assert len(res.record["metrics"]["test"]["domains"]) == 3


def test_no_side_fields_no_new_parameters(amazon, taobao):
    """A dataset without side fields builds the parameters it did before they existed (so
    the five benchmarks' results do not move): no side table, no dense projection."""
    from mdrbench.models import MODELS

    for data in (amazon, taobao):
        for name in MODELS:
            model = MODELS.get(name)(data.info, emb_dim=8)
            extra = [n for n, _ in model.named_parameters() if "side" in n or "dense" in n]
            assert extra == [], (name, extra)
            assert model.inputs.names == ("user", "item", "domain"), name
