"""Messages go through `logging` (logger "mdrbench"), every command has -q/-v, and tqdm
progress bars show on a terminal only (downloads: tests/test_download.py)."""

from __future__ import annotations

import io
import logging

import click
import pytest
from click.testing import CliRunner
from train_fixtures import tiny_overrides

from mdrbench.cli import COMMANDS, LazyGroup, cli


def _leaves():
    for name in COMMANDS:
        cmd = LazyGroup._load(name)
        if isinstance(cmd, click.Group):
            yield from ((f"{name} {s}", c) for s, c in cmd.commands.items())
        else:
            yield name, cmd


@pytest.mark.parametrize(
    "path, cmd", list(_leaves()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_every_command_has_quiet_and_verbose(path, cmd):
    opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert {"-q", "--quiet", "-v", "--verbose"} <= opts, path


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def records():
    h = Records()
    logger = logging.getLogger("mdrbench")
    logger.addHandler(h)
    yield h.records
    logger.removeHandler(h)


def test_build_messages_go_through_logging_and_q_silences_them(tmp_path, records):
    runner = CliRunner()
    r = runner.invoke(cli, ["synth", "taobao", "--out", str(tmp_path / "raw"), "--size", "tiny",
                            "--domains", "10"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["build", "taobao-10", "--raw-dir", str(tmp_path / "raw"),
                            "--out", str(tmp_path / "data")])  # fmt: skip
    assert r.exit_code == 0, r.output
    msgs = [rec.getMessage() for rec in records]
    assert any(m.startswith("building taobao-10") for m in msgs), msgs
    assert all(rec.name.startswith("mdrbench.") for rec in records)
    assert "building taobao-10" in r.stderr  # the CLI's handler prints them on stderr
    records.clear()
    r = runner.invoke(cli, ["build", "taobao-10", "--raw-dir", str(tmp_path / "raw"),
                            "--out", str(tmp_path / "data"), "--force", "-q"])  # fmt: skip
    assert r.exit_code == 0 and r.stderr == ""
    assert not [rec for rec in records if rec.levelno < logging.WARNING]
    r = runner.invoke(cli, ["datasets", "-v"])
    assert r.exit_code == 0 and logging.getLogger("mdrbench").level == logging.DEBUG


def test_training_rows_bar_on_a_terminal_only(amazon, monkeypatch):
    from mdrbench.trainer import train

    class Tty(io.StringIO):
        def isatty(self):
            return True

    err = Tty()
    monkeypatch.setattr("sys.stderr", err)
    over = tiny_overrides("mlp")
    res = train(amazon, "mlp", "alternate", overrides=over, progress=True)
    assert "epoch 1 [train]" in err.getvalue() and "rows" in err.getvalue()
    assert amazon.train.on_take is None  # the hook is removed after the epoch
    quiet = train(amazon, "mlp", "alternate", overrides=over, progress=False)
    assert quiet.record["metrics"] == res.record["metrics"]  # a bar changes no number
    err.seek(0)
    err.truncate()
    train(amazon, "mlp", "alternate", overrides=over, progress=False)
    assert err.getvalue() == ""
    # Not a terminal: no bar even when asked.
    monkeypatch.setattr("sys.stderr", io.StringIO())
    train(amazon, "mlp", "alternate", overrides=over, progress=True)
    import sys

    assert sys.stderr.getvalue() == ""
