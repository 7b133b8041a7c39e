"""Messages and progress bars.

Every message goes through the `logging` logger "mdrbench" (child loggers per module), so it
can be silenced, raised to DEBUG or routed to a file or an experiment tracker like any other
library's. The CLI's -q / -v set its level (WARNING / DEBUG; INFO by default) and attach one
stderr handler (`setup`); as a library mdrbench adds no handler unless asked
(`mdrbench.train(verbose=True)` calls `setup`).

Progress bars are tqdm bars on stderr (`bar`): shown only on a terminal (tqdm's own test),
never with -q, and the handler writes through `tqdm.write` so a message never tears a bar.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Iterable

LOGGER = "mdrbench"
logger = logging.getLogger(LOGGER)

_quiet = False  # -q: no bars either


class _TqdmHandler(logging.StreamHandler):
    """Writes each record with tqdm.write (above any bar on screen), to stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
            sys.stderr.flush()
        except Exception:  # never let a message break the work
            self.handleError(record)


def setup(quiet: bool = False, verbose: bool = False) -> None:
    """The CLI's configuration: one stderr handler on the "mdrbench" logger printing the bare
    message; level WARNING with `quiet`, DEBUG with `verbose`, else INFO. Idempotent."""
    global _quiet
    _quiet = bool(quiet)
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logger.setLevel(level)
    if not any(isinstance(h, _TqdmHandler) for h in logger.handlers):
        handler = _TqdmHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False  # printed once, by this handler


def get(name: str) -> logging.Logger:
    """The logger of a module: `mdrbench.<name>`."""
    return logging.getLogger(f"{LOGGER}.{name.removeprefix('mdrbench.')}")


def bar(iterable: Iterable | None = None, *, enabled: bool = True, **kw):
    """A tqdm progress bar on stderr; off with -q or `enabled=False`, and off when stderr is
    not a terminal (notebooks and logs get the logged messages instead)."""
    from tqdm import tqdm

    return tqdm(
        iterable,
        disable=True if (_quiet or not enabled) else None,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
        **kw,
    )


def command(*args) -> str:
    """`mdrbench ARGS` as a shell line a user can paste: each argument quoted where needed
    (a path with spaces stays one argument). Every next step mdrbench prints is built so."""
    return " ".join(["mdrbench", *(shlex.quote(str(a)) for a in args)])
