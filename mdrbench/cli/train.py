"""`mdrbench eval`, `mdrbench table` and `mdrbench quickstart`.

No torch at import time: `mdrbench --help` lists these commands without loading it; the
command bodies import the trainer.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import click

from mdrbench.errors import UserError
from mdrbench.runs import run_seeds

MAX_SEEDS = 1000  # runs one command may ask for


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` or `0-4` (inclusive) or a mix: `0-2,7`. Seeds are 0..2^32-1, at most
    MAX_SEEDS of them."""
    from mdrbench.config import MAX_SEED

    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        a, dash, b = part.partition("-")
        try:
            lo, hi = int(a), int(b) if dash else int(a)
        except ValueError:
            raise UserError(f"--seeds: expected e.g. 0,1,2 or 0-4, got '{text}'") from None
        if not 0 <= lo <= hi <= MAX_SEED:
            raise UserError(
                f"--seeds: '{part}' is not a seed or an increasing range of seeds from 0 to "
                f"{MAX_SEED}"
            )
        if hi - lo + 1 + len(seeds) > MAX_SEEDS:
            raise UserError(f"--seeds: '{text}' asks for more than {MAX_SEEDS} runs")
        seeds += range(lo, hi + 1)
    if not seeds:
        raise UserError(f"--seeds: expected non-negative integers, got '{text}'")
    return list(dict.fromkeys(seeds))


def load_config_file(path: Path, overrides: dict) -> tuple[dict, list]:
    """A recorded config to rerun: a result JSON (one run) or a leaderboard `configs/<id>.json`
    (each of its runs). Returns (the document, [(seed, RunConfig)])."""
    from mdrbench.trainer import config_from_record

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--config {path}: cannot read it ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--config {path}: not a JSON file ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("dataset"), dict):
        raise UserError(
            f"--config {path}: expected a result JSON or a leaderboard configs/<id>.json"
        )
    items = doc.get("runs") if isinstance(doc.get("runs"), list) else [doc]
    runs = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("seed"), int):
            raise UserError(f"--config {path}: a run without an integer seed")
        rec = {"model": doc.get("model"), "method": doc.get("method"), "config": item.get("config")}
        runs.append((item["seed"], config_from_record(rec, overrides)))
    if not runs:
        raise UserError(f"--config {path}: no runs in it")
    return doc, runs


