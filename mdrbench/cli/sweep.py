"""`mdrbench sweep`: the benchmark grid in one command (mdrbench/sweep.py does the work).

No torch at import time (the run resolution in the command body imports the trainer).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mdrbench.errors import UserError


def read_grid(path: Path) -> dict[str, Any]:
    """A grid TOML file -> option values (lists for dataset/model/method, a dict of value
    lists for `set`)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        grid = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--grid {path}: cannot read it ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--grid {path}: not valid TOML ({exc})") from None
    from mdrbench.sweep import check_grid

    check_grid(grid, f"--grid {path}")
    out = dict(grid)
    for key in ("dataset", "model", "method"):
        if key in out:
            v = out[key]
            out[key] = [str(x) for x in v] if isinstance(v, list) else [str(v)]
    if "seeds" in out:
        s = out["seeds"]
        out["seeds"] = ",".join(map(str, s)) if isinstance(s, list) else str(s)
    if "set" in out:  # a list is the values to sweep; a single list value is [[64, 32]]
        out["set"] = {k: (v if isinstance(v, list) else [v]) for k, v in out["set"].items()}
    if "out" in out:
        out["out"] = Path(out["out"])
    return out


def engine_options(f):
    """The options of the engine that runs a sweep's runs (`sweep`, `tune`)."""
    for opt in reversed([
        click.option("--backend", type=click.Choice(["local", "ray"]), default=None,
                     help="local: processes on this machine; ray: Ray tasks (pip install "
                     "'mdrbench[ray]').  [default: local]"),
        click.option("--jobs", type=int, default=None,
                     help="Runs at once (each one torch thread unless --set threads=T). "
                     "Default: the cores here (local), the cluster's CPUs (ray). Fewer where "
                     "memory is short."),
        click.option("--address", default=None,
                     help="Ray: the cluster's address (default: $RAY_ADDRESS, else a local Ray)."),
        click.option("--gpus-per-run", type=float, default=None,
                     help="Ray: GPUs each run asks for (e.g. 1, or 0.25 to share one). "
                     "Default: 1 on a cluster with GPUs, else 0."),
        click.option("--retries", type=int, default=None,
                     help="Times a failing run is retried before it is reported.  [default: 1]"),
    ]):  # fmt: skip
        f = opt(f)
    return f


