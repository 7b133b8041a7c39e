"""`mdrbench score`: a model trained anywhere (FuxiCTR, DeepCTR, TorchRec, the authors' TF
code, ...) -> a result file `mdrbench validate` accepts like one of `mdrbench eval`'s,
computed by the one evaluator from its test predictions. No torch at import time."""

from __future__ import annotations

from pathlib import Path

import click

from mdrbench.config import MAX_SEED
from mdrbench.errors import UserError


@click.command("score")
@click.argument("predictions", type=click.Path(path_type=Path))
@click.option(
    "--dataset", required=True, help="The built dataset the model was tested on (folder or name)."
)
@click.option("--model-name", required=True, help="Name of the model, as tables show it.")
@click.option(
    "--method-name", required=True, help="Name of the training method, as tables show it."
)
@click.option(
    "--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
    help="The run's seed.",
)  # fmt: skip
@click.option(
    "--val-predictions",
    type=click.Path(path_type=Path),
    default=None,
    help="Predictions of the validation split (same format), for metrics.val; "
    "without it metrics.val is null.",
)
@click.option("--logits", is_flag=True, help="Scores are logits: apply a sigmoid first.")
@click.option(
    "--in-split-order", is_flag=True,
    help="The files have no user_id, item_id, domain_id columns: their rows are in the "
    "split's stored order (never assumed without this flag).",
)  # fmt: skip
@click.option(
    "--train-seconds", type=click.FloatRange(0), default=0.0, show_default=True,
    help="Training time to record.",
)  # fmt: skip
@click.option(
    "--n-parameters", type=click.IntRange(0), default=0, show_default=True,
    help="Trainable parameters of the model, to record.",
)  # fmt: skip
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the result JSON and its predictions Parquet.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="A hyperparameter of the model, recorded in the result's config (repeatable): runs "
    "that differ only by seed form one leaderboard entry.",
)
@click.option("--force", is_flag=True, help="Replace a result of the same name in --out.")
def score_cmd(
    predictions, dataset, model_name, method_name, seed, val_predictions, logits,
    in_split_order, train_seconds, n_parameters, sets, out, force,
):  # fmt: skip
    """Turn test predictions made by any framework into a result file, with the one
    evaluator.

    PREDICTIONS is a Parquet (or CSV) file with a `score` column (click probability; see
    --logits) for every row of the dataset's test split: keyed by `user_id`, `item_id`,
    `domain_id` (all three; rows in any order, each row of the split exactly once), or,
    with --in-split-order only, in the split's stored order (an optional `label` column is
    checked against it). Writes OUT/<dataset>__<model>__<method>
    __seed<N>.json and beside it the predictions in the split's order, from which
    `mdrbench validate` recomputes every metric. See docs/api.md.

    Example: mdrbench score preds.parquet --dataset data/taobao-10 --model-name deepfm-fuxictr --method-name joint --out results/
    """
    from mdrbench.api import Evaluator, external_result, load_dataset
    from mdrbench.config import parse_sets
    from mdrbench.log import command
    from mdrbench.results import aggregate, domain_table, render, result_path
    from mdrbench.runs import save_result

    ds = load_dataset(dataset)
    test = Evaluator(ds, "test")
    scores = test.scores(predictions, logits=logits, in_split_order=in_split_order)
    val_metrics = None
    if val_predictions is not None:
        val_metrics = Evaluator(ds, "val").eval(
            val_predictions, logits=logits, in_split_order=in_split_order
        )
    record = external_result(
        ds, test, scores, model=model_name, method=method_name, seed=seed,
        val_metrics=val_metrics, train_seconds=train_seconds, n_parameters=n_parameters,
        config={"hyperparameters": dict(parse_sets(sets))},
    )  # fmt: skip
    target = result_path(out, ds.name, model_name, method_name, seed)
    if target.exists() and not force:
        raise UserError(f"{target} exists: pass --force to replace it, or --out another folder")
    path = save_result(
        record, out, (test.rows["domain_id"], test.rows["label"]), scores, force=True
    )  # replacing was refused above unless --force
    click.echo(render(domain_table(aggregate([record])), "md"))
    check = command("validate", path, "--dataset", ds.path, "--min-seeds", 1)
    click.echo(f"wrote {path}; check it with: {check}")
