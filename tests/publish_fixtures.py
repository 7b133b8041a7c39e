"""Tiny built datasets and result files for the validator, leaderboard and Hub tests.

Everything here follows the contracts: docs/format.md for a built dataset (Parquet splits,
manifest.json, README.md) and the results JSON of issue 3 (`schema_version` 1). Metrics are
computed by the one evaluator from scores we also write as a predictions Parquet, so a
made-up result is internally consistent and the validator can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.card import dataset_card
from mdrbench.builders.manifest import dump_manifest, file_sha256, manifest_sha256
from mdrbench.builders.process import SPLIT
from mdrbench.builders.specs import SPEC_VERSION, get_spec, spec_major
from mdrbench.evaluate import evaluate

SPLITS = ("train", "val", "test")


def make_dataset(
    root: os.PathLike,
    name: str = "amazon-6",
    *,
    n_domains: int | None = None,
    rows_per_domain: int = 40,
    seed: int = 0,
    features: bool | None = None,
    spec_version: str = SPEC_VERSION,
) -> Path:
    """Write `root/name/` in the built format and return it.

    `n_domains` keeps the spec's first domains (as `mdrbench build --domains` would);
    `features` defaults to True for taobao datasets (the 128-d user/item feature tables).
    """
    spec = get_spec(name)
    domains = spec.domains[: n_domains or len(spec.domains)]
    features = spec.kind == "taobao" if features is None else features
    rng = np.random.default_rng(seed)
    out = Path(root) / name
    out.mkdir(parents=True, exist_ok=True)
    n_users, n_items = 30, 25
    parts: dict[str, list[pl.DataFrame]] = {s: [] for s in SPLITS}
    dom_stats = []
    for d, dom in enumerate(domains):
        n = rows_per_domain
        labels = np.zeros(n, dtype=np.int8)
        labels[: max(2, int(n * dom.ctr_ratio / (1 + dom.ctr_ratio)))] = 1
        rng.shuffle(labels)
        users = rng.integers(0, n_users, n)
        items = rng.integers(0, n_items, n)
        # A stratified 60/20/20 (not the builder's split): each split gets both labels.
        sizes = {}
        split_of = np.empty(n, dtype=np.int8)
        for lab in (0, 1):
            idx = np.flatnonzero(labels == lab)
            a, b = int(len(idx) * 0.6), int(len(idx) * 0.8)
            split_of[idx[:a]], split_of[idx[a:b]], split_of[idx[b:]] = 0, 1, 2
        for s_i, s in enumerate(SPLITS):
            m = split_of == s_i
            sizes[s] = int(m.sum())
            parts[s].append(
                pl.DataFrame(
                    {
                        "user_id": users[m].astype(np.int64),
                        "item_id": items[m].astype(np.int64),
                        "domain_id": np.full(int(m.sum()), d, dtype=np.int16),
                        "label": labels[m],
                    }
                )
            )
        n_pos = int(labels.sum())
        dom_stats.append(
            {
                "id": d,
                "name": dom.name,
                "ctr_ratio": dom.ctr_ratio,
                "n_users": len(set(users.tolist())),
                "n_items": len(set(items.tolist())),
                "n_pos": n_pos,
                "n_neg": n - n_pos,
                "n_train": sizes["train"],
                "n_val": sizes["val"],
                "n_test": sizes["test"],
            }
        )
    files: dict[str, dict] = {}
    for s in SPLITS:
        df = pl.concat(parts[s])
        df.write_parquet(out / f"{s}.parquet")
        files[f"{s}.parquet"] = {"rows": df.height}
    if features:
        for kind, n_ids in (("user", n_users), ("item", n_items)):
            feats = rng.normal(size=(n_ids, 128)).astype(np.float32)
            df = pl.DataFrame(
                {
                    f"{kind}_id": np.arange(n_ids, dtype=np.int64),
                    "features": feats,
                },
                schema={f"{kind}_id": pl.Int64, "features": pl.Array(pl.Float32, 128)},
            )
            df.write_parquet(out / f"{kind}_features.parquet")
            files[f"{kind}_features.parquet"] = {"rows": n_ids}
    totals = {
        "n_domains": len(domains),
        "n_users": n_users,
        "n_items": n_items,
        "n_pos": sum(d["n_pos"] for d in dom_stats),
        "n_neg": sum(d["n_neg"] for d in dom_stats),
        "n_samples": rows_per_domain * len(domains),
        "n_train": sum(d["n_train"] for d in dom_stats),
        "n_val": sum(d["n_val"] for d in dom_stats),
        "n_test": sum(d["n_test"] for d in dom_stats),
    }
    manifest = {
        "format_version": 1,
        "name": name,
        "kind": spec.kind,
        "spec_version": spec_version,
        "mdrbench_version": "0.1.0",
        "seed": seed,
        "on_bad_lines": "error",
        "domains": dom_stats,
        "totals": totals,
        "files": {},
        "raw_files": {"fixture.bin": {"sha256": "0" * 64, "bytes": 1, "n_bad_lines": 0}},
    }
    if spec_major(spec_version) == spec_major(SPEC_VERSION):
        manifest["split"] = SPLIT  # named by spec 2.0 manifests; 1.x ones name no rule
    # The dataset card as the builder writes it, then the checksums of every file.
    (out / "README.md").write_text(dataset_card(spec, manifest), encoding="utf-8")
    files["README.md"] = {}
    for fname, info in files.items():
        p = out / fname
        info.update(sha256=file_sha256(p), bytes=p.stat().st_size)
    manifest["files"] = {
        f: {"sha256": i["sha256"], "bytes": i["bytes"]}
        | ({"rows": i["rows"]} if "rows" in i else {})
        for f, i in sorted(files.items())
    }
    (out / "manifest.json").write_bytes(dump_manifest(manifest))
    return out


def _scores(labels: np.ndarray, skill: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities whose AUC grows with `skill` (0 = random)."""
    z = skill * (labels.astype(np.float64) * 2 - 1) + rng.normal(size=labels.size)
    return 1 / (1 + np.exp(-z))


