"""Errors a user can cause: each says what was wrong and what to do."""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input (names, files, options). The CLI prints it and exits 2."""


class Busy(UserError):
    """Another mdrbench process holds the lock of this work right now (`atomic.Lock`): the
    same work may succeed once it is done (a sweep waits for it instead of failing)."""


class TrainingDiverged(UserError):
    """Training produced a non-finite loss or prediction: the hyperparameters do not train
    (a tuning trial records it as a trial without a validation AUC)."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """`unknown dataset 'amazon6'; did you mean 'amazon-6'? Valid: ...`."""
    valid = list(valid)
    same = [v for v in valid if v.casefold() == str(name).casefold()]  # names are lowercase
    close = same or difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else "."
    return UserError(f"unknown {kind} '{name}'{hint} Valid names: {', '.join(valid)}")


def name_problem(name: object) -> str | None:
    """What is wrong with a model, method or dataset name, or None: it must be a non-empty
    string without control or format characters (a newline, a tab, an escape sequence, a
    right-to-left override), which would end up in file names, logs and tables."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    bad = sorted({c for c in name if unicodedata.category(c)[0] == "C" or c in "\u2028\u2029"})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad)
        return f"holds control or format character(s) {shown}"
    return None
