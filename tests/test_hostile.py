"""Issue 14: mdrbench used as a careless or hostile user would (bad files, kills, concurrent
runs, bad options, a flaky network on 127.0.0.1). One test per item of the issue; each
failed before its fix. Guarantees: docs/reliability.md."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from raw_fixtures import write_amazon, write_taobao

from mdrbench.cli import main

TINY = ["--epochs", "1", "-q", "--set", "emb_dim=8", "--set", "hidden=[16]",
        "--set", "batch_size=64", "--set", "threads=1"]  # fmt: skip


def run(capsys, *args) -> tuple[int, str, str]:
    """`mdrbench ARGS` in this process: (exit status, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def user_error(capsys, *args) -> str:
    """Run; assert exit 2 with exactly one `Error:` line on stderr and no traceback."""
    code, out, err = run(capsys, *args)
    assert code == 2, (code, out, err)
    assert err.count("Error:") == 1 and err.startswith("Error: "), err
    assert "Traceback" not in err
    return err


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def cli_process(*args, **kw) -> subprocess.Popen:
    """`mdrbench ARGS` in another process (for concurrency and kills)."""
    cmd = [sys.executable, "-c", "from mdrbench.cli import main; main()", *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture(scope="module")
def raw_taobao(tmp_path_factory):
    return write_taobao(tmp_path_factory.mktemp("raw"), n_themes=10)


@pytest.fixture(scope="module")
def data(raw_taobao, tmp_path_factory):
    from mdrbench.builders.build import build_dataset

    return build_dataset("taobao-10", raw_dir=raw_taobao, out=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def results(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    code = subprocess.run(
        [sys.executable, "-c", "from mdrbench.cli import main; main()", "eval", "--dataset",
         str(data), "--seeds", "0,1,2", "--out", str(out), *TINY],
        capture_output=True, text=True,
    )  # fmt: skip
    assert code.returncode == 0, code.stderr
    return out


# ---------------------------------------------------------------- 1


def test_1_leaderboard_build_never_deletes_what_it_did_not_write(capsys, data, results, tmp_path):
    res = tmp_path / "res"
    shutil.copytree(results, res)
    before = snapshot(res)
    site_args = ["--dataset", data, "--allow-few-seeds", "--no-paper"]
    # --out the results folder itself: refused, every file still there.
    err = user_error(capsys, "leaderboard", "build", res, "--out", res, *site_args)
    assert "holds the results" in err
    assert snapshot(res) == before
    # --out a folder holding anything else (a user's notes): refused, kept.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("a week of notes")
    user_error(capsys, "leaderboard", "build", res, "--out", other, *site_args)
    assert (other / "notes.txt").read_text() == "a week of notes"
    # A new folder, then the same site again: fine (the marker says this command wrote it).
    site = tmp_path / "site"
    for _ in range(2):
        code, out, err = run(capsys, "leaderboard", "build", res, "--out", site, *site_args)
        assert code == 0, err
        assert (site / "index.html").is_file() and (site / ".mdrbench-site.json").is_file()
    # ...but not once someone put a file of their own in it.
    (site / "mine.csv").write_text("keep me")
    err = user_error(capsys, "leaderboard", "build", res, "--out", site, *site_args)
    assert "mine.csv" in err and (site / "mine.csv").read_text() == "keep me"
    # An empty folder is fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(capsys, "leaderboard", "build", res, "--out", empty, *site_args)[0] == 0


# ---------------------------------------------------------------- 2


def test_2_an_empty_raw_file_never_builds_a_mislabelled_dataset(capsys, tmp_path):
    raw = tmp_path / "raw"
    for i, cat in enumerate(("Gift Cards", "Software", "Video Games")):
        write_amazon(raw, cat, seed=i)
    (raw / "Software_5.json.gz").write_bytes(b"")
    out = tmp_path / "data"
    err = user_error(
        capsys, "build", "amazon-13", "--raw-dir", raw, "--out", out, "--offline", "-q",
        "--domains", "Gift Cards,Software,Video Games",
    )  # fmt: skip
    assert "Software_5.json.gz" in err and "empty" in err
    assert not (out / "amazon-13").exists()
    # A gzip file with no reviews in it: the same.
    import gzip

    with gzip.open(raw / "Software_5.json.gz", "wb") as f:
        f.write(b"\n\n")
    err = user_error(
        capsys, "build", "amazon-13", "--raw-dir", raw, "--out", out, "--offline", "-q",
        "--domains", "Gift Cards,Software,Video Games",
    )  # fmt: skip
    assert "Software_5.json.gz" in err and "no reviews" in err
    # A domain left with no rows can never shift the names of the others (the writer refuses).
    import polars as pl

    from mdrbench.builders.build import write_dataset as build_write
    from mdrbench.builders.specs import get_spec
    from mdrbench.errors import UserError

    spec = get_spec("amazon-13")
    sel = spec.select(["Gift Cards", "Software", "Video Games"])
    pos = pl.DataFrame(
        {"user_id": [0, 1, 0, 1], "item_id": [0, 1, 1, 0], "domain_id": [0, 0, 1, 1]},
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "domain_id": pl.Int16},
    )
    with pytest.raises(UserError, match="Video Games"):
        build_write(spec, list(sel), [0.3, 0.3, 0.3], pos, out=out)


# ---------------------------------------------------------------- 3


def test_3_eval_refuses_a_dataset_that_does_not_match_its_manifest(capsys, data, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    p = bad / "train.parquet"
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 1  # one flipped byte, same size
    p.write_bytes(bytes(b))
    err = user_error(capsys, "eval", "--dataset", bad, "--out", tmp_path / "r", *TINY)
    assert "train.parquet" in err and "manifest" in err
    assert not list((tmp_path / "r").glob("*.json"))
    # A file the manifest does not list: verify names it, eval refuses it.
    shutil.rmtree(bad)
    shutil.copytree(data, bad)
    (bad / "extra.parquet").write_bytes(b"x")
    code, _, err = run(capsys, "verify", bad)
    assert code == 1 and "extra.parquet" in err
    user_error(capsys, "eval", "--dataset", bad, "--out", tmp_path / "r", *TINY)
    # The intact dataset passes, and the second check is the cached fast path.
    from mdrbench.builders import manifest as M

    good = tmp_path / "good"
    shutil.copytree(data, good)
    calls = []
    real = M.file_sha256
    M.file_sha256 = lambda f: calls.append(Path(f).name) or real(f)
    try:
        M.check_dataset(good)
        first = [c for c in calls if c != "manifest.json"]
        calls.clear()
        M.check_dataset(good)
        second = [c for c in calls if c != "manifest.json"]
    finally:
        M.file_sha256 = real
    assert sorted(first) == sorted(json.loads((good / "manifest.json").read_text())["files"])
    assert second == []  # unchanged files: size, mtime, ctime, inode as cached


# ---------------------------------------------------------------- 5


def test_5_nothing_is_replaced_without_force(capsys, data, results, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(results, out)
    before = snapshot(out)
    # Another config into the same folder: refused before training, nothing touched.
    err = user_error(capsys, "eval", "--dataset", data, "--out", out, "--set", "lr=0.01", *TINY)
    assert "lr" in err and "--force" in err
    assert snapshot(out) == before
    # The same config again: the finished runs are kept (not rerun, not rewritten).
    code, _, err = run(capsys, "eval", "--dataset", data, "--out", out, "--seeds", "0,1,2", *TINY)
    assert code == 0, err
    assert snapshot(out) == before
    # --force replaces, and the pair stays consistent.
    code, _, err = run(
        capsys, "eval", "--dataset", data, "--out", out, "--seeds", "1", "--force",
        "--set", "lr=0.01", *TINY,
    )  # fmt: skip
    assert code == 0, err
    rec = json.loads((out / "taobao-10__mlp__alternate__seed1.json").read_text())
    assert rec["config"]["train"]["lr"] == 0.01
    from mdrbench.results import finished_result, result_path

    assert finished_result(result_path(out, "taobao-10", "mlp", "alternate", 1)) == rec
    assert not list(out.glob(".*"))  # no lock or temporary file left


def test_5_concurrent_writers_of_one_result_or_one_dataset(capsys, data, raw_taobao, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    stem = "taobao-10__mlp__alternate__seed0"
    hold = textwrap.dedent(
        """
        import sys, time
        from mdrbench.atomic import Lock
        lock = Lock(sys.argv[1], "test")
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(out / f".{stem}.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = user_error(capsys, "eval", "--dataset", data, "--out", out, *TINY)
        assert "another mdrbench process" in err and str(holder.pid) in err
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed: its lock went with it.
    assert run(capsys, "eval", "--dataset", data, "--out", out, *TINY)[0] == 0

    # Two builds of one dataset into one folder at the same time: one wins, one exits 2.
    raw = raw_taobao
    dest = tmp_path / "data"
    args = ["build", "taobao-10", "--raw-dir", raw, "--out", dest, "-q"]
    procs = [cli_process(*args) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = next(o for p, o in zip(procs, outs) if p.returncode == 2)
    assert loser[1].startswith("Error:") and (
        "another mdrbench process" in loser[1] or "already exists" in loser[1]
    )
    assert run(capsys, "verify", dest / "taobao-10")[0] == 0
    # While one build holds the lock, another (even with --force) is refused at once.
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(dest / ".taobao-10.lock")], stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = user_error(capsys, *args, "--force")
        assert "building taobao-10" in err
    finally:
        holder.kill()
        holder.wait()
    # The killed holder's lock file is reused, and a finished build leaves none behind.
    assert run(capsys, *args, "--force")[0] == 0
    assert not list(dest.glob(".*"))


def test_5_result_path_rule_is_shared(tmp_path):
    """The one rule issue 13's sweep imports: stem, path, finished pair."""
    from mdrbench.results import finished_result, result_path, result_stem
    from mdrbench.trainer import result_filename

    rec = {"dataset": {"name": "taobao-10"}, "model": "mlp", "method": "dn", "seed": 3}
    assert result_stem("taobao-10", "mlp", "dn", 3) == "taobao-10__mlp__dn__seed3"
    assert result_path(tmp_path, "taobao-10", "mlp", "dn", 3).name == result_filename(rec)
    assert finished_result(tmp_path / "nothing.json") is None
    (tmp_path / "x.json").write_text("{not json")
    assert finished_result(tmp_path / "x.json") is None
    assert os.path.exists(tmp_path / "x.json")
