"""`mdrbench tune`: a thin command over mdrbench/tune.py (the library does the work).

No torch at import time (the plan, in the command body, imports the trainer).
"""

from __future__ import annotations

from pathlib import Path

import click

from mdrbench.cli.sweep import engine_options
from mdrbench.errors import UserError


@click.command("tune")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    help="A built dataset's folder or name (repeatable, or comma-separated).",
)
@click.option("--model", "models", multiple=True, help="Models: mlp,mmoe (or all).  [default: mlp]")
@click.option(
    "--method",
    "methods",
    multiple=True,
    help="Learning frameworks: alternate,mamdr (or all).  [default: alternate]",
)
@click.option(
    "--budget",
    type=int,
    default=8,
    show_default=True,
    help="Trials per (dataset, model, method): the same for every method.",
)
@click.option(
    "--search",
    type=click.Choice(["grid", "random"]),
    default=None,
    help="grid: every point of the space; random: a seeded draw without repeats. Default: "
    "grid when the space fits in the budget, else random.",
)
@click.option(
    "--space",
    "space_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A JSON file of search spaces replacing or extending the shipped ones "
    "(baselines/tuning_spaces.json; docs/tuning.md).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random draw.")
@click.option(
    "--select-seeds",
    default="0",
    show_default=True,
    help="Seeds each trial runs on; a trial's score is its mean validation AUC over them.",
)
@click.option(
    "--seeds",
    default="0,1,2",
    show_default=True,
    help="Seeds the selected configuration runs on, as ordinary results.",
)
@click.option("--epochs", type=int, default=None, help="Most epochs per stage (= --set epochs=N).")
@click.option(
    "--profile",
    type=click.Choice(["paper", "none"]),
    default="paper",
    show_default=True,
    help="The configuration the tuned values are set on (as mdrbench eval's --profile).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="A hyperparameter fixed for every trial and run (repeatable); it leaves the space.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the tuned results; the trials go to OUT/trials/.",
)
@engine_options
@click.option("--dry-run", is_flag=True, help="Show the spaces, the trials and their state; run nothing.")
@click.pass_context
def tune_cmd(ctx, datasets, models, methods, budget, search, space_file, seed, select_seeds,
             seeds, epochs, profile, sets, out, backend, jobs, address, gpus_per_run, retries,
             dry_run):  # fmt: skip
    """Tune each method on the validation split within a declared search space and the same
    budget of trials, then run the selected configuration on --seeds as ordinary results
    of the "tuned" track (each carries its trial list). A trial is judged on validation
    AUC only: the test split of a trial is never evaluated. Trials and final runs go
    through the sweep's engine: resumable (rerun the same command; no finished trial is
    rerun), --jobs, --backend ray, retries.

    Example: mdrbench tune --dataset taobao-10 --model mlp --method alternate,mamdr --budget 8 --jobs 2 --out tuned

    Example: mdrbench tune --dataset taobao-10 --model mlp --method mamdr --space my_space.json --dry-run --out tuned
    """
    from mdrbench import sweep as sw
    from mdrbench import tune
    from mdrbench.cli.train import parse_seeds

    backend = backend or "local"
    retries = 1 if retries is None else retries
    sw.check_engine(backend, jobs, address, gpus_per_run, retries)
    if not datasets:
        raise UserError("no dataset: give --dataset NAME_OR_PATH")
    fixed = {}
    for name, values in sw.parse_grid_sets(sets).items():
        if len(values) > 1:
            raise UserError(
                f"--set {name}: tune takes one value per --set; candidate values belong in "
                "a search space (--space FILE, docs/tuning.md)"
            )
        fixed[name] = values[0]
    if epochs is not None:
        fixed["epochs"] = epochs
    studies = tune.plan(
        datasets, models or ["mlp"], methods or ["alternate"], out=out, budget=budget,
        search=search, space_file=space_file, seed=seed, select_seeds=parse_seeds(select_seeds),
        sets=fixed, profile=profile, hub=backend == "ray",
    )  # fmt: skip
    final_seeds = parse_seeds(seeds)
    trials = tune.trial_runs(studies)
    make_backend, where = sw.engine(trials, backend, jobs, address, gpus_per_run, out)
    if dry_run:
        _dry_run(studies, final_seeds, out, fixed, profile)
        return
    if backend == "local":
        sw.check_devices(trials)
    made: list = []

    def shared():  # one backend (one fork server, one Ray) for the trials and the final runs
        if not made:
            made.append(make_backend())
        return made[0]

    try:
        summary = sw.sweep(trials, shared, retries=retries, where=where, name="tune trials",
                           close=False)  # fmt: skip
        if _stopped(ctx, summary, "trials"):
            return
        for st in studies:
            tune.select(st)
            click.echo(tune.describe_space(st) + "\n\n" + tune.trials_table(st) + "\n")
        finals = tune.final_runs(studies, final_seeds, out, fixed, profile)
        sw.assign_threads(finals)
        summary = sw.sweep(finals, shared, retries=retries, where=where, name="tune final",
                           close=False)  # fmt: skip
    finally:
        for b in made:
            b.close()
    if _stopped(ctx, summary, "final runs"):
        return
    _report(studies, finals, summary, out)


