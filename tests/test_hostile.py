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
    """Run; assert exit 2 with exactly one `Error:` line on stderr and no traceback (click's
    own option errors put a usage line before it)."""
    code, out, err = run(capsys, *args)
    assert code == 2, (code, out, err)
    assert err.count("Error:") == 1 and "\nError: " in "\n" + err, err
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
    # ...or a folder inside it (the site's JSON files would be read as results next time).
    assert "inside the results" in user_error(
        capsys, "leaderboard", "build", res, "--out", res / "site", *site_args
    )
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
    assert not out.exists()  # nothing written, not even the --out folder it would have made
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
    assert not (tmp_path / "r").exists()  # the refused eval left no empty --out behind
    (tmp_path / "r" / "keep").mkdir(parents=True)  # a folder that was there stays
    user_error(capsys, "eval", "--dataset", bad, "--out", tmp_path / "r" / "keep" / "x", *TINY)
    assert [p.name for p in (tmp_path / "r").rglob("*")] == ["keep"]
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
    # The Python API writes as eval does: another config is refused unless force=True.
    import mdrbench
    from mdrbench.errors import UserError

    kw = {"seed": 2, "out": out, "epochs": 1, "emb_dim": 8, "hidden": [16], "threads": 1}
    with pytest.raises(UserError, match="another config"):
        mdrbench.train(str(data), "mlp", "alternate", lr=0.05, **kw)
    assert snapshot(out)["taobao-10__mlp__alternate__seed2.json"] == before[
        "taobao-10__mlp__alternate__seed2.json"]  # fmt: skip
    mdrbench.train(str(data), "mlp", "alternate", lr=0.05, force=True, **kw)
    rec = json.loads((out / "taobao-10__mlp__alternate__seed2.json").read_text())
    assert rec["config"]["train"]["lr"] == 0.05


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


# ---------------------------------------------------------------- 4


def test_4_non_finite_values_never_get_in(capsys, data, raw_taobao, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(raw_taobao, raw)
    p = raw / "user_embedding.csv"
    lines = p.read_text().splitlines()
    for i, bad in ((1, "nan"), (2, "inf"), (3, "1e400")):
        uid, emb = lines[i].split(",")
        lines[i] = f"{uid},{bad} " + " ".join(emb.split(" ")[1:])
    p.write_text("\n".join(lines) + "\n")
    out = tmp_path / "data"
    err = user_error(capsys, "build", "taobao-10", "--raw-dir", raw, "--out", out, "-q")
    assert "user_embedding.csv: line 2" in err and "finite" in err and "(3 such lines)" in err
    code, _, err = run(
        capsys, "build", "taobao-10", "--raw-dir", raw, "--out", out, "-q",
        "--on-bad-lines", "skip",
    )  # fmt: skip
    assert code == 0, err
    m = json.loads((out / "taobao-10" / "manifest.json").read_text())
    assert m["raw_files"]["user_embedding.csv"]["n_bad_lines"] == 3
    # A diverging run is an Error, not a traceback, and writes nothing.
    r = tmp_path / "r"
    err = user_error(capsys, "eval", "--dataset", data, "--out", r, *TINY, "--set", "lr=1e20")
    assert "diverged" in err and "lr" in err
    assert not list(r.glob("*.json")) and not list(r.glob("*.parquet"))


# ---------------------------------------------------------------- 6


def test_6_errors_not_tracebacks(capsys, data, raw_taobao, tmp_path, monkeypatch):
    impossible = "/proc/mdrbench-cannot-write-here"  # also for root, who ignores chmod
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for bad in (impossible, a_file):
        assert "--out" in user_error(
            capsys, "build", "taobao-10", "--raw-dir", raw_taobao, "--out", bad
        )
        assert "--out" in user_error(capsys, "eval", "--dataset", data, "--out", bad, *TINY)
        assert "--out" in user_error(capsys, "synth", "taobao", "--size", "tiny", "--out", bad)
        assert "--out" in user_error(capsys, "conflict", "--dataset", data, "--out", bad)
    user_error(capsys, "publish", data, "--repo-id", "a/b", "--dry-run", f"{impossible}/x")
    for setting in ("dropout=2", "init_std=-1", "hidden=[-3]", "lr=inf", "lr=1e38"):
        err = user_error(capsys, "eval", "--dataset", data, "--out", tmp_path, *TINY,
                         "--set", setting)  # fmt: skip
        assert setting.split("=")[0] in err
    assert "--seeds" in user_error(
        capsys, "eval", "--dataset", data, "--seeds", "99999999999999999999", *TINY
    )
    assert "--seed" in user_error(
        capsys, "build", "taobao-10", "--raw-dir", raw_taobao, "--out", tmp_path, "--seed", "-1"
    )
    assert "size" in user_error(
        capsys, "synth", "amazon", "--size", "99999999999999", "--out", tmp_path / "s"
    )
    assert not (tmp_path / "s").exists()
    binary = tmp_path / "t" / "x.json"
    binary.parent.mkdir()
    binary.write_bytes(b"\x00\xff\xfe\x80")
    assert "x.json" in user_error(capsys, "table", binary.parent)
    binary.write_text(json.dumps({"schema_version": 1, "dataset": {"name": "x"}, "model": "m",
                                  "method": "a", "seed": 0, "metrics": {}}))  # fmt: skip
    assert "not a valid result" in user_error(capsys, "table", binary.parent)
    half = tmp_path / "half"
    half.mkdir()
    (half / "manifest.json").write_text('{"name": "x", "domains": [], "totals": {}, "files": {}}')
    assert "manifest" in user_error(capsys, "stats", half)
    assert "ORG/NAME" in user_error(capsys, "download", "org/<script>", "--out", tmp_path)

    # A Hub that is unreachable, or that cuts the connection: Error lines, in a subprocess
    # so huggingface_hub reads HF_ENDPOINT.
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def cut():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()  # no response at all

    threading.Thread(target=cut, daemon=True).start()
    port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()
    try:
        for endpoint in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dead}"):
            env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"),
                       HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="5",
                       HF_HUB_DOWNLOAD_TIMEOUT="5")  # fmt: skip
            env.pop("HF_HUB_OFFLINE", None)
            p = cli_process("download", "org/name", "--out", tmp_path / "dl", env=env)
            _, err = p.communicate(timeout=120)
            assert p.returncode == 2, err
            assert err.startswith("Error: downloading org/name failed") and "Traceback" not in err
            assert "network" in err
    finally:
        listener.close()
    assert not list((tmp_path / "dl").iterdir())


