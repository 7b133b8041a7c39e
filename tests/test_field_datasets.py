"""The field's datasets (builders/field/): synthetic raw files in the real format build,
`stats` shows the domains in Scenario-Wise Rec's order, `verify` passes; recipe details;
MovieLens on the real users.dat and movies.dat."""

import json
from pathlib import Path

import pytest

from mdrbench.builders.field import FIELD_DATASETS, synth_field
from mdrbench.cli import main

SWR_ORDER = {
    "movielens-1m": ["age 1-24", "age 25-34", "age 35+"],
    "ali-ccp": ["field 301 #1", "field 301 #2", "field 301 #3"],
    "kuairand-1k": ["tab #0", "tab #1", "tab #2", "tab #4", "tab #6"],
    "douban": ["book", "music", "movie"],
    "mind": ["news", "lifestyle", "sports", "finance"],
    "amazon-swr": ["Beauty", "Clothing Shoes and Jewelry", "Health and Personal Care"],
}


def run(capsys, *argv):
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_every_field_dataset_has_its_order_pinned():
    assert sorted(SWR_ORDER) == sorted(FIELD_DATASETS.names())


@pytest.mark.parametrize("name", FIELD_DATASETS.names())
def test_synth_build_stats_verify(capsys, tmp_path, name):
    raw = tmp_path / "raw"
    run(capsys, "synth", name, "--out", str(raw), "--size", "tiny")
    run(capsys, "build", name, "--raw-dir", str(raw), "--out", str(tmp_path / "o"), "--offline",
        "-q")  # fmt: skip
    path = tmp_path / "o" / name
    m = json.loads((path / "manifest.json").read_text())
    assert [d["name"] for d in m["domains"]] == SWR_ORDER[name]
    assert all(d["n_pos"] > 0 and d["n_neg"] > 0 for d in m["domains"])
    assert all(f["kind"] in ("categorical", "dense") for f in m["fields"])
    stats = run(capsys, "stats", str(path))
    at = [stats.index(f"| {d} ") for d in SWR_ORDER[name]]
    assert at == sorted(at)
    assert "OK" in run(capsys, "verify", str(path))
    card = (path / "README.md").read_text()
    assert "## Licence" in card and "li2024scenario" in card
    # Same raw files and seed: the same bytes.
    run(capsys, "build", name, "--raw-dir", str(raw), "--out", str(tmp_path / "o2"), "--offline",
        "-q")  # fmt: skip
    for f in path.iterdir():
        assert f.read_bytes() == (tmp_path / "o2" / name / f.name).read_bytes(), f.name


def test_movielens_recipe(tmp_path):
    from mdrbench.builders.build import build_dataset

    raw = synth_field("movielens-1m", tmp_path / "raw", size="tiny")
    path = build_dataset("movielens-1m", raw_dir=raw, out=tmp_path / "o", offline=True)
    ratings = [int(line.split("::")[2]) for line in (raw / "ratings.dat").read_text().split()]
    m = json.loads((path / "manifest.json").read_text())
    assert m["totals"]["n_samples"] == len(ratings)  # every rating is a sample
    assert m["totals"]["n_pos"] == sum(r > 3 for r in ratings)  # label: rating > 3
    assert m["split"]["rule"] == "random"
    assert [(f["name"], f["owner"], f["kind"]) for f in m["fields"]] == [
        ("gender", "user", "categorical"), ("occupation", "user", "categorical"),
        ("zip", "user", "categorical"), ("genre", "item", "categorical"),
        ("age", "user", "dense")]  # fmt: skip
    n = m["totals"]["n_samples"]
    assert [m["totals"][k] for k in ("n_train", "n_val")] == [int(0.8 * n), int(0.1 * n)]


def test_movielens_bad_line_names_file_and_line(tmp_path):
    from mdrbench.builders.build import build_dataset
    from mdrbench.errors import UserError

    raw = synth_field("movielens-1m", tmp_path / "raw", size="tiny")
    lines = (raw / "ratings.dat").read_text().splitlines()
    lines[4] = "1::2::x::3"
    (raw / "ratings.dat").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"ratings.dat: line 5: .*integers"):
        build_dataset("movielens-1m", raw_dir=raw, out=tmp_path / "o", offline=True)
    path = build_dataset("movielens-1m", raw_dir=raw, out=tmp_path / "o", offline=True,
                         on_bad_lines="skip")  # fmt: skip
    m = json.loads((path / "manifest.json").read_text())
    assert m["raw_files"]["ratings.dat"]["n_bad_lines"] == 1


