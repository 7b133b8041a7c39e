"""Every command is documented in the README and has an example in its --help."""

from pathlib import Path

import click
import pytest

from mdrbench.cli import COMMANDS, LazyGroup, cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _leaves():
    for name in COMMANDS:
        cmd = LazyGroup._load(name)
        assert cmd is not None, f"command {name} is registered but its module is missing"
        if isinstance(cmd, click.Group):
            for sub in cmd.commands:
                yield f"{name} {sub}", cmd.commands[sub]
        else:
            yield name, cmd


@pytest.mark.parametrize(
    "path, cmd", list(_leaves()), ids=lambda x: x if isinstance(x, str) else ""
)
def test_command_documented_with_example(path, cmd):
    assert f"mdrbench {path}" in README, f"README has no usage of `mdrbench {path}`"
    assert "Example:" in (cmd.help or ""), f"`mdrbench {path} --help` has no Example:"


def test_top_level_help_lists_every_command():
    from click.testing import CliRunner

    out = CliRunner().invoke(cli, ["--help"]).output
    for name in COMMANDS:
        assert name in out