# ---------------------------------------------------------------- 7


def test_7_smaller_holes(capsys, data, results, raw_taobao, tmp_path, monkeypatch):
    # --ctr-ratios inf / 1e9: refused (0 negatives); NaN or 99 Amazon ratings are bad lines.
    for r in ("inf", "1e9", "nan"):
        user_error(capsys, "build", "taobao-10", "--raw-dir", raw_taobao, "--out", tmp_path,
                   "--ctr-ratios", ",".join([r] * 10))  # fmt: skip
    for setting in ("dropout=-0.5", "emb_dim=0", "hidden=[0]"):
        user_error(capsys, "eval", "--dataset", data, "--out", tmp_path, *TINY, "--set", setting)
    assert "1000" in user_error(capsys, "eval", "--dataset", data, "--seeds", "0-100000000")
    raw = tmp_path / "rawa"
    write_amazon(raw, "Gift Cards", extra_lines=[
        '{"reviewerID": "AX", "asin": "BX", "overall": NaN}',
        '{"reviewerID": "AY", "asin": "BY", "overall": 99}',
    ])  # fmt: skip
    err = user_error(capsys, "build", "amazon-13", "--raw-dir", raw, "--out", tmp_path / "d",
                     "--domains", "Gift Cards", "--offline", "-q")  # fmt: skip
    assert "Gift_Cards_5.json.gz: line 152" in err
    code, _, err = run(capsys, "build", "amazon-13", "--raw-dir", raw, "--out", tmp_path / "d",
                       "--domains", "Gift Cards", "--offline", "-q", "--on-bad-lines", "skip")  # fmt: skip
    assert code == 0, err
    m = json.loads((tmp_path / "d" / "amazon-13" / "manifest.json").read_text())
    assert m["raw_files"]["Gift_Cards_5.json.gz"]["n_bad_lines"] == 2

    # A Taobao ragged row, and an embedding id given again with another vector: bad lines.
    tb = tmp_path / "tb"
    shutil.copytree(raw_taobao, tb)
    log = (tb / "theme_click_log.csv").read_text().splitlines()
    log[3] = ",".join(log[3].split(",")[:4])
    (tb / "theme_click_log.csv").write_text("\n".join(log) + "\n")
    emb = (tb / "item_embedding.csv").read_text().splitlines()
    iid = emb[1].split(",")[0]
    emb.append(f"{iid}," + " ".join(["0.5"] * 128))  # same id, another vector
    emb.append(emb[2])  # an exact repeat: harmless
    (tb / "item_embedding.csv").write_text("\n".join(emb) + "\n")
    err = user_error(capsys, "build", "taobao-10", "--raw-dir", tb, "--out", tmp_path / "t")
    assert "theme_click_log.csv: line 4: 4 fields" in err
    code, _, err = run(capsys, "build", "taobao-10", "--raw-dir", tb, "--out", tmp_path / "t",
                       "-q", "--on-bad-lines", "skip")  # fmt: skip
    assert code == 0, err
    m = json.loads((tmp_path / "t" / "taobao-10" / "manifest.json").read_text())
    assert m["raw_files"]["theme_click_log.csv"]["n_bad_lines"] == 1
    assert m["raw_files"]["item_embedding.csv"]["n_bad_lines"] == 1

    # validate of a folder without results is an Error, not OK.
    (tmp_path / "empty").mkdir()
    assert "no result files" in user_error(capsys, "validate", tmp_path / "empty")

    # A --force build killed between its two renames: the old copy comes back.
    d = tmp_path / "k"
    shutil.copytree(data, d / "taobao-10")
    before = snapshot(d / "taobao-10")
    pid = dead_pid()
    os.replace(d / "taobao-10", d / f".taobao-10.old-{pid}")
    (d / f".taobao-10.tmp-{pid}").mkdir()  # the new one, never renamed
    code, out, err = run(capsys, "verify", d / "taobao-10")
    assert code == 0, err
    assert snapshot(d / "taobao-10") == before
    code, _, err = run(capsys, "build", "taobao-10", "--raw-dir", raw_taobao, "--out", d, "-q")
    assert code == 2 and "already exists" in err  # the restored one is protected again
    code, _, err = run(capsys, "build", "taobao-10", "--raw-dir", raw_taobao, "--out", d, "-q",
                       "--force")  # fmt: skip
    assert code == 0 and sorted(p.name for p in d.iterdir()) == ["taobao-10"]

    # A kill between the predictions and the JSON of a --force rerun: no pair validate
    # rejects (the old JSON went first), and a rerun completes it.
    from mdrbench import runs as train_cli
    from mdrbench.results import finished_result, result_path

    r = tmp_path / "r"
    shutil.copytree(results, r)
    path = result_path(r, "taobao-10", "mlp", "alternate", 0)
    real = train_cli._replace_file

    def killed(p, write):
        if p.suffix == ".json":
            raise KeyboardInterrupt  # as a kill -9 right before the JSON's rename
        real(p, write)

    monkeypatch.setattr(train_cli, "_replace_file", killed)
    code, _, _ = run(capsys, "eval", "--dataset", data, "--out", r, "--seeds", "0", "--force",
                     "--set", "lr=0.01", *TINY)  # fmt: skip
    assert code == 130  # interrupted
    monkeypatch.setattr(train_cli, "_replace_file", real)
    assert not path.exists() and finished_result(path) is None
    code, out, err = run(capsys, "validate", r, "--dataset", data, "--min-seeds", "1")
    assert code == 0, out + err
    assert run(capsys, "eval", "--dataset", data, "--out", r, "--seeds", "0", *TINY)[0] == 0
    assert finished_result(path) is not None
    assert run(capsys, "validate", r, "--dataset", data, "--min-seeds", "1")[0] == 0

    # Hub download of a repo holding a file its manifest does not list: nothing kept.
    import huggingface_hub

    def fake_snapshot(repo_id, repo_type, revision, local_dir):
        shutil.copytree(data, Path(local_dir) / "data" / "taobao-10")
        (Path(local_dir) / "data" / "taobao-10" / "surprise.py").write_text("print('hi')")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    err = user_error(capsys, "download", "org/name", "--out", tmp_path / "hub")
    assert "surprise.py" in err and not (tmp_path / "hub" / "taobao-10").exists()