ML = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-1m"


@pytest.mark.realdata
@pytest.mark.skipif(not (ML / "users.dat").is_file(), reason=f"real data absent ({ML})")
def test_real_movielens_users_per_domain(tmp_path):
    """The real users.dat and movies.dat plus a generated ratings.dat in ml-1m's format:
    the three domains hold 1,325 / 2,096 / 2,619 users, as Scenario-Wise Rec's README says."""
    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.field.movielens import write_ratings

    raw = tmp_path / "raw"
    raw.mkdir()
    for f in ("users.dat", "movies.dat"):
        (raw / f).symlink_to(ML / f)
    write_ratings(raw)
    path = build_dataset("movielens-1m", raw_dir=raw, out=tmp_path / "o", offline=True)
    m = json.loads((path / "manifest.json").read_text())
    assert [d["n_users"] for d in m["domains"]] == [1325, 2096, 2619]
    assert m["totals"]["n_users"] == 6040 and m["totals"]["n_items"] <= 3883
    assert m["raw_files"]["movies.dat"]["bytes"] == 171_308


def test_douban_time_bins_match_pandas_cut():
    """pd.cut(t, pd.date_range('2005-03', '2018-04', freq='M')), worked by hand."""
    import polars as pl

    from mdrbench.builders.field.douban import time_bins

    t = ["2007-07-10", "2005-03-31", "2005-04-01", "2005-04-30", "2005-04-30 12:00:00",
         "2018-03-31", "2018-04-01", "garbage", "2004-01-01"]
    assert time_bins(pl.Series(t)).to_list() == [27, None, 0, 0, 1, 155, None, None, None]


def test_movielens_download_extracts_the_release(tmp_path, monkeypatch):
    """A missing file is taken from ml-1m.zip, fetched once into --raw-dir (the download
    itself is builders/download.py's, tested there; here it copies a local archive)."""
    import zipfile

    from mdrbench.builders import download as dl
    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.field.movielens import URL

    src = synth_field("movielens-1m", tmp_path / "src", size="tiny")
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in ("users.dat", "movies.dat", "ratings.dat"):
            z.write(src / f, f"ml-1m/{f}")
    calls = []

    def fake_download(urls, dest, **kw):
        calls.append(urls)
        dest.write_bytes(archive.read_bytes())
        assert kw["check"](dest) is None
        return ""

    monkeypatch.setattr(dl, "download", fake_download)
    raw = tmp_path / "raw"
    path = build_dataset("movielens-1m", raw_dir=raw, out=tmp_path / "o")
    assert calls == [[URL]]
    assert (raw / "ratings.dat").read_bytes() == (src / "ratings.dat").read_bytes()
    assert json.loads((path / "manifest.json").read_text())["totals"]["n_users"] > 0


def test_field_dataset_options(tmp_path):
    from mdrbench.builders.build import build_dataset
    from mdrbench.errors import UserError

    raw = synth_field("mind", tmp_path / "raw", size="tiny")
    path = build_dataset("mind", raw_dir=raw, out=tmp_path / "o", domains=["sports", "news"],
                         offline=True)  # fmt: skip
    m = json.loads((path / "manifest.json").read_text())
    assert [d["name"] for d in m["domains"]] == ["news", "sports"]  # spec order kept
    with pytest.raises(UserError, match="--ctr-ratios"):
        build_dataset("mind", raw_dir=raw, out=tmp_path / "o2", ctr_ratios=[0.2] * 4)
    with pytest.raises(UserError, match="--offline"):
        build_dataset("mind", raw_dir=tmp_path / "empty", out=tmp_path / "o3", offline=True)
    with pytest.raises(UserError, match="cannot be downloaded by a program: pass --raw-dir"):
        build_dataset("ali-ccp", out=tmp_path / "o4")
    with pytest.raises(UserError, match="did you mean 'movielens-1m'"):
        synth_field("movielens1m", tmp_path / "x")
