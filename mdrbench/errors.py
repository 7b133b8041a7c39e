"""Errors a user can cause: each says what was wrong and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input (names, files, options). The CLI prints it and exits 2."""


class Busy(UserError):
    """Another mdrbench process holds the lock of this work right now (`atomic.Lock`): the
    same work may succeed once it is done (a sweep waits for it instead of failing)."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """`unknown dataset 'amazon6'; did you mean 'amazon-6'? Valid: ...`."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else "."
    return UserError(f"unknown {kind} '{name}'{hint} Valid names: {', '.join(valid)}")
