"""The `mdrbench` command: the click group and `main()`. Subcommands live in the modules of
this package, one per command family, and load lazily, so `mdrbench build` never imports
torch (heavy modules are imported inside command bodies)."""

from __future__ import annotations

import importlib
import sys

import click

from mdrbench import __version__
from mdrbench.errors import UserError

# command name -> "module:attribute". Modules listed here import no torch at top level.
COMMANDS = {
    "datasets": "mdrbench.cli.data:datasets_cmd",
    "build": "mdrbench.cli.data:build_cmd",
    "stats": "mdrbench.cli.data:stats_cmd",
    "verify": "mdrbench.cli.data:verify_cmd",
    "synth": "mdrbench.cli.data:synth_cmd",
    "eval": "mdrbench.cli.train:eval_cmd",
    "sweep": "mdrbench.cli.sweep:sweep_cmd",
    "tune": "mdrbench.cli.tune:tune_cmd",
    "table": "mdrbench.cli.train:table_cmd",
    "quickstart": "mdrbench.cli.train:quickstart_cmd",
    "conflict": "mdrbench.cli.conflict:conflict_cmd",
    "validate": "mdrbench.cli.publish:validate_cmd",
    "leaderboard": "mdrbench.cli.publish:leaderboard_grp",
    "publish": "mdrbench.cli.publish:publish_cmd",
    "download": "mdrbench.cli.publish:download_cmd",
    "score": "mdrbench.cli.score:score_cmd",
    "models": "mdrbench.cli.registry:models_cmd",
    "methods": "mdrbench.cli.registry:methods_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not built yet
                return None
            raise
        return with_verbosity(getattr(module, attr, None))


def with_verbosity(cmd):
    """Give a command (each command of a group) the -q/--quiet and -v/--verbose pair, and
    configure logging from them before it runs (mdrbench/log.py): -q shows only warnings and
    errors and no progress bars, -v adds debug messages. A command that declares its own
    `quiet` / `verbose` parameters still receives them."""
    if cmd is None or getattr(cmd, "_mdrbench_verbosity", False):
        return cmd
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            with_verbosity(sub)
        cmd._mdrbench_verbosity = True
        return cmd
    own = {p.name for p in cmd.params} & {"quiet", "verbose"}
    if "quiet" not in own:
        cmd.params.append(click.Option(["--quiet", "-q"], is_flag=True,
                                       help="Only warnings and errors; no progress bars."))  # fmt: skip
    if "verbose" not in own:
        cmd.params.append(click.Option(["--verbose", "-v"], is_flag=True,
                                       help="More detail (debug messages)."))  # fmt: skip
    callback = cmd.callback

    def run(*args, **kwargs):
        from mdrbench import log

        log.setup(quiet=kwargs.get("quiet", False), verbose=kwargs.get("verbose", False))
        for name in ("quiet", "verbose"):
            if name not in own:
                kwargs.pop(name, None)
        return callback(*args, **kwargs)

    cmd.callback = run
    cmd._mdrbench_verbosity = True
    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mdrbench")
def cli():
    """mdrbench: reproducible multi-domain recommendation benchmarks (MAMDR, ICDE 2023).

    Example: mdrbench quickstart
    """


def main(argv=None):
    try:
        rv = cli.main(args=argv, standalone_mode=False)
        if isinstance(rv, int) and rv:  # a command's ctx.exit(code)
            sys.exit(rv)
    except UserError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a file or folder the user named (permissions, full disk, ...)
        if exc.filename is None:
            raise
        what = exc.strerror or type(exc).__name__
        click.echo(
            f"Error: {exc.filename}: {what}. Check the path, its permissions and free space, "
            "then run the command again.",
            err=True,
        )
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
