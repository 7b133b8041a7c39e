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
    from mdrbench.cli import train as train_cli
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
