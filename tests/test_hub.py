"""`mdrbench publish` / `mdrbench download`: the dry-run folder and its dataset card, and the
upload and download code against a fake Hub on 127.0.0.1 (HF_ENDPOINT) that records requests.

The CLI runs in subprocesses so that huggingface_hub reads HF_ENDPOINT, HF_TOKEN, HF_HOME and
HF_HUB_DISABLE_XET from a clean environment, as a user's shell would give them. Xet is turned
off because the fake Hub speaks the git-LFS "basic" transfer (the Hub offers both)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from publish_fixtures import FakeHub, make_dataset, run_cli

from mdrbench.builders.manifest import file_sha256, verify

REPO = "mdr-lab/mdr-benchmarks"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_dataset(root, "amazon-6")
    make_dataset(root, "taobao-10", n_domains=4)
    return root


@pytest.fixture(scope="module")
def dry(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("dry") / "hub"
    r = subprocess.run(
        [sys.executable, "-c", "from mdrbench.cli import main; main()", "publish", str(data),
         "--repo-id", REPO, "--dry-run", str(out)],
        capture_output=True, text=True, env=hf_env(tmp_path_factory.mktemp("home"), None),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text("utf-8")
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_dry_run_writes_the_hub_layout_and_lists_it(dry, data):
    out, stdout = dry
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    expected = ["LICENSE.md", "README.md"]
    for ds in ("amazon-6", "taobao-10"):
        manifest = json.loads((data / ds / "manifest.json").read_text())
        expected += [f"data/{ds}/{f}" for f in [*manifest["files"], "manifest.json"]]
        # The built folder travels byte for byte, so it verifies where it lands.
        assert verify(out / "data" / ds) == []
        assert file_sha256(out / "data" / ds / "manifest.json") == file_sha256(
            data / ds / "manifest.json"
        )
    assert files == sorted(expected)
    for f in files:
        assert f in stdout
    assert f"{len(files)} files" in stdout and "nothing uploaded" in stdout


def test_card_yaml_parses_and_every_data_file_exists(dry):
    out, _ = dry
    meta, _ = card(out)
    assert meta["license"] == "other" and meta["license_link"] == "LICENSE.md"
    assert (out / meta["license_link"]).is_file()
    assert meta["task_categories"] == ["tabular-classification"]
    assert "recommendation" in meta["tags"] and meta["size_categories"] == ["n<1K"]
    assert [c["config_name"] for c in meta["configs"]] == [
        "amazon-6", "taobao-10", "taobao-10-user-features", "taobao-10-item-features"
    ]  # fmt: skip
    assert meta["configs"][0]["default"] is True
    for c in meta["configs"][:2]:
        assert [f["split"] for f in c["data_files"]] == ["train", "validation", "test"]
    for c in meta["configs"][2:]:
        assert [f["split"] for f in c["data_files"]] == ["train"]
    for c in meta["configs"]:
        for f in c["data_files"]:
            assert (out / f["path"]).is_file(), f["path"]
    # domain_id is a ClassLabel with the build's domain names, in id order.
    for info in meta["dataset_info"]:
        manifest = json.loads((out / "data" / info["config_name"] / "manifest.json").read_text())
        feats = {f["name"]: f["dtype"] for f in info["features"]}
        names = feats["domain_id"]["class_label"]["names"]
        assert names == {str(d["id"]): d["name"] for d in manifest["domains"]}
        assert [sp["num_examples"] for sp in info["splits"]] == [
            manifest["totals"][k] for k in ("n_train", "n_val", "n_test")
        ]


def test_datasets_library_shows_domain_names(dry):
    """`datasets.load_dataset` on the published folder (skipped where `datasets` is not
    installed: it is no dependency of mdrbench)."""
    datasets = pytest.importorskip("datasets")
    out, _ = dry
    manifest = json.loads((out / "data" / "amazon-6" / "manifest.json").read_text())
    names = [d["name"] for d in sorted(manifest["domains"], key=lambda d: d["id"])]
    ds = datasets.load_dataset(str(out), "amazon-6", cache_dir=str(out.parent / "hf-cache"))
    assert set(ds) == {"train", "validation", "test"}
    feature = ds["test"].features["domain_id"]
    assert isinstance(feature, datasets.ClassLabel) and feature.names == names
    row = ds["test"][0]
    assert feature.int2str(row["domain_id"]) in names
    assert ds["test"].num_rows == manifest["totals"]["n_test"]
    users = datasets.load_dataset(str(out), "taobao-10-user-features",
                                  cache_dir=str(out.parent / "hf-cache"))  # fmt: skip
    assert len(users["train"][0]["features"]) == 128


def test_card_body_has_build_statistics_checksums_and_citations(dry, data):
    out, _ = dry
    _, body = card(out)
    for ds in ("amazon-6", "taobao-10"):
        manifest = json.loads((data / ds / "manifest.json").read_text())
        assert f"## {ds}" in body and f"mdrbench build {ds} --raw-dir RAW_DIR --seed 0" in body
        assert file_sha256(data / ds / "manifest.json") in body
        for f, info in manifest["files"].items():
            assert f"`data/{ds}/{f}` | {info['bytes']:,} | `{info['sha256']}`" in body
        for d in manifest["domains"]:  # per-domain statistics
            n = d["n_pos"] + d["n_neg"]
            assert any(d["name"] in line and f" {n:,} " in line and f" {d['n_test']:,} " in line
                       for line in body.splitlines()), d["name"]  # fmt: skip
    assert '--domains "D1,D2,D3,D4"' in body  # taobao-10 was built from 4 of its 10 domains
    for key in ("luo2023mamdr", "ni2019justifying", "du2019sequential"):
        assert key in body
    assert (
        "Tianchi" in (out / "LICENSE.md").read_text()
        and "Amazon" in (out / "LICENSE.md").read_text()
    )


def test_dry_run_refuses_a_non_empty_folder_and_a_bad_repo_id(capsys, tmp_path, data):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "publish", data, "--repo-id", REPO, "--dry-run", tmp_path / "x")
    assert code == 2 and "exists and is not empty" in err
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["keep.txt"]
    code, _, err = run_cli(
        capsys, "publish", data, "--repo-id", "no-slash", "--dry-run", tmp_path / "y"
    )
    assert code == 2 and "--repo-id must look like ORG/NAME" in err


def test_a_dataset_that_fails_its_checksums_is_not_published(capsys, tmp_path):
    ds = make_dataset(tmp_path / "d", "amazon-6")
    with open(ds / "test.parquet", "r+b") as f:
        f.seek(40)
        f.write(b"\xff")
    code, _, err = run_cli(capsys, "publish", ds, "--repo-id", REPO, "--dry-run", tmp_path / "out")
    assert code == 2 and "test.parquet: sha256 differs from the manifest" in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- against the fake Hub


def hf_env(home: Path, hub: FakeHub | None, token: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1")  # fmt: skip
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
        if token:
            env["HF_TOKEN"] = hub.token
    return env


def cli(env, *args):
    return subprocess.run([sys.executable, "-c", "from mdrbench.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip


def no_token_anywhere(root: Path, token: str):
    for p in root.rglob("*"):
        if p.is_file():
            assert token.encode() not in p.read_bytes(), f"token written to {p}"


def test_publish_uploads_everything_in_one_commit_and_download_verifies(tmp_path, data, dry):
    dry_out, _ = dry
    with FakeHub() as hub:
        env = hf_env(tmp_path / "home", hub)
        r = cli(env, "publish", data, "--repo-id", REPO, "--private")
        assert r.returncode == 0, r.stderr
        assert f"to {REPO} in one commit" in r.stdout
        assert hub.token not in r.stdout + r.stderr

        commits = hub.commits(REPO)
        assert len(commits) == 1
        committed = sorted(path for _, path in commits[0]["operations"])
        local = sorted(str(p.relative_to(dry_out)) for p in dry_out.rglob("*") if p.is_file())
        assert committed == local  # exactly the dry-run folder
        for rel in local:  # byte for byte
            assert hub.files(REPO)[rel] == (dry_out / rel).read_bytes(), rel
        ops = dict((path, kind) for kind, path in commits[0]["operations"])
        assert ops["data/amazon-6/train.parquet"] == "lfsFile" and ops["README.md"] == "file"
        assert hub.repos[f"datasets/{REPO}"]["private"] is True
        writes = [
            (m, p, h)
            for m, p, h in hub.requests
            if m in ("POST", "PUT") and not p.startswith("/lfs-")
        ]
        assert writes[0][1] == "/api/repos/create"
        assert all(h.get("authorization") == f"Bearer {hub.token}" for _, _, h in writes)

        out = tmp_path / "datasets"
        r = cli(env, "download", REPO, "--out", out)
        assert r.returncode == 0, r.stderr
        assert sorted(p.name for p in out.iterdir()) == ["amazon-6", "taobao-10"]
        for ds in ("amazon-6", "taobao-10"):
            assert verify(out / ds) == []
            assert file_sha256(out / ds / "manifest.json") == file_sha256(
                data / ds / "manifest.json"
            )
            assert f"{out / ds}: every file matches manifest.json" in r.stdout
        downloads = [p for m, p, _ in hub.requests if m == "GET" and "/resolve/" in p]
        assert len(downloads) == len(local)

        # Existing datasets are kept unless --force.
        r = cli(env, "download", REPO, "--out", out)
        assert r.returncode == 2 and "already exist" in r.stderr and "--force" in r.stderr
        assert cli(env, "download", REPO, "--out", out, "--force").returncode == 0
        assert sorted(p.name for p in out.iterdir()) == ["amazon-6", "taobao-10"]
        no_token_anywhere(tmp_path, hub.token)


def test_republishing_replaces_the_repo_content_in_one_commit(tmp_path, data):
    with FakeHub() as hub:
        env = hf_env(tmp_path / "home", hub)
        assert cli(env, "publish", data, "--repo-id", REPO).returncode == 0
        r = cli(env, "publish", data / "amazon-6", "--repo-id", REPO, "--message", "only amazon-6")
        assert r.returncode == 0, r.stderr
        second = hub.commits(REPO)[1]
        assert second["summary"] == "only amazon-6"
        deleted = sorted(p for k, p in second["operations"] if k == "deletedFile")
        assert deleted and all(p.startswith("data/taobao-10/") for p in deleted)
        assert not any(p.startswith("data/taobao-10/") for p in hub.files(REPO))
        assert [
            c["config_name"]
            for c in yaml.safe_load(hub.files(REPO)["README.md"].decode().split("---\n")[1])[
                "configs"
            ]
        ] == ["amazon-6"]


def test_download_of_tampered_files_keeps_nothing(tmp_path, data):
    with FakeHub() as hub:
        env = hf_env(tmp_path / "home", hub)
        assert cli(env, "publish", data / "amazon-6", "--repo-id", REPO).returncode == 0
        files = hub.files(REPO)
        files["data/amazon-6/val.parquet"] = files["data/amazon-6/val.parquet"][:-1] + b"\x00"
        out = tmp_path / "datasets"
        r = cli(env, "download", REPO, "--out", out)
        assert r.returncode == 2
        assert "data/amazon-6/val.parquet: sha256 differs from the manifest" in r.stderr
        assert "nothing was kept" in r.stderr
        assert list(out.iterdir()) == []  # no dataset, no temporary folder


def test_missing_token_and_missing_repo_fail_clearly(tmp_path, data):
    with FakeHub() as hub:
        r = cli(hf_env(tmp_path / "home", hub, token=False), "publish", data, "--repo-id", REPO)
        assert r.returncode == 2 and "no Hugging Face token: set HF_TOKEN" in r.stderr
        assert hub.requests == []
        r = cli(
            hf_env(tmp_path / "home", hub), "download", "nobody/nothing", "--out", tmp_path / "o"
        )
        assert r.returncode == 2
        assert (
            "Error: downloading nobody/nothing failed: no dataset repository nobody/nothing"
            in r.stderr
        )
        wrong = dict(hf_env(tmp_path / "home", hub), HF_TOKEN="hf_wrong_token_123456")
        r = cli(wrong, "publish", data, "--repo-id", REPO)
        assert r.returncode == 2 and "the Hub refused the token" in r.stderr
        assert "hf_wrong_token_123456" not in r.stdout + r.stderr


def test_cli_modules_import_no_torch():
    code = ("import sys, mdrbench.cli.publish, mdrbench.hub, mdrbench.validate, "
            "mdrbench.leaderboard.site; assert 'torch' not in sys.modules, 'torch imported'")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_commands_are_registered_with_examples(capsys):
    for cmd in ("publish", "download"):
        code, out, _ = run_cli(capsys, cmd, "--help")
        assert code == 0 and "Example: mdrbench" in out


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once we return: connections are refused


def test_publish_and_download_with_no_network_say_so_in_one_line(tmp_path, data):
    env = dict(hf_env(tmp_path / "home", None), HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
               HF_TOKEN=FakeHub.token)  # fmt: skip
    for args in (
        ["publish", data / "amazon-6", "--repo-id", REPO],
        ["download", REPO, "--out", tmp_path / "o"],
        ["download", "amazon-6", "--out", tmp_path / "o"],
    ):
        r = cli(env, *args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
        assert "cannot reach the Hub" in r.stderr and "Traceback" not in r.stderr
        assert FakeHub.token not in r.stderr
    assert not any((tmp_path / "o").iterdir())  # nothing half-downloaded
    r = cli(dict(env, HF_HUB_OFFLINE="1"), "download", REPO, "--out", tmp_path / "o")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr


def test_download_name_fetches_only_that_dataset_at_its_pinned_revision(tmp_path, data):
    from mdrbench.builders.specs import DATASETS

    spec = DATASETS.get("amazon-6")
    with FakeHub() as hub:
        env = hf_env(tmp_path / "home", hub)
        r = cli(env, "publish", data, "--repo-id", spec.hub_repo)
        assert r.returncode == 0, r.stderr
        # Not tagged yet: the pinned revision does not exist, and the user is told.
        r = cli(env, "download", "amazon-6", "--out", tmp_path / "none")
        assert r.returncode == 2 and "no such revision" in r.stderr, r.stderr
        r = cli(env, "publish", data, "--repo-id", spec.hub_repo, "--tag", spec.hub_revision)
        assert r.returncode == 0, r.stderr
        assert hub.repos[f"datasets/{spec.hub_repo}"]["tags"] == {
            spec.hub_revision: hub.repos[f"datasets/{spec.hub_repo}"]["sha"]
        }
        before = len(hub.requests)
        out = tmp_path / "datasets"
        r = cli(env, "download", "amazon-6", "--out", out)
        assert r.returncode == 0, r.stderr
        assert [p.name for p in out.iterdir()] == ["amazon-6"] and verify(out / "amazon-6") == []
        got = [p for m, p, _ in hub.requests[before:] if m == "GET" and "/resolve/" in p]
        assert got and all("/data/amazon-6/" in p for p in got)  # allow_patterns: only it
        assert any(f"/revision/{spec.hub_revision}" in p for _, p, _ in hub.requests[before:])

        # ORG/REPO --dataset NAME: only that one too; an absent name is an Error.
        r = cli(env, "download", spec.hub_repo, "--dataset", "taobao-10", "--out", out)
        assert r.returncode == 0 and sorted(p.name for p in out.iterdir()) == ["amazon-6", "taobao-10"]
        r = cli(env, "download", spec.hub_repo, "--dataset", "amazon-13", "--out", tmp_path / "x")
        assert r.returncode == 2 and "holds no dataset amazon-13" in r.stderr
        r = cli(env, "download", "amazon6", "--out", tmp_path / "x")
        assert r.returncode == 2 and "did you mean 'amazon-6'" in r.stderr

        # mdrbench.load_dataset(NAME) with an empty data directory: fetched, verified, loaded.
        code = ("import mdrbench; ds = mdrbench.load_dataset('taobao-10'); "
                "print(ds.path, ds.split('test').height, ds.verify())")  # fmt: skip
        data_dir = tmp_path / "cache"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(env, MDRBENCH_DATA=str(data_dir)), timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        path, n, problems = r.stdout.split(" ", 2)
        assert path == str(data_dir / "taobao-10") and problems.strip() == "[]"
        manifest = json.loads((data / "taobao-10" / "manifest.json").read_text())
        assert int(n) == manifest["totals"]["n_test"]
        assert [p.name for p in data_dir.iterdir()] == ["taobao-10"]


def test_load_dataset_of_a_name_not_here_and_no_hub_says_what_to_do(tmp_path):
    env = dict(hf_env(tmp_path / "home", None), HF_HUB_OFFLINE="1",
               MDRBENCH_DATA=str(tmp_path / "empty"))  # fmt: skip
    code = (
        "import mdrbench\n"
        "for kw in ({}, {'download': False}):\n"
        "    try:\n        mdrbench.load_dataset('amazon-6', **kw)\n"
        "    except mdrbench.UserError as e:\n        print('ERR', str(e).replace(chr(10), ' '))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    hub_err, local_err = r.stdout.splitlines()
    assert "HF_HUB_OFFLINE is set" in hub_err and "mdrbench build amazon-6" in hub_err
    assert "no built dataset" in local_err and "HF_HUB" not in local_err
