"""The options of `mdrbench build custom` (the user's own table; builders/custom.py does the
work). `build` takes them through `custom_options`; they apply to NAME `custom` only."""

from __future__ import annotations

from pathlib import Path

import click

from mdrbench.errors import UserError

OPTIONS = [
    click.option("--from", "source", type=click.Path(path_type=Path),
                 help="custom: the table, a Parquet or CSV file or a folder of them."),
    click.option("--user-col", help="custom: the user id column."),
    click.option("--item-col", help="custom: the item id column."),
    click.option("--domain-col", help="custom: the domain column (domains in sorted order)."),
    click.option("--label-col", help="custom: the 0/1 label column."),
    click.option("--implicit", is_flag=True,
                 help="custom: every row is a positive; negatives are sampled per domain as "
                 "the MAMDR builders sample them."),
    click.option("--features", help="custom: categorical side fields, comma-separated."),
    click.option("--dense", help="custom: dense (numeric) side fields, comma-separated."),
    click.option("--split", type=click.Choice(["random", "authors", "time"]),
                 help="custom: random 80/10/10 (default), authors (MAMDR's per-user rule) or "
                 "time (per user, by --time-col)."),
    click.option("--time-col", help="custom: the timestamp column (numbers or dates)."),
    click.option("--negatives-per-positive", type=float,
                 help="custom, with --implicit: negatives per positive (default 4)."),
    click.option("--name", "custom_name", help="custom: the dataset's name (its folder in --out)."),
]  # fmt: skip


def custom_options(cmd):
    for option in reversed(OPTIONS):
        cmd = option(cmd)
    return cmd


def run_custom(opts: dict, *, out, domains, seed, force, quiet) -> Path:
    """Build a custom table from `build`'s options (`opts`: the custom ones)."""
    from mdrbench.builders.custom import build_custom

    need = {"source": "--from", "user_col": "--user-col", "item_col": "--item-col",
            "domain_col": "--domain-col", "custom_name": "--name"}  # fmt: skip
    missing = [flag for key, flag in need.items() if not opts.get(key)]
    if missing:
        raise UserError(f"build custom needs {', '.join(missing)} (see mdrbench build --help)")
    if out is None:
        raise UserError("build custom needs --out DIR (the dataset goes to DIR/NAME)")

    def listed(v):
        return [x.strip() for x in v.split(",") if x.strip()] if v else []

    return build_custom(
        opts["source"], user_col=opts["user_col"], item_col=opts["item_col"],
        domain_col=opts["domain_col"], name=opts["custom_name"], out=out,
        label_col=opts.get("label_col"), implicit=bool(opts.get("implicit")),
        features=listed(opts.get("features")), dense=listed(opts.get("dense")),
        split=opts.get("split") or "random", time_col=opts.get("time_col"),
        negatives_per_positive=opts.get("negatives_per_positive"), domains=domains, seed=seed,
        force=force, progress=not quiet,
    )  # fmt: skip


def refuse_outside_custom(opts: dict) -> None:
    given = [k for k, v in opts.items() if v not in (None, False)]
    if given:
        flags = ", ".join("--" + ("name" if k == "custom_name" else "from" if k == "source"
                                  else k.replace("_", "-")) for k in given)  # fmt: skip
        raise UserError(f"{flags}: options of `mdrbench build custom` only")