def test_7_downloads_never_keep_a_page_or_a_cut_body(tmp_path, monkeypatch):
    """An HTML error page, or a body cut short with no Content-Length: never kept under the
    final name; the next URL is tried; a good gzip is kept."""
    import gzip
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mdrbench.builders import download as dl
    from mdrbench.builders import specs
    from mdrbench.errors import UserError

    good = gzip.compress(b'{"reviewerID": "A", "asin": "B", "overall": 5.0}\n' * 500, mtime=0)
    files = {"/orig/Digital_Music_5.json.gz": b"<!DOCTYPE html><html>Not here</html>",
             "/mirror/Digital_Music_5.json.gz": good[: len(good) // 2]}  # fmt: skip

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # no Content-Length: the body ends when the socket does

        def log_message(self, *a):
            pass

        def do_GET(self):
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setattr(specs, "AMAZON_URL", base + "/orig/")
    monkeypatch.setattr(specs, "AMAZON_MIRROR", base + "/mirror/")
    try:
        with pytest.raises(UserError) as err:
            dl.ensure_amazon_files(["Digital Music"], tmp_path, progress=False)
        assert "not a gzip file" in str(err.value) and "truncated" in str(err.value)
        assert list(tmp_path.iterdir()) == []  # neither under the final name nor as .part
        files["/mirror/Digital_Music_5.json.gz"] = good
        got = dl.ensure_amazon_files(["Digital Music"], tmp_path, progress=False)
        assert got["Digital Music"].read_bytes() == good
    finally:
        httpd.shutdown()
        httpd.server_close()


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amazon2018"


@pytest.mark.realdata
@pytest.mark.skipif(not (SHARED / "SHA256SUMS").is_file(), reason="../shared/data absent")
def test_7_pinned_amazon_files_match_the_real_ones():
    from mdrbench.builders.specs import AMAZON_KNOWN_FILES

    sums = dict(reversed(line.split()) for line in (SHARED / "SHA256SUMS").read_text().splitlines())
    for name, (size, sha) in AMAZON_KNOWN_FILES.items():
        assert sums[name] == sha
        assert (SHARED / name).stat().st_size == size


def test_a_staged_folder_replaces_its_target_whole_or_not_at_all(tmp_path):
    """`atomic.staged`, behind builds, the leaderboard site and publish --dry-run: an
    error inside the block leaves the old target as it was and no temporary folder; a
    finished block replaces the target; the new folder's mode follows the umask."""
    from mdrbench.atomic import staged

    target = tmp_path / "site"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with staged(target) as tmp:
            (tmp / "new.txt").write_text("half")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with staged(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".site.tmp-{os.getpid()}-")
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask


# ================================================================ issue 21
# score, table, sweep and load_dataset under hostile use: one test per item of the issue,
# worst first; each failed before its fix. Guarantees: docs/reliability.md.

SWEEP_TINY = ["--set", "emb_dim=8", "--set", "hidden=[16]", "--set", "batch_size=64",
              "--set", "threads=1", "--set", "device=cpu"]  # fmt: skip


def perfect_predictions(data: Path, path: Path, keys=("user_id", "item_id", "domain_id"),
                        seed: int = 1, score=None) -> Path:  # fmt: skip
    """The test split's labels as scores (a perfect model), rows shuffled, with `keys`."""
    import polars as pl

    t = pl.read_parquet(data / "test.parquet")
    s = pl.col("label").cast(pl.Float64) if score is None else pl.lit(score)
    t.select(*keys, s.alias("score")).sample(fraction=1.0, shuffle=True, seed=seed).write_parquet(
        path
    )
    return path


def lines_after(text: str, marker: str) -> list[str]:
    """The indented `mdrbench ...` lines printed after `marker` (a "Next:" block)."""
    out = []
    for line in text.split(marker, 1)[1].splitlines()[1:]:
        if not line.startswith("  mdrbench "):
            break
        out.append(line.strip())
    return out


def test_21_1_score_matches_rows_by_keys_or_refuses(capsys, data, tmp_path):
    """A perfect model's shuffled predictions with user_id and item_id but no domain_id
    were taken in stored order (test AUC 0.48, exit 0, validate OK)."""
    out = tmp_path / "r"
    args = ["--dataset", data, "--model-name", "perfect", "--method-name", "x", "--out", out]
    partial = perfect_predictions(data, tmp_path / "p.parquet", keys=("user_id", "item_id"))
    err = user_error(capsys, "score", partial, *args)
    assert "domain_id" in err and "user_id, item_id" in err
    assert not out.exists()
    # No keys at all: only when the file says the rows are in the split's order.
    unkeyed = perfect_predictions(data, tmp_path / "u.parquet", keys=())
    assert "--in-split-order" in user_error(capsys, "score", unkeyed, *args)
    # All three keys, rows shuffled: matched by key, AUC 1.0, and validate agrees.
    keyed = perfect_predictions(data, tmp_path / "k.parquet")
    code, _, err = run(capsys, "score", keyed, *args)
    assert code == 0, err
    rec = json.loads((out / "taobao-10__perfect__x__seed0.json").read_text())
    assert rec["metrics"]["test"]["auc_mean"] == 1.0
    code, out_, err = run(capsys, "validate", out, "--dataset", data, "--min-seeds", "1")
    assert code == 0, out_ + err
    # Keys that do not match the split one to one: refused, saying how many.
    import polars as pl

    df = pl.read_parquet(keyed)
    moved = df.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(10**9)
                            .otherwise(pl.col("user_id")).alias("user_id"))  # fmt: skip
    moved.write_parquet(tmp_path / "m.parquet")
    err = user_error(capsys, "score", tmp_path / "m.parquet", *args, "--seed", "1")
    assert "1 of its" in err and "match no row" in err
    pl.concat([df, df.head(1)]).write_parquet(tmp_path / "d.parquet")
    assert "share" in user_error(capsys, "score", tmp_path / "d.parquet", *args, "--seed", "1")
    # The Python API: the same rules.
    import mdrbench
    from mdrbench.errors import UserError

    ev = mdrbench.Evaluator(data)
    with pytest.raises(UserError, match="in_split_order"):
        ev.eval({"score": ev.rows["label"].to_numpy()})
    assert ev.eval({"score": ev.rows["label"].to_numpy()}, in_split_order=True)["auc_mean"] == 1.0
    with pytest.raises(UserError, match="domain_id"):
        ev.eval(pl.read_parquet(partial))


def test_21_2_table_averages_only_results_of_one_config_and_track(capsys, data, results,
                                                                    tmp_path):  # fmt: skip
    """Seeds 0, 1 at one config and seed 2 at another (or an eval and a score result of
    the same names) were one "mean ± std over 3 seeds" row."""
    r = tmp_path / "r"
    shutil.copytree(results, r)
    code, _, err = run(capsys, "eval", "--dataset", data, "--out", r, "--seeds", "2", "--force",
                       *TINY, "--set", "lr=0.01")  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, "table", r, "--no-per-domain", "--format", "csv")
    assert code == 0, err
    rows = out.strip().splitlines()[1:]
    assert len(rows) == 2, out  # never one row over both configs
    two = next(x for x in rows if "lr=0.001" in x)
    one = next(x for x in rows if "lr=0.01" in x)
    assert two.split(",")[-2] != "" and one.split(",")[-2] == ""  # a std over 2 seeds; 1 seed
    # validate groups by the same function: one entry per table row.
    from mdrbench.results import aggregate, load_results
    from mdrbench.validate import KnownBuilds, entry_key, validate

    report = validate([r], KnownBuilds.discover([data]), min_seeds=1)
    assert report.ok, report.violations
    assert len({x.entry_key for x in report.results}) == len(aggregate(load_results(r))) == 2
    # A score result of the same model and method names: a row of its own, labelled.
    keyed = perfect_predictions(data, tmp_path / "k.parquet")
    code, _, err = run(capsys, "score", keyed, "--dataset", data, "--model-name", "mlp",
                       "--method-name", "alternate", "--seed", "7", "--out", r)  # fmt: skip
    assert code == 0, err
    code, out, _ = run(capsys, "table", r, "--no-per-domain")
    assert "alternate [mdrbench score]" in out and out.count("| mlp ") == 3
    # Results that record another track: their own entry too.
    tracks = tmp_path / "t"
    shutil.copytree(results, tracks)
    f = tracks / "taobao-10__mlp__alternate__seed2.json"
    rec = json.loads(f.read_text())
    lr = rec["config"]["train"]["lr"]  # a (one-trial) tuning record that matches its config
    tuning = {"budget": 1, "search": "grid", "seed": 0, "space": {"train.lr": [lr]},
              "trials": [{"config": {"train.lr": lr}, "val_auc": 0.6}], "selected": 0}  # fmt: skip
    f.write_text(json.dumps({**rec, "track": "tuned", "tuning": tuning}))
    recs = load_results(tracks)
    assert len({entry_key(x) for x in recs}) == 2
    rows = aggregate(recs)
    # the track is its own column, not a variant label; entries rank within their track
    assert sorted(x["track"] for x in rows) == ["custom", "tuned"]
    assert [x["variant"] for x in rows] == ["", ""]


