"""mdrbench.builders.download against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mdrbench.builders import download as dl
from mdrbench.builders import specs
from mdrbench.errors import UserError

FAST = {"backoff": 0.01, "timeout": 5.0, "progress": False}


def payload(n: int, seed: int = 0) -> bytes:
    """n bytes that are not a repeating pattern (a misplaced resume changes the sha256)."""
    out = bytearray()
    block = seed.to_bytes(4, "big")
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves `server.files` (path -> bytes) with Range support and `server.faults`:

    cut_first: the first response sends the full Content-Length, half the body, then closes.
    short: every response claims the full length, sends half and closes (ignores Range).
    ignore_range: always 200 with the whole body.
    404 / 500: that status for every request.
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        server = self.server
        with server.lock:
            server.requests.append((self.path, self.headers.get("Range")))
            count = sum(1 for p, _ in server.requests if p == self.path)
        fault = server.faults.get(self.path)
        data = server.files.get(self.path)
        if fault in (404, 500) or data is None:
            self.send_error(fault if fault in (404, 500) else 404)
            return

        start, status = 0, 200
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and fault not in ("ignore_range", "short"):
            start = int(m[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if fault == "short" or (fault == "cut_first" and count == 1):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True  # the server then closes the socket: body cut off
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.faults, httpd.requests = {}, {}, []
    httpd.lock = threading.Lock()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def dead_url() -> str:
    """A URL on a port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/x_5.json.gz"


def test_plain_download(server, tmp_path):
    data = payload(3 * dl.CHUNK + 123)  # several chunks
    server.files["/a.gz"] = data
    dest = tmp_path / "sub" / "a.gz"
    assert dl.download([server.base + "/a.gz"], dest, expected_size=len(data), **FAST) == sha(data)
    assert dest.read_bytes() == data
    assert not (tmp_path / "sub" / "a.gz.part").exists()
    assert server.requests == [("/a.gz", None)]


def test_cut_off_halfway_resumes_with_range(server, tmp_path):
    data = payload(200_000)
    server.files["/a.gz"] = data
    server.faults["/a.gz"] = "cut_first"
    dest = tmp_path / "a.gz"
    assert dl.download([server.base + "/a.gz"], dest, **FAST) == sha(data)
    assert dest.read_bytes() == data
    half = len(data) // 2
    assert server.requests == [("/a.gz", None), ("/a.gz", f"bytes={half}-")]


def test_existing_part_is_resumed_and_hash_covers_it(server, tmp_path):
    data = payload(50_000)
    server.files["/a.gz"] = data
    dest = tmp_path / "a.gz"
    (tmp_path / "a.gz.part").write_bytes(data[:12_345])
    assert dl.download([server.base + "/a.gz"], dest, **FAST) == sha(data)
    assert dest.read_bytes() == data
    assert server.requests == [("/a.gz", "bytes=12345-")]


def test_complete_part_gets_416_and_is_kept(server, tmp_path):
    data = payload(10_000)
    server.files["/a.gz"] = data
    dest = tmp_path / "a.gz"
    (tmp_path / "a.gz.part").write_bytes(data)
    assert dl.download([server.base + "/a.gz"], dest, **FAST) == sha(data)
    assert dest.read_bytes() == data
    assert len(server.requests) == 1


def test_part_bigger_than_file_restarts_from_zero(server, tmp_path):
    data = payload(10_000)
    server.files["/a.gz"] = data
    dest = tmp_path / "a.gz"
    (tmp_path / "a.gz.part").write_bytes(payload(20_000, seed=1))
    assert dl.download([server.base + "/a.gz"], dest, **FAST) == sha(data)
    assert dest.read_bytes() == data
    assert server.requests == [("/a.gz", "bytes=20000-"), ("/a.gz", None)]


