"""Dataset commands: datasets, build, stats, verify, synth. No torch imported here."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mdrbench.cli.custom import custom_options
from mdrbench.errors import UserError


def _split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise UserError("an empty list was given: name at least one value, comma-separated")
    return items


@click.command("datasets")
def datasets_cmd():
    """List the registered dataset specs (name, kind, domains, spec version).

    Example: mdrbench datasets
    """
    from mdrbench.builders.specs import DATASETS, FIELD_DATASETS

    for name in DATASETS:
        spec = DATASETS.get(name)
        doms = ", ".join(f"{d.name} ({d.ctr_ratio:.2f})" for d in spec.domains)
        click.echo(f"{name}  [{spec.kind}, spec {spec.version}, {len(spec.domains)} domains]")
        click.echo(f"    {spec.description}")
        click.echo(f"    domains (CTR ratio): {doms}")
    for name in FIELD_DATASETS:  # labels of their own: no CTR ratio
        spec = FIELD_DATASETS.get(name)
        click.echo(f"{name}  [Scenario-Wise Rec's recipe, {len(spec.domains)} domains]")
        click.echo(f"    {spec.description}")
        click.echo(f"    domains: {', '.join(spec.domain_names)}")


@click.command("build")
@click.argument("name")
@click.option(
    "--raw-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of raw files. Amazon: files already there are used, missing ones "
    "downloaded into it. Taobao: required (login-only download).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder; the dataset goes to OUT/NAME. Default: $MDRBENCH_DATA or "
    "~/.cache/mdrbench/datasets.",
)
@click.option(
    "--domains", help='Comma-separated subset of the spec\'s domains, e.g. "Gift Cards,Software".'
)
@click.option(
    "--ctr-ratios",
    help="Comma-separated CTR ratios (#pos/#neg), one per kept domain, "
    "instead of the paper's pinned ones.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of negative sampling and split."
)
@click.option(
    "--on-bad-lines",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="Fail on a malformed raw line, or skip it (the manifest counts skipped lines).",
)
@click.option("--offline", is_flag=True, help="Never download: use only files in --raw-dir.")
@click.option("--force", is_flag=True, help="Replace an existing dataset at OUT/NAME.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages.")
@custom_options
def build_cmd(name, raw_dir, out, domains, ctr_ratios, seed, on_bad_lines, offline, force, quiet,
              **custom):  # fmt: skip
    """Build dataset NAME (see `mdrbench datasets`) as Parquet with a manifest; NAME
    `custom` builds your own table (docs/format.md, "Your own table").

    Example: mdrbench build amazon-13 --raw-dir raw/ --domains "Gift Cards" --out data/
    """
    from mdrbench.atomic import new_dirs_removed_on_error
    from mdrbench.builders.build import build_dataset
    from mdrbench.cli.custom import refuse_outside_custom, run_custom

    if name == "custom":
        with new_dirs_removed_on_error(out):
            path = run_custom(custom, out=out, domains=_split_list(domains), seed=seed,
                              force=force, quiet=quiet)  # fmt: skip
        click.echo(str(path))
        return
    refuse_outside_custom(custom)

    ratios = None
    if ctr_ratios is not None:
        try:
            ratios = [float(r) for r in _split_list(ctr_ratios)]
        except ValueError:
            raise UserError(
                f"--ctr-ratios must be numbers, comma-separated, not '{ctr_ratios}'"
            ) from None
    with new_dirs_removed_on_error(out):
        path = build_dataset(
            name, raw_dir=raw_dir, out=out, domains=_split_list(domains), ctr_ratios=ratios,
            seed=seed, force=force, on_bad_lines=on_bad_lines, offline=offline,
            progress=not quiet,
        )  # fmt: skip
    click.echo(str(path))


@click.command("stats")
@click.argument("name_or_path")
@click.option(
    "--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md", show_default=True
)
def stats_cmd(name_or_path, fmt):
    """Print the paper's statistics tables (Table I; Tables II-IV per domain) of a built dataset.

    Example: mdrbench stats data/taobao-10
    """
    from mdrbench.builders.manifest import load_manifest, stats_tables
    from mdrbench.paths import resolve_dataset

    folder = resolve_dataset(name_or_path)
    try:
        text = stats_tables(load_manifest(folder), fmt)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        why = f"no field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UserError(
            f"{folder / 'manifest.json'} lacks the statistics ({why}): "
            "not a complete mdrbench manifest; rebuild the dataset."
        ) from None
    click.echo(text)


@click.command("verify")
@click.argument("path", type=click.Path(path_type=Path))
def verify_cmd(path):
    """Re-hash every file of a built dataset against its manifest; exit 1 on any mismatch.

    Example: mdrbench verify data/amazon-6
    """
    from mdrbench.builders.manifest import load_manifest, verify
    from mdrbench.paths import resolve_dataset

    path = resolve_dataset(path)
    manifest = load_manifest(path)
    problems = verify(path)
    if problems:
        for p in problems:
            click.echo(f"MISMATCH {p}", err=True)
        click.echo(
            f"{path}: {len(problems)} problem(s); rebuild or re-download the dataset.", err=True
        )
        sys.exit(1)
    click.echo(f"{path}: OK ({len(manifest['files'])} files match the manifest)")


@click.command("synth")
@click.argument("kind")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the raw files.",
)
@click.option(
    "--domains",
    "n_domains",
    type=int,
    default=None,
    help="Number of domains (amazon: categories, default 13; taobao: themes, default 30).",
)
@click.option(
    "--size",
    default="small",
    show_default=True,
    help="tiny, small, medium, paper, or a total number of positive interactions.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def synth_cmd(kind, out, n_domains, size, seed):
    """Write synthetic raw files in exactly the real formats (offline stand-in for the data).
    KIND: amazon, taobao, or one of the field's datasets (movielens-1m, ...).

    Example: mdrbench synth taobao --out raw/ && mdrbench build taobao-10 --raw-dir raw/
    """
    from mdrbench.builders.field import synth_field
    from mdrbench.builders.synth import synthesize

    size_arg = int(size) if size.isdigit() else size
    if kind not in ("amazon", "taobao"):
        click.echo(str(synth_field(kind, out, n_domains=n_domains, size=size_arg, seed=seed)))
        return
    path = synthesize(kind, out, n_domains=n_domains, size=size_arg, seed=seed)
    click.echo(str(path))
