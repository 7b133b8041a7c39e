"""`mdrbench models` and `mdrbench methods`: what the registries hold, with each entry's
hyperparameters and defaults (the names `--set name=value` accepts). The registries import
torch, so these command bodies do; this module does not."""

from __future__ import annotations

import dataclasses

import click


def _fields(cls, base) -> list[str]:
    """`name=default` of the Config fields `cls` adds to `base` (the common ones are listed
    once, above all entries)."""
    own = {f.name for f in dataclasses.fields(base)}
    out = []
    for f in dataclasses.fields(cls):
        if f.name in own:
            continue
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = "?"
        out.append(f"{f.name}={value}")
    return out


def _first_line(text: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    para = (text or "").strip().split("\n\n")[0]
    return " ".join(para.split())


@click.command("models")
def models_cmd():
    """List the registered models (for `mdrbench eval --model`) and their hyperparameters.

    Every model also has the common ones (emb_dim, dropout, init_std); all are set with
    `--set name=value`.

    Example: mdrbench models
    """
    from mdrbench.config import ModelConfig
    from mdrbench.models import MODELS

    common = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(ModelConfig))
    click.echo(f"common to every model: {common}")
    for name in MODELS:
        cls = MODELS.get(name)
        click.echo(f"{name:14s} {_first_line(cls.__doc__)}")
        own = _fields(cls.Config, ModelConfig)
        if own:
            click.echo(f"{'':14s} {', '.join(own)}")


@click.command("methods")
def methods_cmd():
    """List the registered learning frameworks (for `mdrbench eval --method`) and their
    hyperparameters; `*` marks the recommended one (used by `mdrbench quickstart`).

    Example: mdrbench methods
    """
    from mdrbench.config import FrameworkConfig
    from mdrbench.frameworks import FRAMEWORKS, best_framework

    best = best_framework()
    common = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(FrameworkConfig))
    click.echo(f"common to every method: {common}")
    for name in FRAMEWORKS:
        cls = FRAMEWORKS.get(name)
        mark = "*" if name == best else " "
        click.echo(f"{mark}{name:14s} {cls.summary or _first_line(cls.__doc__)}")
        own = _fields(cls.Config, FrameworkConfig)
        if own:
            click.echo(f" {'':14s} {', '.join(own)}")