def _stopped(ctx, summary, what: str) -> bool:
    """Report an interrupted or failed stage (exit 130 or 1); False when all went well."""
    from mdrbench import sweep as sw

    s = summary
    if not (s.interrupted or s.failed):
        return False
    click.echo(
        f"Tune {'interrupted' if s.interrupted else 'stopped'} in its {what}: "
        f"{len(s.skipped)} already done, {len(s.done)} done now, {len(s.failed)} failed"
        + (f", {len(s.not_run)} not run" if s.interrupted else "")
        + f"; {sw.fmt_seconds(s.seconds)}."
    )
    for run, reason in s.failed:
        click.echo(f"  FAILED {run.describe()}: {reason}\n         log: {run.log}")
    click.echo("Rerun the same command to resume: finished trials and runs are skipped.")
    ctx.exit(130 if s.interrupted else 1)
    return True


def _dry_run(studies, seeds, out: Path, sets: dict, profile: str) -> None:
    from mdrbench import sweep as sw
    from mdrbench import tune

    for st in studies:
        states = []
        for runs in st.trials:
            got = [sw.run_status(r) for r in runs]
            states.append(",".join(dict.fromkeys(g.state for g in got)))
            for r, g in zip(runs, got):
                if g.reason:
                    click.echo(f"  {r.path}: {g.state}: {g.reason}")
        click.echo(tune.describe_space(st) + "\n\n" + tune.trials_table(st, states) + "\n")
        done = all(s == "done" for s in states)
        if done:
            tune.select(st)
            runs = tune.final_runs([st], seeds, out, sets, profile)
            finals = ", ".join(f"seed {r.seed} {sw.run_status(r).state}" for r in runs)
            click.echo(f"  selected: trial {st.selected} (val AUC {st.val_auc[st.selected]:.4f}); "
                       f"final runs: {finals}\n")  # fmt: skip
        else:
            click.echo(f"  then: the selected trial's configuration on seeds "
                       f"{','.join(map(str, seeds))} into {out}\n")  # fmt: skip
    n = sum(len(runs) for st in studies for runs in st.trials)
    click.echo(f"{len(studies)} studies, {n} trial runs. Nothing was run (--dry-run).")


def _report(studies, finals, summary, out: Path) -> None:
    from mdrbench import sweep as sw
    from mdrbench.results import aggregate, read_result, render, table_v

    records = [read_result(r.path) for r in finals]
    click.echo(render(table_v(aggregate(records)), "md"))
    for st in studies:
        values = ", ".join(f"{k}={v}" for k, v in st.configs[st.selected].items()) or "-"
        click.echo(f"{st.describe()}: tuned (trial {st.selected} of {len(st.configs)}, val AUC "
                   f"{st.val_auc[st.selected]:.4f}): {values}")  # fmt: skip
    steps = sw.next_commands(summary, out)
    if steps:
        click.echo("Next:")
    for line in steps:
        click.echo(f"  {line}")