@click.command("sweep")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    help="A built dataset's folder or name (repeatable, or comma-separated). With --backend "
    "ray, a benchmark name not built here is fetched by each node from its pinned Hub home.",
)
@click.option("--model", "models", multiple=True, help="Models: mlp,mmoe (or all).")
@click.option(
    "--method", "methods", multiple=True, help="Learning frameworks: alternate,mamdr (or all)."
)
@click.option("--seeds", default=None, help="Seeds: 0,1,2 or 0-4.  [default: 0,1,2]")
@click.option("--epochs", type=int, default=None, help="Most epochs per stage (= --set epochs=N).")
@click.option(
    "--profile",
    type=click.Choice(["paper", "none"]),
    default=None,
    help="As mdrbench eval's: paper = the authors' published configuration for a benchmark "
    "dataset, before --set; none = mdrbench's defaults.  [default: paper]",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=V1,V2",
    help="A hyperparameter, or a grid of its values (repeatable). A list value "
    "in brackets: --set hidden=[64,32],[128,64].",
)
@click.option(
    "--grid",
    "grid_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A TOML file with these options (options given here win).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the results (and each run's .log).  [default: results]",
)
@engine_options
@click.option(
    "--recompute",
    is_flag=True,
    help="Before skipping a finished run, recompute its metrics from its "
    "predictions (as mdrbench validate does).",
)
@click.option("--dry-run", is_flag=True, help="List the runs and their state; run nothing.")
@click.pass_context
def sweep_cmd(ctx, datasets, models, methods, seeds, epochs, profile, sets, grid_file, out,
              backend, jobs, address, gpus_per_run, retries, recompute, dry_run):  # fmt: skip
    """Run every combination of datasets x models x methods x --set values x seeds through
    `mdrbench eval`, on this machine or a Ray cluster. Resumable: rerun the same command
    after a crash or Ctrl-C and it skips every run whose result and predictions exist and
    validate; a killed run leaves nothing that counts. A failing run is retried, then
    reported with its log; the others go on.

    Each run uses one torch thread unless --set threads=T (keep jobs x T <= cores).

    Example: mdrbench sweep --dataset taobao-10 --model mlp,mmoe --method alternate,mamdr --seeds 0,1,2 --jobs 2 --out results

    Example: mdrbench sweep --dataset amazon-6 --model mlp --method mamdr --set beta=0.1,0.5 --dry-run

    Example: mdrbench sweep --grid grid.toml --backend ray --address auto

    Example: mdrbench sweep --dataset taobao-10 --model all --method all --profile none --dry-run
    """
    from mdrbench import sweep as sw
    from mdrbench.cli.train import parse_seeds

    grid = read_grid(grid_file) if grid_file is not None else {}
    datasets = list(datasets) or grid.get("dataset", [])
    models = list(models) or grid.get("model", ["mlp"])
    methods = list(methods) or grid.get("method", ["alternate"])
    seeds_list = parse_seeds(seeds if seeds is not None else grid.get("seeds", "0,1,2"))
    set_values = dict(grid.get("set", {}))
    set_values.update(sw.parse_grid_sets(sets))
    epochs = epochs if epochs is not None else grid.get("epochs")
    if epochs is not None:
        set_values["epochs"] = [epochs]
    profile = profile or grid.get("profile", "paper")
    out = out if out is not None else grid.get("out", Path("results"))
    backend = backend or grid.get("backend", "local")
    jobs = jobs if jobs is not None else grid.get("jobs")
    address = address or grid.get("address")
    gpus = gpus_per_run if gpus_per_run is not None else grid.get("gpus_per_run")
    retries = retries if retries is not None else grid.get("retries", 1)
    sw.check_engine(backend, jobs, address, gpus, retries)
    if not datasets:
        raise UserError("no dataset: give --dataset NAME_OR_PATH (or dataset = [...] in --grid)")

    runs = sw.expand(datasets, models, methods, seeds_list, set_values, out, profile,
                     hub=backend == "ray")  # fmt: skip
    make_backend, where = sw.engine(runs, backend, jobs, address, gpus, out)
    if dry_run:
        _dry_run(runs, recompute)
        return
    if backend == "local":
        sw.check_devices(runs)
    summary = sw.sweep(runs, make_backend, retries=retries, recompute=recompute, where=where)
    _report(summary, runs, out)
    if summary.interrupted:
        ctx.exit(130)
    if summary.failed:
        ctx.exit(1)


def _dry_run(runs, recompute: bool) -> None:
    from mdrbench import sweep as sw

    counts: dict[str, int] = {}
    rows, notes = [], []
    for i, run in enumerate(runs, 1):
        st = sw.run_status(run, recompute)
        counts[st.state] = counts.get(st.state, 0) + 1
        if st.reason:
            notes.append(f"  #{i} {st.state}: {st.reason}")
        rows.append((str(i), run.dataset_name, run.model, run.method, run.label or "-",
                     str(run.seed), st.state, str(run.path)))  # fmt: skip
    head = ("#", "dataset", "model", "method", "set", "seed", "state", "result")
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head) - 1)]
    for r in [head, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    for note in notes:
        click.echo(note)
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    click.echo(f"{len(runs)} runs: {states}. done = skipped; todo/redo = to run; "
               "conflict = a result of another config or build is in the way.")  # fmt: skip


def _report(summary, runs, out: Path) -> None:
    from mdrbench import sweep as sw

    s = summary
    click.echo(
        f"Sweep {'interrupted' if s.interrupted else 'finished'}: {len(runs)} runs: "
        f"{len(s.skipped)} already done (skipped), {len(s.done)} done now, "
        + (f"{len(s.elsewhere)} done by another process, " if s.elsewhere else "")
        + f"{len(s.failed)} failed"
        + (f", {len(s.not_run)} not run" if s.interrupted else "")
        + f"; {sw.fmt_seconds(s.seconds)}."
    )
    for run, reason in s.failed:
        click.echo(f"  FAILED {run.describe()}: {reason}\n         log: {run.log}")
    if s.interrupted or s.failed:
        click.echo("Rerun the same command to resume: finished runs are skipped.")
    steps = sw.next_commands(s, out)
    if steps:
        click.echo("Next:")
    for line in steps:
        click.echo(f"  {line}")