def make_result(
    dataset_dir: os.PathLike,
    out_dir: os.PathLike,
    *,
    model: str = "mlp",
    method: str = "alternate",
    seed: int = 0,
    skill: float = 1.0,
    predictions: bool = True,
    config: dict | None = None,
) -> Path:
    """One results JSON (issue 3's schema) for `dataset_dir`, with its predictions Parquet
    `<stem>.predictions.parquet` beside it when `predictions`. Returns the JSON's path."""
    dataset_dir = Path(dataset_dir)
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    names = [d["name"] for d in manifest["domains"]]
    h = int(hashlib.sha256(f"{model}|{method}|{seed}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(h)
    metrics = {}
    test_scores = None
    for split in ("val", "test"):
        df = pl.read_parquet(dataset_dir / f"{split}.parquet")
        labels = df["label"].to_numpy()
        scores = _scores(labels, skill, rng)
        metrics[split] = evaluate(df["domain_id"].to_numpy(), labels, scores, names)
        if split == "test":
            test_scores = (df, scores)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{manifest['name']}__{_safe(model)}__{_safe(method)}__seed{seed}"
    result = {
        "schema_version": 1,
        "mdrbench_version": "0.1.0",
        "dataset": {"name": manifest["name"], "manifest_sha256": manifest_sha256(dataset_dir)},
        "model": model,
        "method": method,
        "seed": seed,
        # Shaped as the trainer's RunConfig.to_dict(): train / model / framework sections.
        "config": {
            "train": {
                "lr": 0.001,
                "batch_size": 1024,
                "epochs": 50,
                "patience": 3,
                "seed": seed,
                "device": "cpu",
                "threads": 0,
                **(config or {}),
            },
            "model": {"emb_dim": 128, "dropout": 0.5, "hidden": [256, 128, 64]},
            "framework": {},
        },  # fmt: skip
        "best_epoch": 3,
        "metrics": metrics,
        "train_seconds": 12.5 + seed,
        "samples_per_second": 50000.0,
        "n_parameters": 123456,
    }
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    if predictions:
        df, scores = test_scores
        pl.DataFrame(
            {"domain_id": df["domain_id"], "label": df["label"], "score": scores}
        ).write_parquet(out_dir / f"{stem}.predictions.parquet")
    return path


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s)


def edit_result(path: os.PathLike, fn) -> dict:
    """Apply `fn(result_dict)` (which edits it in place) to a results JSON; returns it."""
    path = Path(path)
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return data


def make_results_dir(root: os.PathLike, dataset_dir: os.PathLike, entries, seeds=(0, 1, 2)) -> Path:
    """Results for each (model, method, skill) of `entries` over `seeds` under `root`."""
    root = Path(root)
    for model, method, skill in entries:
        for s in seeds:
            make_result(dataset_dir, root, model=model, method=method, seed=s, skill=skill)
    return root


# ---------------------------------------------------------------- a fake Hugging Face Hub


class FakeHub:
    """Just enough of the Hub's HTTP API for huggingface_hub 2.x's `create_repo`,
    `list_repo_files`, `create_commit` (regular and LFS "basic" uploads; start the client
    with HF_HUB_DISABLE_XET=1), `create_tag` and `snapshot_download` (a revision must be
    main, the head commit or a tag), on 127.0.0.1. Every request is
    recorded as (method, path, headers with lower-case names)."""

    token = "hf_fake_test_token_do_not_print_0123456789"  # the only token writes accept

    def __init__(self, lfs_suffixes=(".parquet",)):
        import threading
        from http.server import ThreadingHTTPServer

        self.repos: dict[str, dict] = {}  # "datasets/org/name" -> {"files", "commits", "private"}
        self.blobs: dict[str, bytes] = {}  # LFS objects by sha256
        self.requests: list[tuple[str, str, dict]] = []
        self.lfs_suffixes = lfs_suffixes
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def commits(self, repo: str) -> list[dict]:
        return self.repos[f"datasets/{repo}"]["commits"]

    def files(self, repo: str) -> dict[str, bytes]:
        return self.repos[f"datasets/{repo}"]["files"]

    def _handler(self):
        import base64
        import re
        from http.server import BaseHTTPRequestHandler
        from urllib.parse import unquote, urlparse

        hub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, code, body=b"", headers=None, ctype="application/json"):
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _err(self, code, msg, error_code=None):
                h = {"X-Error-Message": msg}
                if error_code:
                    h["X-Error-Code"] = error_code
                self._send(code, {"error": msg}, h)

            def _record(self):
                with hub.lock:
                    hub.requests.append(
                        (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                    )

            def _repo(self, key):
                repo = hub.repos.get(key)
                if repo is None:
                    self._err(404, "Repository not found", "RepoNotFound")
                return repo

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                self._record()
                u = urlparse(self.path)
                path = unquote(u.path)
                if m := re.fullmatch(r"/api/(datasets)/([^/]+/[^/]+)/revision/([^/]+)", path):
                    repo = self._repo(f"datasets/{m[2]}")
                    if repo is None:
                        return
                    if m[3] not in ("main", repo["sha"], *repo.get("tags", {})):
                        return self._err(404, f"Invalid rev id: {m[3]}", "RevisionNotFound")
                    return self._send(200, {
                        "id": m[2], "sha": repo["sha"], "private": repo["private"],
                        "siblings": [{"rfilename": f} for f in sorted(repo["files"])],
                    })  # fmt: skip
                if m := re.fullmatch(r"/api/(datasets)/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
                    repo = self._repo(f"datasets/{m[2]}")
                    if repo is None:
                        return
                    prefix = (m[4] or "").strip("/")
                    out = []
                    for f, data in sorted(repo["files"].items()):
                        if prefix and not f.startswith(prefix + "/"):
                            continue
                        entry = {"type": "file", "path": f, "size": len(data),
                                 "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}  # fmt: skip
                        if f in repo["lfs"]:
                            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                            "pointerSize": 130}  # fmt: skip
                        out.append(entry)
                    return self._send(200, out)
                if m := re.fullmatch(r"/(datasets)/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    repo = self._repo(f"datasets/{m[2]}")
                    if repo is None:
                        return
                    data = repo["files"].get(m[4])
                    if data is None:
                        return self._err(404, "Entry not found", "EntryNotFound")
                    etag = (hashlib.sha256(data).hexdigest() if m[4] in repo["lfs"]
                            else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())  # fmt: skip
                    return self._send(200, data, {"X-Repo-Commit": repo["sha"], "ETag": f'"{etag}"'},
                                      ctype="application/octet-stream")  # fmt: skip
                self._err(404, f"no route for GET {path}")

            def do_PUT(self):
                self._record()
                body = self._body()
                if m := re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", urlparse(self.path).path):
                    if hashlib.sha256(body).hexdigest() != m[1]:
                        return self._err(400, "sha256 mismatch")
                    hub.blobs[m[1]] = body
                    return self._send(200, b"", {"ETag": '"x"'})
                self._err(404, "no route")

            def do_POST(self):
                self._record()
                u = urlparse(self.path)
                path = unquote(u.path)
                body = self._body()
                if self.headers.get("Authorization", "") != f"Bearer {hub.token}":
                    return self._err(401, "Invalid credentials in Authorization header")
                if path == "/api/repos/create":
                    req = json.loads(body)
                    key = f"{req.get('type', 'model')}s/{req['organization']}/{req['name']}"
                    if key in hub.repos:  # the Hub answers 409 with the repo's url
                        return self._send(409, {"error": "You already created this dataset repo",
                                                "url": f"{hub.url}/{key}"})  # fmt: skip
                    hub.repos[key] = {"files": {}, "lfs": set(), "commits": [], "sha": "0" * 40,
                                      "private": req.get("visibility") == "private"}  # fmt: skip
                    return self._send(200, {"url": f"{hub.url}/{key}"})
                if path == "/api/validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                if m := re.fullmatch(r"/api/(datasets)/([^/]+/[^/]+)/preupload/([^/]+)", path):
                    if self._repo(f"datasets/{m[2]}") is None:
                        return
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [
                        {"path": f["path"], "shouldIgnore": False,
                         "uploadMode": "lfs" if f["path"].endswith(hub.lfs_suffixes) else "regular"}
                        for f in files
                    ]})  # fmt: skip
                if m := re.fullmatch(
                    r"/(datasets)/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path
                ):
                    req = json.loads(body)
                    objs = []
                    for o in req["objects"]:
                        obj = {"oid": o["oid"], "size": o["size"]}
                        if o["oid"] not in hub.blobs:
                            obj["actions"] = {
                                "upload": {"href": f"{hub.url}/lfs-upload/{o['oid']}"},
                                "verify": {"href": f"{hub.url}/lfs-verify"},
                            }
                        objs.append(obj)
                    return self._send(200, {"transfer": "basic", "objects": objs})
                if path == "/lfs-verify":
                    oid = json.loads(body)["oid"]
                    return self._send(200 if oid in hub.blobs else 404, {})
                if m := re.fullmatch(r"/api/(datasets)/([^/]+/[^/]+)/tag/([^/]+)", path):
                    repo = self._repo(f"datasets/{m[2]}")
                    if repo is None:
                        return
                    tag = json.loads(body)["tag"]
                    if tag in repo.setdefault("tags", {}):
                        return self._err(409, f"Tag {tag} already exists")
                    repo["tags"][tag] = repo["sha"] if m[3] == "main" else m[3]
                    return self._send(200, {})
                if m := re.fullmatch(r"/api/(datasets)/([^/]+/[^/]+)/commit/([^/]+)", path):
                    repo = self._repo(f"datasets/{m[2]}")
                    if repo is None:
                        return
                    lines = [json.loads(x) for x in body.splitlines() if x.strip()]
                    header = lines[0]["value"]
                    files, lfs = dict(repo["files"]), set(repo["lfs"])
                    for op in lines[1:]:
                        v = op["value"]
                        if op["key"] == "file":
                            files[v["path"]] = base64.b64decode(v["content"])
                            lfs.discard(v["path"])
                        elif op["key"] == "lfsFile":
                            if v["oid"] not in hub.blobs:
                                return self._err(400, f"LFS object {v['oid']} was never uploaded")
                            files[v["path"]] = hub.blobs[v["oid"]]
                            lfs.add(v["path"])
                        elif op["key"] == "deletedFile":
                            files.pop(v["path"], None)
                            lfs.discard(v["path"])
                        else:
                            return self._err(400, f"unsupported operation {op['key']}")
                    sha = hashlib.sha1(json.dumps(sorted((k, hashlib.sha256(d).hexdigest())
                                       for k, d in files.items())).encode()).hexdigest()  # fmt: skip
                    repo.update(files=files, lfs=lfs, sha=sha)
                    repo["commits"].append({"summary": header["summary"],
                                            "operations": [(o["key"], o["value"]["path"]) for o in lines[1:]]})  # fmt: skip
                    return self._send(200, {"commitUrl": f"{hub.url}/datasets/{m[2]}/commit/{sha}",
                                            "commitOid": sha})  # fmt: skip
                self._err(404, f"no route for POST {path}")

        return H


# ---------------------------------------------------------------- headless Chromium

CHROMIUM = "/usr/bin/chromium"


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    JSON messages separated by NUL on fds 3 and 4), stdlib only. Collects console errors,
    uncaught exceptions, failed loads and JavaScript dialogs of the page."""

    def __init__(self, tmp: Path):
        import tempfile

        self.tmp = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp))
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={self.tmp / 'profile'}",
                "--window-size=1280,900", "--remote-debugging-pipe", "about:blank"]  # fmt: skip
        log = os.open(self.tmp / "chromium.log", os.O_WRONLY | os.O_CREAT, 0o600)
        actions = [(os.POSIX_SPAWN_DUP2, to_chrome_r, 3), (os.POSIX_SPAWN_DUP2, from_chrome_w, 4),
                   (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)]  # fmt: skip
        self.pid = os.posix_spawn(CHROMIUM, args, os.environ, file_actions=actions)
        for fd in (to_chrome_r, from_chrome_w, log):
            os.close(fd)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _read(self, timeout=20.0) -> dict:
        import select

        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._r], [], [], timeout)
            if not ready:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: bool = False, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            d = self._read()
            if d.get("id") == self._id:
                if "error" in d:
                    raise RuntimeError(f"{method}: {d['error']}")
                return d["result"]
            self.events.append(d)

    def goto(self, url: str, timeout=20.0) -> None:
        """Load `url` and wait for its load event. A JavaScript dialog (alert) is dismissed,
        so it cannot stall the page, and stays in the events for problems() to report."""
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        while True:
            if any(e.get("method") == "Page.loadEventFired" for e in self.events):
                return
            d = self._read(timeout)
            self.events.append(d)
            if d.get("method") == "Page.javascriptDialogOpening":
                self._id += 1
                msg = {"id": self._id, "method": "Page.handleJavaScriptDialog",
                       "params": {"accept": True}, "sessionId": self.session}  # fmt: skip
                os.write(self._w, json.dumps(msg).encode() + b"\0")

    def js(self, expression: str):
        r = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                      awaitPromise=True)  # fmt: skip
        if "exceptionDetails" in r:
            raise RuntimeError(f"JavaScript error: {r['exceptionDetails']}")
        return r["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the middle of the element."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", session=True, type=kind, x=box[0], y=box[1],
                      button="left", clickCount=1)  # fmt: skip

    def problems(self) -> list[str]:
        """Console errors, exceptions, failed loads and dialogs seen since the last goto()."""
        self.js("0")  # flush pending events
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(
                    f"exception: {p['exceptionDetails'].get('text')} {p['exceptionDetails'].get('exception', {}).get('description', '')}"
                )
            elif m == "Runtime.consoleAPICalled" and p.get("type") in (
                "error",
                "assert",
                "warning",
            ):
                out.append(
                    f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p.get('args', [])]}"
                )
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(
                    f"log {p['entry']['level']}: {p['entry']['text']} {p['entry'].get('url', '')}"
                )
            elif m == "Page.javascriptDialogOpening":
                out.append(f"dialog: {p.get('message')}")
        return out

    def close(self) -> None:
        import signal
        import time

        try:
            self.call("Browser.close")
        except (EOFError, OSError, TimeoutError, RuntimeError):
            pass
        for _ in range(50):
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self._w)
        os.close(self._r)


def run_cli(capsys, *args):
    """Run `mdrbench ARGS` in-process: (exit code, stdout, stderr)."""
    from mdrbench.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err