def test_21_3_load_dataset_checks_the_manifest_before_rows_are_read(data, tmp_path):
    import polars as pl

    import mdrbench
    from mdrbench.errors import UserError

    d = tmp_path / "d"
    shutil.copytree(data, d)
    ds = mdrbench.load_dataset(d)
    assert ds.split("train").height > 0
    t = pl.read_parquet(d / "train.parquet")
    t.with_columns(label=1 - pl.col("label")).write_parquet(d / "train.parquet")  # edited
    with pytest.raises(UserError, match="train.parquet"):
        ds.split("train")  # loaded before the edit: checked again when rows are read
    with pytest.raises(UserError, match="train.parquet"):
        mdrbench.load_dataset(d)
    with pytest.raises(UserError, match="train.parquet"):
        mdrbench.Evaluator(ds, "test")
    raw = mdrbench.load_dataset(d, verify=False)  # the only way round it
    assert raw.split("train")["label"].to_list() == (1 - t["label"]).to_list()


@pytest.mark.parametrize("line,key", [
    ('jobs = "two"', "jobs"), ('retries = "x"', "retries"), ("out = 5", "out"),
    ('gpus_per_run = "x"', "gpus_per_run"), ("epochs = true", "epochs"), ("model = 5", "model"),
    ('seeds = [0, "a"]', "seeds"), ('profile = "papr"', "profile"), ("jobs = 0", "jobs"),
    ('set = "lr=1"', "set"),
])  # fmt: skip
def test_21_4_grid_file_values_of_the_wrong_type(capsys, data, tmp_path, line, key):
    grid = tmp_path / "grid.toml"
    grid.write_text(f'dataset = "{data}"\n{line}\n')
    err = user_error(capsys, "sweep", "--grid", grid, "--out", tmp_path / "o")
    assert f": {key} must be" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("setting", ["theta_d_init=bogus", "device=bogus", "specific_params=bogus",
                                     "inner_optimizer=rmsprop", "specific_params=re:(",
                                     "finetune_params=x"])  # fmt: skip
