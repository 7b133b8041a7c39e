"""Where datasets and results live by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """`$MDRBENCH_DATA`, else `~/.cache/mdrbench/datasets`."""
    env = os.environ.get("MDRBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/mdrbench/datasets").expanduser()


def cache_dir() -> Path:
    """`$MDRBENCH_CACHE`, else `$XDG_CACHE_HOME/mdrbench`, else `~/.cache/mdrbench`: small
    bookkeeping only (which dataset files were already checked), safe to delete."""
    env = os.environ.get("MDRBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path("~/.cache").expanduser()) / "mdrbench"


def resolve_dataset(name_or_path: str | os.PathLike) -> Path:
    """A built dataset's folder from a path, or a name under the default data directory."""
    from mdrbench.atomic import recover_swap
    from mdrbench.errors import UserError

    p = Path(name_or_path).expanduser()
    recover_swap(p)  # a --force build killed between its two renames: put the old copy back
    if (p / "manifest.json").is_file():
        return p
    q = default_data_dir() / str(name_or_path)
    if (q / "manifest.json").is_file():
        return q
    raise UserError(
        f"no built dataset at '{name_or_path}' (looked for {p / 'manifest.json'} and "
        f"{q / 'manifest.json'}). Build it first: mdrbench build NAME --out DIR, "
        "or pass the dataset's folder."
    )
