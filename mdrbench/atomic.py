"""Putting a finished folder in place in one step, so readers never see half of it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished `tmp` to `target`; an old `target` is moved aside first and
    deleted only once the new one is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