def test_21_5_fixed_choices_are_checked_before_any_run(capsys, data, tmp_path, setting):
    for extra in (["--dry-run"], []):
        err = user_error(capsys, "sweep", "--dataset", data, "--method", "mamdr", "--seeds", "0",
                         "--set", setting, "--out", tmp_path / "o", *extra)  # fmt: skip
        assert setting.split("=")[0] in err
    assert not (tmp_path / "o").exists()
    assert setting.split("=")[0] in user_error(
        capsys, "eval", "--dataset", data, "--method", "mamdr", "--set", setting,
        "--out", tmp_path / "o",
    )  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_21_5_a_device_this_machine_lacks_is_refused_before_any_run(capsys, data, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    err = user_error(capsys, "sweep", "--dataset", data, "--seeds", "0", "--set", "device=cuda",
                     "--out", tmp_path / "o")  # fmt: skip
    assert "device" in err and "GPU" in err
    assert not (tmp_path / "o").exists()


def test_21_6_sweep_out_must_be_writable_before_any_run(capsys, data, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for bad in ("/proc/mdrbench-cannot-write-here", a_file, a_file / "sub"):
        err = user_error(capsys, "sweep", "--dataset", data, "--seeds", "0", *SWEEP_TINY,
                         "--epochs", "1", "--out", bad)  # fmt: skip
        assert "--out" in err and "Traceback" not in err
    assert a_file.read_text() == "x"


def test_21_7_every_printed_next_step_runs_as_printed(capsys, data, tmp_path, monkeypatch):
    """`leaderboard build DIR --out site` (no --dataset, fewer than 3 seeds) and others
    failed as printed. The quickstart's next steps, the sweep's, the leaderboard's and
    score's, each run exactly as printed."""
    import shlex
    import urllib.request

    monkeypatch.chdir(tmp_path)

    def run_line(line: str) -> str:
        code, out, err = run(capsys, *shlex.split(line)[1:])
        assert code == 0, (line, out, err)
        return out

    qs = tmp_path / "quick start"  # a space: the printed commands must quote it
    code, out, err = run(capsys, "quickstart", "--out", qs, "--epochs", "1", "-q")
    assert code == 0, err
    steps = lines_after(out, "Next:")
    assert [shlex.split(s)[1] for s in steps] == ["sweep", "table"]
    sweep_out = run_line(steps[0])
    assert "2 already done (skipped)" in sweep_out  # the quickstart's runs, kept
    run_line(steps[1])
    after = lines_after(sweep_out, "Next:")
    assert [shlex.split(s)[1] for s in after] == ["table", "validate", "leaderboard"]
    for line in after:
        out = run_line(line)
    serve = shlex.split(out.rsplit("or run: ", 1)[1])
    p = cli_process(*serve[1:])
    try:
        first = p.stdout.readline()
        assert first.startswith("Serving"), first + p.stderr.read()
        url = first.split(" at ", 1)[1].split()[0]
        assert b"<html" in urllib.request.urlopen(url, timeout=30).read().lower()
    finally:
        p.terminate()
        p.communicate(timeout=30)
    # score's "check it with" line (a single result: 1 seed).
    keyed = perfect_predictions(data, tmp_path / "k.parquet")
    code, out, err = run(capsys, "score", keyed, "--dataset", data, "--model-name", "m",
                         "--method-name", "x", "--out", tmp_path / "s")  # fmt: skip
    assert code == 0, err
    run_line(out.rsplit("check it with: ", 1)[1].strip())


def _long_sweep(data, out, *extra):
    """A sweep of 2 runs long enough to be caught running (patience never ends them)."""
    return ["sweep", "--dataset", data, "--model", "mlp", "--method", "alternate", "--seeds",
            "0,1", "--jobs", "2", *SWEEP_TINY, "--set", "patience=1000", "--out", out, *extra]  # fmt: skip


def _worker_pids(out: Path, n: int, timeout: float = 120) -> list[int]:
    """The pids the runs' logs name (`== attempt 1 (pid N)`), once each run has trained an
    epoch."""
    import re
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = [f.read_text() for f in out.glob("*.log")]
        if len(logs) == n and all("epoch   1 [" in t for t in logs):
            return [int(re.search(r"\(pid (\d+)\)", t)[1]) for t in logs]
        time.sleep(0.1)
    raise AssertionError(f"runs did not start: {[f.read_text() for f in out.glob('*.log')]}")


def _gone(pid: int) -> bool:
    """The process ended (a zombie waiting to be reaped counts as ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_21_8_no_run_outlives_the_sweep_and_the_next_run_cleans_up(data, tmp_path):
    """SIGKILL of the sweep's main process left its runs training as orphans, and an
    immediate resume reported them FAILED (lock held)."""
    import signal
    import time

    out = tmp_path / "r"
    p = cli_process(*_long_sweep(data, out, "--epochs", "300"), start_new_session=True)
    try:
        pids = _worker_pids(out, 2)
        os.kill(p.pid, signal.SIGKILL)  # the PID the user sees, not the process group
        p.communicate(timeout=30)
        deadline = time.monotonic() + 20
        while not all(map(_gone, pids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(map(_gone, pids)), "a run outlived the sweep"
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
    assert not list(out.glob(".*"))  # the runs unwound: no lock, no temporary file
    # What a kill -9 of everything leaves (a lock file, temporary files) goes with the next
    # run; a file another machine or a live process is writing stays.
    pid = dead_pid()
    import socket

    host = socket.gethostname()
    stale = [out / ".taobao-10__mlp__alternate__seed0.lock",
             out / f".taobao-10__mlp__alternate__seed0.json.tmp-{host}-{pid}",
             out / f".x.predictions.parquet.tmp-{pid}"]  # fmt: skip
    kept = [out / f".y.json.tmp-another-host-{pid}", out / f".z.json.tmp-{host}-{os.getpid()}"]
    for f in stale + kept:
        f.write_text(str(pid))
    q = cli_process(*_long_sweep(data, out, "--epochs", "2", "-q"))
    stdout, stderr = q.communicate(timeout=300)
    assert q.returncode == 0, stdout + stderr
    assert "2 done now, 0 failed" in stdout
    assert "leaked semaphore" not in stderr and "resource_tracker" not in stderr, stderr
    assert not any(f.exists() for f in stale) and all(f.exists() for f in kept)


def test_21_9_a_run_another_sweep_finishes_is_done_by_another_process(capsys, data, tmp_path):
    """Two sweeps on one --out: the second reported "2 failed" for runs the first did."""
    out = tmp_path / "r"
    first = cli_process(*_long_sweep(data, out, "--epochs", "30"))
    try:
        _worker_pids(out, 2)  # the first sweep holds both runs
        code, stdout, stderr = run(capsys, *_long_sweep(data, out, "--epochs", "30"))
    finally:
        first.communicate(timeout=300)
    assert code == 0 and first.returncode == 0, stdout + stderr
    assert "0 done now, 2 done by another process, 0 failed" in stdout, stdout + stderr
    assert "FAILED" not in stdout + stderr


def test_21_10_a_user_error_is_not_retried_and_the_summary_says_why(capsys, data, tmp_path):
    out = tmp_path / "r"
    code, stdout, err = run(capsys, "sweep", "--dataset", data, "--seeds", "0", *SWEEP_TINY,
                            "--epochs", "1", "--set", "lr=1e25", "--retries", "2", "--out", out)  # fmt: skip
    assert code == 1, stdout + err
    assert "FAILED taobao-10 mlp+alternate seed 0: training diverged" in stdout
    assert "exit status" not in stdout
    log = (out / "taobao-10__mlp__alternate__seed0.log").read_text()
    assert "Error: training diverged" in log and "== attempt 2" not in log


def test_21_10_retries_wait_and_reasons_of_the_sweep_loop(tmp_path):
    """The loop's rules on a stand-in backend: exit 1 is retried, exit 2 (a user error) is
    not, BUSY waits for the holder's lock and is then done by another process, and each
    failure is reported with its reason."""
    from mdrbench import sweep as sw
    from mdrbench.atomic import Lock
    from mdrbench.results import lock_path

    def make(name):
        path = tmp_path / f"{name}.json"
        return sw.Run("", "d", "0" * 64, "m", name, 0, {}, "", path)

    runs = [make("flaky"), make("bad"), make("held")]
    holder = Lock(lock_path(runs[2].path), "test")
    plan = {"flaky": [(1, "RuntimeError: boom"), (1, "RuntimeError: boom again")],
            "bad": [(2, "lr must be > 0"), (0, "")], "held": [(sw.BUSY, "busy")]}  # fmt: skip
    started, replies = [], {}

    class Backend:
        name, slots = "fake", 3

        def start(self, run, attempt):
            started.append((run.method, attempt))
            rc, msg = plan[run.method].pop(0)
            if run.method == "held":
                holder.release()  # the other process finishes it ...
                runs[2].path.write_text("{}")  # ... (run_status below says done)
            handle = object()
            replies[handle] = (rc, msg)
            return handle

        def wait(self, handles, timeout):
            return [sw.Finished(h, *replies.pop(h)) for h in handles]

        def stop(self):
            pass

        def close(self):
            pass

    real = sw.run_status
    sw.run_status = lambda run, recompute=False: sw.Status(
        "done" if run.method == "held" and run.path.exists() else "todo")  # fmt: skip
    try:
        s = sw._run(sw.Summary(runs), Backend(), list(runs), 1, "", 0.0)
    finally:
        sw.run_status = real
        holder.release()
    assert sorted(started) == [("bad", 1), ("flaky", 1), ("flaky", 2), ("held", 1)]
    assert dict((r.method, why) for r, why in s.failed) == {
        "flaky": "RuntimeError: boom again", "bad": "lr must be > 0"}  # fmt: skip
    assert [r.method for r in s.elsewhere] == ["held"] and not s.done


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE")
def test_21_11_a_run_that_cannot_write_fails_with_its_reason_and_no_partial_result(data,
                                                                                  tmp_path):  # fmt: skip
    """A full disk (here: files capped at 6 kB, as a full disk refuses writes): the reason
    was only in the log; the summary said "exit status 1"."""
    import resource
    import signal

    def cap():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    out = tmp_path / "r"
    args = ["sweep", "--dataset", data, "--seeds", "0", *SWEEP_TINY, "--epochs", "1",
            "--retries", "0", "--out", out]  # fmt: skip
    p = cli_process(*args, preexec_fn=cap)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 1, stdout + stderr
    failed = next(x for x in stdout.splitlines() if "FAILED" in x)
    assert "exit status" not in failed
    log = (out / "taobao-10__mlp__alternate__seed0.log").read_text()
    error = next(x for x in log.splitlines() if x.startswith("Error: "))
    assert error.removeprefix("Error: ") in failed
    assert not list(out.glob("*.json")) and not list(out.glob(".*"))


def test_21_12_out_of_memory_is_an_error_line(capsys, data, tmp_path):
    err = user_error(capsys, "eval", "--dataset", data, "--out", tmp_path / "r", *TINY,
                     "--set", "hidden=[100000000000]")  # fmt: skip
    assert "out of memory" in err and "hidden" in err
    assert not (tmp_path / "r").exists()


def test_21_13_control_characters_in_names_and_negative_seeds_are_refused(capsys, data,
                                                                          tmp_path):  # fmt: skip
    keyed = perfect_predictions(data, tmp_path / "k.parquet")
    out = tmp_path / "r"
    for opts in (["--model-name", "a\nb"], ["--method-name", "x\x1b[31m"],
                 ["--model-name", "m\u202eevil"]):  # fmt: skip
        names = {"--model-name": "m", "--method-name": "x"} | dict([opts])
        user_error(capsys, "score", keyed, "--dataset", data, "--out", out,
                   *[x for kv in names.items() for x in kv])  # fmt: skip
    code, _, err = run(capsys, "score", keyed, "--dataset", data, "--model-name", "m",
                       "--method-name", "x", "--seed", "-1", "--out", out)  # fmt: skip
    assert code == 2 and "--seed" in err
    assert not out.exists()
    # validate refuses such results; the registry such names; a result path such names.
    from mdrbench.errors import UserError
    from mdrbench.registry import Registry
    from mdrbench.results import result_stem
    from mdrbench.validate import check_schema

    assert run(capsys, "score", keyed, "--dataset", data, "--model-name", "m",
               "--method-name", "x", "--out", out)[0] == 0  # fmt: skip
    good = json.loads((out / "taobao-10__m__x__seed0.json").read_text())
    assert check_schema(good) == []
    assert any("seed" in e for e in check_schema({**good, "seed": -1}))
    assert any("model" in e for e in check_schema({**good, "model": "a\nb"}))
    with pytest.raises(ValueError, match="control"):
        Registry("model").register("bad\tname", object())
    with pytest.raises(UserError, match="control"):
        result_stem("taobao-10", "a\nb", "x", 0)


def test_21_14_csv_exports_neutralise_formulas(capsys, data, tmp_path):
    keyed = perfect_predictions(data, tmp_path / "k.parquet")
    out = tmp_path / "r"
    for seed in (0, 1, 2):
        code, _, err = run(capsys, "score", keyed, "--dataset", data, "--model-name",
                           "=HYPERLINK(1)", "--method-name=-2+3", "--seed", seed, "--out", out)  # fmt: skip
        assert code == 0, err
    for extra in ([], ["--long"]):
        code, csv_text, err = run(capsys, "table", out, "--format", "csv", *extra)
        assert code == 0, err
        assert "'=HYPERLINK(1)" in csv_text and "'-2+3" in csv_text
        assert "\n=" not in csv_text and ",=" not in csv_text and ",-2+3" not in csv_text
    site = tmp_path / "site"
    code, _, err = run(capsys, "leaderboard", "build", out, "--dataset", data, "--out", site,
                       "--no-paper")  # fmt: skip
    assert code == 0, err
    board = (site / "leaderboard.csv").read_text()
    assert "'=HYPERLINK(1)" in board and ",=" not in board and ",-2+3" not in board
    from mdrbench.results import csv_cell

    assert [csv_cell(x) for x in ("+1", "@a", "\tx", "ok", -0.5)] == ["'+1", "'@a", "'\tx",
                                                                      "ok", -0.5]  # fmt: skip


def test_21_15_grid_values_equal_after_parsing_are_one_point(capsys, data, tmp_path):
    code, out, err = run(capsys, "sweep", "--dataset", data, "--seeds", "0", "--set",
                         "lr=0.001,1e-3", "--set", "hidden=[16],[ 16 ]", "--out", tmp_path,
                         "--dry-run")  # fmt: skip
    assert code == 0, err
    assert "1 runs: 1 todo" in out and "lr=" not in out
    code, out, err = run(capsys, "sweep", "--dataset", data, "--seeds", "0", "--set",
                         "lr=0.001,1e-3,0.01", "--out", tmp_path, "--dry-run")  # fmt: skip
    assert "2 runs: 2 todo" in out and "lr=0.001/" in out and "lr=0.01/" in out


def test_21_16_a_cut_off_json_at_a_result_path_is_redone(capsys, data, results, tmp_path):
    r = tmp_path / "r"
    shutil.copytree(results, r)
    f = r / "taobao-10__mlp__alternate__seed1.json"
    f.write_bytes(f.read_bytes()[:200])  # cut off
    code, out, err = run(capsys, "sweep", "--dataset", data, "--seeds", "0,1,2", *TINY[:2],
                         *TINY[3:], "--out", r, "--dry-run")  # fmt: skip
    assert code == 0, err
    assert "2 done, 1 redo" in out and "cut off" in out


def test_21_17_stale_temporary_folders_of_killed_processes_are_removed(tmp_path):
    """A killed Hub download left `.hub-download-*`, a killed run its best-state folder."""
    import socket

    from mdrbench.atomic import temp_dir

    host, pid = socket.gethostname(), dead_pid()
    stale = tmp_path / f".hub-download-{host}-{pid}-abc"
    live = tmp_path / f".hub-download-{host}-{os.getpid()}-def"
    other = tmp_path / f".hub-download-elsewhere-{pid}-ghi"
    for d in (stale, live, other):
        d.mkdir()
    new = temp_dir(tmp_path, ".hub-download")
    assert new.name.startswith(f".hub-download-{host}-{os.getpid()}-")
    assert not stale.exists() and live.exists() and other.exists()
    # The Hub download and the trainer's best states use it.
    import inspect

    from mdrbench import hub, trainer

    assert 'temp_dir(out, ".hub-download")' in inspect.getsource(hub.download)
    assert 'temp_dir(Path(tempfile.gettempdir()), "mdrbench-best")' in inspect.getsource(
        trainer._BestStates
    )


def test_21_18_load_results_warns_about_what_it_skips(data, tmp_path, caplog):
    import mdrbench
    from mdrbench.errors import UserError

    with caplog.at_level("WARNING", logger="mdrbench"):
        df = mdrbench.load_results(data.parent)  # a folder of datasets
    assert df.height == 0
    assert "skipped 1 JSON file(s) that are not results" in caplog.text
    assert "manifest.json" in caplog.text
    stub = tmp_path / "stub.json"
    stub.write_text('{"schema_version": 1}')
    with pytest.raises(UserError, match="stub.json: not a valid result"):
        mdrbench.load_results(tmp_path)


def test_21_19_a_name_in_the_wrong_case_gets_a_suggestion(capsys, data, tmp_path):
    assert "did you mean 'mamdr'" in user_error(capsys, "eval", "--dataset", data, "--method",
                                                "MAMDR", "--out", tmp_path)  # fmt: skip
    assert "did you mean 'mlp'" in user_error(capsys, "eval", "--dataset", data, "--model", "MLP",
                                              "--out", tmp_path)  # fmt: skip


def test_21_20_the_log_gives_one_number_for_the_selected_state(data):
    """"best epoch 19: val auc 0.4975" where the epoch-19 line showed 0.4972: a stage that
    keeps each domain's best ends on a state no epoch line showed."""
    import re

    from mdrbench import trainer

    for method in ("mamdr", "alternate"):
        lines: list[str] = []
        trainer.train(str(data), "mlp", method, seed=0, log=lines.append, overrides={
            "epochs": 3, "emb_dim": 8, "hidden": [16], "batch_size": 64, "threads": 1,
            "device": "cpu", "patience": 1000, **({"finetune_lr": 0.5} if method == "mamdr" else {}),
        })  # fmt: skip
        shown = {int(m[1]): m[2] for m in (re.match(r"epoch +(\d+) .*val auc ([\d.]+)", x)
                                           for x in lines) if m}  # fmt: skip
        last = lines[-1]
        m = re.match(r"best epoch (\d+): val auc ([\d.]+)", last)
        if m:  # a line naming an epoch gives that epoch's number
            assert shown[int(m[1])] == m[2], (last, shown)
        else:
            assert method == "mamdr" and last.startswith("selected state (each domain"), last