@click.command("eval")
@click.option(
    "--dataset",
    default=None,
    help="A built dataset's folder, or its name under the data dir (with --config: default "
    "the recorded dataset's name).",
)
@click.option("--model", default="mlp", show_default=True, help="A registered model.")
@click.option("--method", default="alternate", show_default=True, help="A learning framework.")
@click.option("--seeds", default="0", show_default=True, help="Seeds: 0,1,2 or 0-4.")
@click.option(
    "--epochs",
    type=int,
    default=None,
    help="Most epochs per stage (= --set epochs=N); default: no cap, early stopping ends it.",
)
@click.option(
    "--profile",
    type=click.Choice(["paper", "none"]),
    default="paper",
    show_default=True,
    help="paper: the authors' published configuration for a benchmark dataset "
    "(baselines/paper_configs.json) before --set; none: mdrbench's defaults.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Rerun a recorded config exactly: a result JSON or a leaderboard configs/<id>.json "
    "(its model, method, seeds and every hyperparameter; --set still applies on top).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a hyperparameter (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Folder for the result JSON files.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
@click.option("--verbose", "-v", is_flag=True, help="Progress per domain too.")
@click.option(
    "--predictions/--no-predictions",
    default=True,
    show_default=True,
    help="Also write each run's test predictions (<stem>.predictions.parquet) for "
    "`mdrbench validate` to recompute the metrics from.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Rerun and replace results already in --out (by default a finished run of the same "
    "config is kept, and one of another config is refused).",
)
def eval_cmd(
    dataset, model, method, seeds, epochs, profile, config_file, sets, out, quiet, verbose,
    predictions, force,
):  # fmt: skip
    """Train MODEL with a learning framework, evaluate every domain, write one JSON per seed
    (and its test predictions, for `mdrbench validate`).

    Early stopping on the average validation AUC (patience 3); the test metrics are those
    of the best epoch. Prints the per-domain test AUC (mean ± std over seeds).

    Example: mdrbench eval --dataset taobao-10 --model mlp --method finetune --seeds 0,1,2

    Example: mdrbench eval --dataset ./data/amazon-6 --model mmoe --set lr=0.002 --set emb_dim=64
    """
    from mdrbench.atomic import new_dirs_removed_on_error
    from mdrbench.config import parse_sets
    from mdrbench.results import aggregate, domain_table, render

    overrides: dict = dict(parse_sets(sets))
    if epochs is not None:
        overrides["epochs"] = epochs
    runs = None
    if config_file is not None:
        doc, runs = load_config_file(config_file, overrides)
        model, method = doc["model"], doc["method"]
        dataset = dataset or doc["dataset"].get("name")
    if not dataset:
        raise UserError("eval needs --dataset (or --config with a recorded dataset)")
    data = None
    if runs is not None:
        from mdrbench.data import load_dataset
        from mdrbench.trainer import resolve_device

        data = load_dataset(dataset, resolve_device(runs[0][1].train.device))
        want = doc["dataset"].get("manifest_sha256")
        if want and want != data.info.manifest_sha256:
            raise UserError(
                f"--config {config_file}: recorded on another build of "
                f"{doc['dataset'].get('name')} (manifest {want[:12]}, this one "
                f"{data.info.manifest_sha256[:12]}); pass that build with --dataset"
            )
    with new_dirs_removed_on_error(out):  # a refused or failed run leaves no empty --out
        records = run_seeds(
            dataset,
            model,
            method,
            parse_seeds(seeds),
            overrides,
            out,
            quiet,
            verbose,
            data=data,
            predictions=predictions,
            force=force,
            profile=profile,
            runs=runs,
        )
    click.echo(render(domain_table(aggregate(records)), "md"))


@click.command("table")
@click.argument("results_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets (repeatable).")
@click.option(
    "--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md", show_default=True
)
@click.option(
    "--split",
    type=click.Choice(["test", "val"]),
    default=None,
    help="Split to show. Default: test; with --long, both.",
)
@click.option(
    "--per-domain/--no-per-domain",
    default=True,
    show_default=True,
    help="Also Table VII per dataset.",
)
@click.option(
    "--long",
    "long_",
    is_flag=True,
    help="With --format csv: one row per result x split x domain, every run (docs/api.md), "
    "instead of the tables.",
)
def table_cmd(results_dir, datasets, fmt, split, per_domain, long_):
    """Tables of results: Table V (rows model+method, columns datasets: average AUC
    mean ± std over seeds, and RANK) and Table VII (AUC of each domain).

    RANK: on each domain the compared entries are ranked by AUC (1 = best, ties share their
    mean rank), then the ranks are averaged over the domains.

    Example: mdrbench table results --dataset taobao-10 --format latex

    Example: mdrbench table results --format csv --long > results.csv
    """
    from mdrbench.results import (
        aggregate,
        frame_csv,
        load_results,
        render,
        results_frame,
        table_v,
        table_vii,
    )  # fmt: skip

    if long_ and fmt != "csv":
        raise UserError("--long is a CSV export: pass --format csv with it")

    results = load_results(results_dir)
    if datasets:
        known = sorted({r["dataset"]["name"] for r in results})
        missing = [d for d in datasets if d not in known]
        if missing:
            raise UserError(
                f"no results for dataset(s) {', '.join(missing)} under {results_dir}; "
                f"found: {', '.join(known) or 'none'}"
            )
        results = [r for r in results if r["dataset"]["name"] in datasets]
    if not results:
        raise UserError(f"no result files (schema_version 1) under {results_dir}")
    if long_:
        df = results_frame(results)
        if split is not None:
            df = df.filter(df["split"] == split)
        click.echo(frame_csv(df), nl=False)
        return
    split = split or "test"
    rows = aggregate(results, split)
    parts = [render(table_v(rows), fmt)]
    if per_domain:
        for ds in dict.fromkeys(r["dataset"] for r in rows):
            parts.append(render(table_vii(rows, ds), fmt))
    click.echo("\n".join(parts))


@click.command("quickstart")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Working folder (default: a new temporary folder).",
)
@click.option(
    "--epochs",
    type=int,
    default=None,
    help="Most epochs per stage (default: no cap; each run trains to early stopping).",
)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option(
    "--size",
    default="tiny",
    show_default=True,
    help="Synthetic data size: a preset (tiny, small, medium) or a number of positives "
    "(tiny: every run trains to early stopping in well under 3 minutes on 2 cores).",
)
@click.option(
    "--threads",
    type=int,
    default=1,
    show_default=True,
    help="torch threads (0 = torch's default). One is robust on a busy 2-core machine.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def quickstart_cmd(out, epochs, seed, size, threads, quiet):
    """Offline demo: synthesize Taobao-format raw files, build a tiny taobao-10, train MLP
    with `alternate` and with the best framework available, print the per-domain comparison.

    Each run trains to early stopping (no epoch cap unless --epochs); about 30 s on 2 CPU
    cores; nothing is downloaded.

    Example: mdrbench quickstart --out ./mdrbench-quickstart
    """
    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.synth import synthesize
    from mdrbench.data import load_dataset
    from mdrbench.frameworks import FRAMEWORKS, best_framework
    from mdrbench.results import aggregate, domain_table, render, table_v
    from mdrbench.trainer import stderr_log

    t0 = time.perf_counter()
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="mdrbench-quickstart-"))
    log = (lambda msg: None) if quiet else stderr_log
    raw = out / "raw" / "taobao"
    log(f"1/3 synthesizing Taobao-format raw files into {raw}")
    synthesize("taobao", raw, n_domains=10, size=size, seed=seed)
    log(f"2/3 building taobao-10 into {out / 'data'}")
    folder = build_dataset("taobao-10", raw_dir=raw, out=out / "data", seed=seed, force=True)
    best = best_framework()
    methods = list(dict.fromkeys(["alternate", best]))
    log(f"3/3 training mlp with {' and '.join(methods)} (best available: {best})")
    data = load_dataset(folder)
    records = []
    for method in methods:
        records += run_seeds(
            str(folder),
            "mlp",
            method,
            [seed],
            {"threads": threads, **({} if epochs is None else {"epochs": epochs})},
            out / "results",
            quiet,
            data=data,
            force=True,  # quickstart's own working folder, rebuilt each time like its data
        )
    rows = aggregate(records)
    click.echo(render(domain_table(rows), "md"))
    click.echo(render(table_v(rows), "md"))
    summary = FRAMEWORKS.get(best).summary
    click.echo(
        f"{best} ({summary}) vs alternate: average test AUC "
        f"{rows[-1]['auc_mean'][0]:.4f} vs {rows[0]['auc_mean'][0]:.4f}; "
        f"{time.perf_counter() - t0:.0f} s in all."
    )
    for r in records:
        for st in r["stages"]:
            if st["stopped_by"] == "cap":
                click.echo(
                    f"{r['method']}: stage {st['name']} stopped at the epoch cap "
                    f"({st['epochs']} epochs)"
                    + (" with validation AUC still rising" if st["val_auc_rising"] else "")
                )
    if not any(r["stopped_at_cap"] for r in records):
        click.echo("Every run trained to early stopping (no epoch cap reached).")
    if best == "mamdr" and rows[-1]["auc_mean"][0] < 0.55:  # as published, near chance here
        click.echo(
            "MAMDR runs as published (paper profile): theta_d start as random draws at "
            "Glorot scale and the outer rate beta is 0.1; on data this small its validation "
            "AUC then stays near 0.5 while its loss falls.\nIt learns with --set beta=0.5 or "
            "--set theta_d_init=zero: the fair comparison tunes both methods on validation "
            "with one budget (docs/tuning.md):"
        )
    from mdrbench.log import command

    click.echo("Tuned comparison (docs/tuning.md; budget 8 per method, 3 seeds; about 15 "
               "minutes on 2 cores, docs/results.md):")
    click.echo("  " + command("tune", "--dataset", folder, "--model", "mlp", "--method",
                              ",".join(methods), "--budget", 8, "--seeds", "0,1,2", "--jobs", 2,
                              *([] if epochs is None else ["--epochs", epochs]),
                              "--out", out / "tuned"))  # fmt: skip
    click.echo(f"Results: {out / 'results'}")
    click.echo(f"Next: three seeds of both, as the leaderboard asks (seed {seed}: kept), and the table:")
    for line in quickstart_next(folder, out / "results", methods, seed, epochs, threads):
        click.echo(f"  {line}")
    sys.stdout.flush()


def quickstart_next(folder, results, methods, seed, epochs, threads) -> list[str]:
    """The quickstart's next steps, runnable as printed: a sweep of its comparison over
    three seeds into its results folder (the runs it made have that config: kept), and
    the table."""
    from mdrbench.log import command

    seeds = ",".join(map(str, dict.fromkeys([seed, seed + 1, seed + 2])))
    cap = [] if epochs is None else ["--epochs", epochs]
    return [
        command("sweep", "--dataset", folder, "--model", "mlp", "--method", ",".join(methods),
                "--seeds", seeds, *cap, "--set", f"threads={threads}", "--out", results),
        command("table", results),
    ]  # fmt: skip
