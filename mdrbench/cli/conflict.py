"""`mdrbench conflict`: the domain-conflict matrix (paper Eq. 9) as JSON and heatmaps.

No torch at import time: the command body imports it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from mdrbench.errors import UserError


def _framework_only(method: str) -> set[str]:
    """Hyperparameter names that belong to framework `method` alone."""
    from mdrbench.config import FrameworkConfig
    from mdrbench.frameworks import FRAMEWORKS

    base = {f.name for f in dataclasses.fields(FrameworkConfig)}
    return {f.name for f in dataclasses.fields(FRAMEWORKS.get(method).Config)} - base


def _fmt(v, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


@click.command("conflict")
@click.option(
    "--dataset", required=True, help="A built dataset's folder, or its name under the data dir."
)
@click.option("--model", default="mlp", show_default=True, help="A registered model.")
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Parameters to analyse: a file saved with torch.save(model.state_dict(), F), or a "
    "framework's state_dict() (its 'model' entry). Default: the model as initialised "
    "with --seed.",
)
@click.option(
    "--compare",
    is_flag=True,
    help="Also train --method from the same start for --epochs and show the matrix before "
    "and after.",
)
@click.option("--method", default="dn", show_default=True, help="Framework --compare trains.")
@click.option(
    "--baseline",
    default=None,
    help="With --compare: also train this framework (e.g. alternate) from the same start "
    "for the same epochs, as a reference for how much training alone changes the matrix.",
)
@click.option("--epochs", type=int, default=3, show_default=True, help="Epochs of --compare.")
@click.option(
    "--rows",
    type=int,
    default=10_000,
    show_default=True,
    help="Training rows sampled per domain for its gradient (0 = all).",
)
@click.option(
    "--params",
    "params_rule",
    default="dense",
    show_default=True,
    help="Parameters compared: dense | all | re:REGEX; of those, the tensors at least two "
    "domains' gradients reach.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Init, sampling, training.")
@click.option(
    "--set", "sets", multiple=True, metavar="NAME=VALUE", help="Override a hyperparameter."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("conflict"),
    show_default=True,
    help="Folder for conflict.json and the heatmaps (SVG, PNG).",
)
@click.option("--quiet", "-q", is_flag=True, help="No training progress lines.")
def conflict_cmd(
    dataset,
    model,
    checkpoint,
    compare,
    method,
    baseline,
    epochs,
    rows,
    params_rule,
    seed,
    sets,
    out,
    quiet,
):
    """Domain conflict: inner products and cosines of per-domain gradients of the shared
    parameters (paper Eq. 9); negative = the two domains pull the parameters apart.

    Writes OUT/conflict.json and a heatmap of the cosines (conflict.svg, conflict.png).
    With --compare: the matrix before and after training --method (DN by default) from the
    same parameters (conflict_before.*, conflict_after.*), so you see whether it reduced
    conflict; --baseline alternate adds the same training with alternate as a reference.

    Example: mdrbench conflict --dataset taobao-10 --model mlp --compare --baseline alternate

    Example: mdrbench conflict --dataset ./data/amazon-6 --checkpoint mlp.pt --set emb_dim=64
    """
    from mdrbench.atomic import writable_dir
    from mdrbench.config import parse_sets

    if rows < 0:
        raise UserError(f"--rows must be >= 0 (0 = all rows), got {rows}")
    if epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {epochs}")
    if baseline and not compare:
        raise UserError("--baseline needs --compare")
    overrides: dict = dict(parse_sets(sets))
    overrides.setdefault("seed", str(seed))
    overrides.setdefault("epochs", str(epochs))

    import torch

    from mdrbench.conflict import compute_conflict, heatmap_png, heatmap_svg, load_checkpoint
    from mdrbench.data import load_dataset
    from mdrbench.models import MODELS
    from mdrbench.trainer import resolve_config, resolve_device, stderr_log, train

    run = resolve_config(model, method, overrides)  # refuse bad names before loading data
    out = writable_dir(out)
    run_base = None
    if baseline:
        mine = _framework_only(method) - _framework_only(baseline)
        keep = {k: v for k, v in overrides.items() if k.rpartition(".")[2] not in mine}
        run_base = resolve_config(model, baseline, keep)
    device = resolve_device(run.train.device)
    data = load_dataset(dataset, device)
    torch.manual_seed(run.train.seed)
    net = MODELS.get(model)(data.info, run.model)
    if checkpoint is not None:
        load_checkpoint(net, checkpoint)
    net.to(device)
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    kw = {"params": params_rule, "rows": rows, "seed": run.train.seed}
    log = None if quiet else stderr_log

    entries: list[tuple[str, str, dict]] = []  # (file stem, label, matrix)
    before = compute_conflict(net, data, **kw)
    start_label = "checkpoint" if checkpoint is not None else "initialisation"
    entries.append(("conflict_before" if compare else "conflict", start_label, before))
    record: dict = {
        "dataset": {"name": data.info.name, "manifest_sha256": data.info.manifest_sha256},
        "model": model,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "seed": run.train.seed,
        "params_rule": params_rule,
        "rows": rows,
    }
    if not compare:
        record.update(before)
    else:
        record["before"] = before
        for key, name, cfg in (("after", method, run), ("baseline", baseline, run_base)):
            if not name:
                continue
            net.load_state_dict(start)
            if log:
                stderr_log(f"== training {model} + {name} for up to {epochs} epoch(s)")
            res = train(data, net, name, run=cfg, log=log, progress=log is not None)
            m = compute_conflict(res.framework.model, data, **kw)
            m["method"] = name
            m["best_epoch"] = res.record["best_epoch"]
            m["val_auc_mean"] = res.record["metrics"]["val"]["auc_mean"]
            m["config"] = cfg.to_dict()
            record[key] = m
            entries.append((f"conflict_{key}", f"after {name}", m))

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "conflict.json"]
    (out / "conflict.json").write_text(json.dumps(record, indent=2) + "\n")
    for stem, label, m in entries:
        title = f"{model} on {data.info.name}: gradient cosines ({label})"
        (out / f"{stem}.svg").write_text(heatmap_svg(m["cosine"], m["domains"], title))
        (out / f"{stem}.png").write_bytes(heatmap_png(m["cosine"]))
        written += [out / f"{stem}.svg", out / f"{stem}.png"]

    click.echo(
        f"Domain conflict of {model} on {data.info.name}: {before['n_params']:,} shared "
        f"parameters ({params_rule}), up to {rows or 'all'} rows per domain"
    )
    click.echo(
        f"{'':28s} {'mean cos':>9s} {'min cos':>9s} {'conflicting':>12s} {'O_C (Eq. 9)':>13s}"
    )
    for _, label, m in entries:
        s = m["summary"]
        pairs = f"{s['conflicting_pairs']}/{s['n_pairs']}"
        click.echo(
            f"{label:28s} {_fmt(s['mean_cosine']):>9s} {_fmt(s['min_cosine']):>9s} "
            f"{pairs:>12s} {_fmt(s['o_c'], '.3e'):>13s}"
        )
    click.echo("wrote " + ", ".join(str(p) for p in written))