@pytest.mark.parametrize("status", [404, 500])
def test_falls_back_to_second_url(server, tmp_path, status):
    data = payload(30_000)
    server.files["/orig/a.gz"] = data
    server.files["/mirror/a.gz"] = data
    server.faults["/orig/a.gz"] = status
    dest = tmp_path / "a.gz"
    urls = [server.base + "/orig/a.gz", server.base + "/mirror/a.gz"]
    assert dl.download(urls, dest, retries=2, **FAST) == sha(data)
    assert dest.read_bytes() == data
    tried = [p for p, _ in server.requests]
    # 404 is final for that URL; 500 is retried (1 try + 2 retries) first.
    assert tried == ["/orig/a.gz"] * (1 if status == 404 else 3) + ["/mirror/a.gz"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = payload(40_000)
    server.files["/a.gz"] = data
    server.faults["/a.gz"] = "ignore_range"
    dest = tmp_path / "a.gz"
    (tmp_path / "a.gz.part").write_bytes(data[:1000])
    assert dl.download([server.base + "/a.gz"], dest, **FAST) == sha(data)
    assert dest.read_bytes() == data
    assert server.requests == [("/a.gz", "bytes=1000-")]


def test_expected_size_mismatch_is_an_error_and_leaves_no_file(server, tmp_path):
    data = payload(5_000)
    server.files["/a.gz"] = data
    dest = tmp_path / "a.gz"
    with pytest.raises(dl.DownloadError, match="expected 5001"):
        dl.download([server.base + "/a.gz"], dest, expected_size=len(data) + 1, **FAST)
    assert os.listdir(tmp_path) == []


def test_server_always_short_is_an_error_and_leaves_no_file(server, tmp_path):
    server.files["/a.gz"] = payload(8_000)
    server.faults["/a.gz"] = "short"
    dest = tmp_path / "a.gz"
    with pytest.raises(dl.DownloadError) as err:
        dl.download([server.base + "/a.gz"], dest, retries=2, **FAST)
    assert not dest.exists()
    assert len(server.requests) == 3  # one try and two retries, each cut off
    assert "/a.gz" in str(err.value)


def test_nothing_reachable_names_file_urls_and_folder(tmp_path):
    urls = [dead_url(), dead_url().replace("/x_5", "/mirror/x_5")]
    dest = tmp_path / "raw" / "x_5.json.gz"
    with pytest.raises(dl.DownloadError) as err:
        dl.download(urls, dest, retries=1, **FAST)
    assert isinstance(err.value, UserError)
    msg = str(err.value)
    assert "x_5.json.gz" in msg
    for url in urls:
        assert url in msg
    assert f"put it in {dest.parent}" in msg
    assert f"--raw-dir {dest.parent}" in msg
    assert not dest.exists()


@pytest.fixture
def cli_logging():
    """Messages configured as the CLI does (INFO on stderr via the "mdrbench" logger)."""
    from mdrbench import log

    log.setup()
    yield
    log.setup()


def test_progress_line_when_not_a_tty(server, tmp_path, capsys, cli_logging):
    server.files["/a.gz"] = payload(1000)
    dl.download([server.base + "/a.gz"], tmp_path / "a.gz", backoff=0.01)
    assert capsys.readouterr().err == "  downloading a.gz\n"


def test_progress_bar_on_a_tty_starts_where_the_part_file_ends(monkeypatch, cli_logging):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    err = Tty()
    monkeypatch.setattr("sys.stderr", err)
    bar = dl._Progress("Gift_Cards_5.json.gz", True)
    bar.start(int(12.3 * dl.MIB), int(45.6 * dl.MIB))  # a resumed .part of 12.3 MiB
    out = err.getvalue()
    assert "  downloading Gift_Cards_5.json.gz (resuming at 12.3 MiB)\n" in out
    assert "Gift_Cards_5.json.gz:  27%" in out and "12.3M/45.6M" in out  # tqdm, in bytes
    assert bar.bar.n == int(12.3 * dl.MIB)
    bar.update(int(45.6 * dl.MIB))
    assert bar.bar.n == int(45.6 * dl.MIB)
    bar.close()
    assert err.getvalue().endswith("\r")  # the bar is cleared (leave=False)

    # -q: no bar, no message.
    from mdrbench import log

    log.setup(quiet=True)
    err.seek(0)
    err.truncate()
    bar = dl._Progress("x.gz", True)
    bar.start(0, 100)
    bar.update(100)
    bar.close()
    assert err.getvalue() == ""


def test_amazon_urls():
    assert dl.amazon_urls("Patio Lawn and Garden") == [
        specs.AMAZON_URL + "Patio_Lawn_and_Garden_5.json.gz",
        specs.AMAZON_MIRROR + "Patio_Lawn_and_Garden_5.json.gz",
    ]


@pytest.fixture
def amazon(server, monkeypatch):
    monkeypatch.setattr(specs, "AMAZON_URL", server.base + "/orig/")
    monkeypatch.setattr(specs, "AMAZON_MIRROR", server.base + "/mirror/")
    return server


def test_ensure_uses_existing_files_and_downloads_only_the_missing_one(amazon, tmp_path):
    gift = gzip.compress(payload(3000, seed=2), mtime=0)  # a gzip, or it is not kept
    amazon.files["/orig/Digital_Music_5.json.gz"] = gift
    (tmp_path / "Software_5.json.gz").write_bytes(b"already here")
    got = dl.ensure_amazon_files(["Software", "Digital Music"], tmp_path, progress=False)
    assert got == {
        "Software": tmp_path / "Software_5.json.gz",
        "Digital Music": tmp_path / "Digital_Music_5.json.gz",
    }
    assert got["Digital Music"].read_bytes() == gift
    assert got["Software"].read_bytes() == b"already here"
    assert amazon.requests == [("/orig/Digital_Music_5.json.gz", None)]

    # Everything present now: no request at all.
    dl.ensure_amazon_files(["Software", "Digital Music"], tmp_path, progress=False)
    assert len(amazon.requests) == 1


def test_ensure_offline_names_each_missing_file(amazon, tmp_path):
    (tmp_path / "Software_5.json.gz").write_bytes(b"x")
    with pytest.raises(UserError) as err:
        dl.ensure_amazon_files(
            ["Software", "Gift Cards", "Luxury Beauty"], tmp_path, offline=True, progress=False
        )
    msg = str(err.value)
    assert amazon.requests == []
    assert "Software_5" not in msg
    for name in ("Gift_Cards_5.json.gz", "Luxury_Beauty_5.json.gz"):
        assert amazon.base + "/orig/" + name in msg
        assert amazon.base + "/mirror/" + name in msg
    assert f"put it in {tmp_path}" in msg


def test_ensure_names_each_file_that_failed(amazon, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "download", _fast(dl.download))
    amazon.files["/mirror/Digital_Music_5.json.gz"] = gzip.compress(payload(100), mtime=0)  # only this one exists
    with pytest.raises(UserError) as err:
        dl.ensure_amazon_files(
            ["Digital Music", "Software", "Luxury Beauty"], tmp_path, progress=False
        )
    msg = str(err.value)
    assert (tmp_path / "Digital_Music_5.json.gz").read_bytes() == gzip.compress(payload(100), mtime=0)
    assert "Digital_Music" not in msg
    for name in ("Software_5.json.gz", "Luxury_Beauty_5.json.gz"):
        assert amazon.base + "/orig/" + name in msg
        assert amazon.base + "/mirror/" + name in msg
    assert "404" in msg
    assert f"put it in {tmp_path}" in msg


def _fast(download):
    def wrapped(urls, dest, **kw):
        return download(urls, dest, **{**kw, "backoff": 0.01, "timeout": 5.0})

    return wrapped


def test_retry_note_when_cut_off(server, tmp_path, capsys, cli_logging):
    server.files["/a.gz"] = payload(100_000)
    server.faults["/a.gz"] = "cut_first"
    dl.download([server.base + "/a.gz"], tmp_path / "a.gz", backoff=0.01)
    assert capsys.readouterr().err == (
        "  downloading a.gz\n"
        "  a.gz: ProtocolError: Connection broken: IncompleteRead; retrying in 0.01s\n"
    )


def test_ensure_stops_downloading_when_nothing_is_reachable(tmp_path, monkeypatch):
    monkeypatch.setattr(specs, "AMAZON_URL", dead_url().rsplit("/", 1)[0] + "/")
    monkeypatch.setattr(specs, "AMAZON_MIRROR", dead_url().rsplit("/", 1)[0] + "/")
    calls = []
    fast = _fast(dl.download)

    def counting(urls, dest, **kw):
        calls.append(dest)
        return fast(urls, dest, **kw)

    monkeypatch.setattr(dl, "download", counting)
    with pytest.raises(UserError) as err:
        dl.ensure_amazon_files(["Gift Cards", "Software"], tmp_path, progress=False)
    assert calls == [tmp_path / "Gift_Cards_5.json.gz"]
    msg = str(err.value)
    assert "Connection refused" in msg
    assert specs.AMAZON_URL + "Software_5.json.gz" in msg
    assert specs.AMAZON_MIRROR + "Software_5.json.gz" in msg
    assert "not tried" in msg
