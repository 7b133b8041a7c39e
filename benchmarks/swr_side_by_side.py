"""Issue 20's models: mdrbench against Scenario-Wise Rec's own model classes and training
loop, on the same data, batch size and thread count, in the same process, back to back (run
by hand, not a test). Figures go into docs/benchmarks.md.

For each model (sarnet, m2m, adasparse, adaptdhm, epnet, ppnet, hamur, m3oe):

- **Speed.** One training epoch over the same rows of a synthetic built amazon-6, batch
  1024, Adam 1e-3 (no weight decay in either), one thread unless `--threads`, in samples
  per second of this process's CPU time (the work done; wall-clock figures are kept too,
  but on a shared machine they also count waits for the cores):
  Scenario-Wise Rec's `CTRTrainer.train_one_epoch` over its `DataGenerator` DataLoader
  (`num_workers=0`), and mdrbench's `joint` epoch (mixed-domain shuffled batches, as SWR's
  loader; sparse embedding updates) and `alternate` epoch (one domain per batch). Both
  build the same architecture: user, item and domain fields `--emb-dim` wide, the model's
  defaults (baselines/swr_profile.json) and mdrbench's options that give SWR's way
  (`swr.reference(name)`, dropout included). `--reps` repetitions, the median reported.
- **Against the limit.** Training FLOPs per sample (forward + backward matmuls of one
  step on a mixed batch of 1024 rows, `torch.utils.flop_counter.FlopCounterMode`, divided
  by 1024; for SWR's module too, which counts the work it wastes) times samples/s, as a
  share of this machine's one-thread matmul rate measured here (the best of a few GEMM
  shapes).
- **Equivalence** where the architectures match: SWR's module's weights loaded into
  mdrbench's through a name map, eval mode, float64, one batch; max |logit difference|
  (SWR's probabilities through torch.logit). M2M is skipped (its nn.Transformer attends
  across the batch's rows: docs/models.md). HAMUR is compared on a batch of one domain
  (SWR's domain norm takes statistics over all rows of a mixed batch).

Scenario-Wise Rec must be importable (it is never vendored here): for this script only,

    git clone https://github.com/Xiaopengli1/Scenario-Wise-Rec && pip install --no-deps ./Scenario-Wise-Rec
    pip install pandas scikit-learn tqdm
    python benchmarks/swr_side_by_side.py --work /tmp/swr-bench --json swr.json

Without it the script says so and exits (status 2).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/bench_common.py
from bench_common import built_dataset, subset_train  # noqa: E402

MODELS = ("sarnet", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet", "hamur", "m3oe")
NO_EQUIVALENCE = {"m2m": "SWR's nn.Transformer attends across the rows of the batch"}


# ----------------------------------------------------------------------------- building


def mdrbench_model(name: str, info, emb_dim: int):
    from mdrbench.baselines import swr
    from mdrbench.models import build_model

    return build_model(name, info, emb_dim=emb_dim, **swr.reference(name))


def swr_model(name: str, info, emb_dim: int):
    """SWR's class for `name`, built as its Amazon run script does, over the same three
    fields as mdrbench's (user, item, domain), with the same sizes."""
    from scenario_wise_rec.basic.features import SparseFeature
    from scenario_wise_rec.models import multi_domain as M

    from mdrbench.baselines import swr

    c = swr.defaults(name)
    u = SparseFeature("user_id", vocab_size=info.n_users, embed_dim=emb_dim)
    i = SparseFeature("item_id", vocab_size=info.n_items, embed_dim=emb_dim)
    d = SparseFeature("domain_indicator", vocab_size=info.n_domains, embed_dim=emb_dim)
    n = info.n_domains
    if name == "sarnet":
        return M.Sarnet([u, i, d], n, c["n_shared_experts"], c["n_specific_experts"])
    if name == "m2m":
        dims = {"num_encoder_layers": c["encoder_layers"], "num_decoder_layers": 2,
                "dim_feedforward": c["ff_dim"]}  # fmt: skip
        return M.M2M([u, i, d], [d], n, c["n_experts"], c["expert_dim"], dims)
    if name == "adasparse":
        mlp = {"dims": c["hidden"], "dropout": swr.reference(name)["dropout"], "activation": "relu"}
        return M.AdaSparse([d], [u, i], mlp, "Fusion", c["epsilon"], c["factor_max"],
                           c["alpha_init"], c["delta_alpha"])  # fmt: skip
    if name == "adaptdhm":
        return M.AdaptDHM([u, i, d], list(c["hidden"]), c["n_clusters"], c["center_momentum"], "cpu")
    if name == "epnet":
        return M.EPNet([d], [u, i], list(c["hidden"]))
    if name == "ppnet":
        return M.PPNet([u, i], [d], n, list(c["hidden"]))
    if name == "hamur":
        return M.HamurSmall([u, i, d], n, list(c["hidden"]), list(c["hyper_hidden"]), c["rank"])
    if name == "m3oe":
        h = c["hidden"]  # SWR's fcn_dims repeat the representation width (docs/models.md)
        return M.M3oE([u, i, d], n, [h[0], h[1], h[1], *h[2:]], c["n_experts"], c["exp_d"],
                      1.0, c["bal_d"], 1.0, device="cpu")  # fmt: skip
    raise KeyError(name)


def swr_batch(batch: dict) -> dict:
    return {"user_id": batch["user_id"], "item_id": batch["item_id"],
            "domain_indicator": batch["domain_id"]}  # fmt: skip


# ----------------------------------------------------------------------------- name maps


def _dnn_index(layer: int, part: int, batch_norm: bool, dropout: bool) -> int:
    """Index in mdrbench's DNN of `part` (0 Linear, 1 BatchNorm) of hidden layer `layer`."""
    return layer * (2 + batch_norm + dropout) + part


def _put(dst: dict, name: str, value: torch.Tensor) -> None:
    assert name in dst, name
    assert dst[name].shape == value.shape, (name, dst[name].shape, value.shape)
    dst[name] = value


def load_swr_weights(name: str, ours, theirs) -> None:
    """Copy SWR's weights into mdrbench's module (the two must be the same architecture:
    mdrbench built with `swr.reference(name)`)."""
    src = theirs.state_dict()
    dst = dict(ours.state_dict())
    fields = {"user_id": "user", "item_id": "item", "domain_indicator": "domain"}
    for k, v in src.items():
        if ".embed_dict." in k:
            _put(dst, f"inputs.{fields[k.split('.')[-2]]}.weight", v)
    bn = bool(getattr(ours.cfg, "batch_norm", False))
    drop = ours.cfg.dropout > 0

    def mlp(prefix_src: str, prefix_dst: str, n_layers: int, stride_src: int = 4, dropout=drop):
        """SWR's MLP blocks (Linear, BatchNorm, act, Dropout) onto mdrbench's DNN."""
        for li in range(n_layers):
            for part, suffixes in ((0, ("weight", "bias")),
                                   (1, ("weight", "bias", "running_mean", "running_var"))):  # fmt: skip
                if part == 1 and not bn:
                    continue
                for s in suffixes:
                    j = _dnn_index(li, part, bn, dropout)
                    _put(dst, f"{prefix_dst}.{j}.{s}", src[f"{prefix_src}.{li * stride_src + part}.{s}"])

    if name == "sarnet":
        n = ours.info.n_domains
        dst["scale"] = torch.cat([src[f"domain_weight.{d}"] for d in range(n)])
        dst["shift"] = torch.stack([src[f"domain_bias.{d}"] for d in range(n)])
        banks = [("shared_expert", "shared", ours.shared)]
        banks += [(f"domain_specific_expert.{d}", f"specific.{d}", ours.specific[d]) for d in range(n)]
        for s_pre, d_pre, bank in banks:
            k = bank.weight.shape[0]
            dst[f"{d_pre}.weight"] = torch.stack([src[f"{s_pre}.{e}.linear.weight"].T for e in range(k)])
            dst[f"{d_pre}.bias"] = torch.stack([src[f"{s_pre}.{e}.linear.bias"] for e in range(k)])
            dst[f"{d_pre}.gamma"] = torch.stack([src[f"{s_pre}.{e}.bn.weight"] for e in range(k)])
            dst[f"{d_pre}.beta"] = torch.stack([src[f"{s_pre}.{e}.bn.bias"] for e in range(k)])
            for s in ("running_mean", "running_var"):
                dst[f"{d_pre}.norm.{s}"] = src[f"{s_pre}.0.bn.{s}"]
        _put(dst, "gate.weight", src["gate_net.weight"])
        _put(dst, "gate.bias", src["gate_net.bias"])
        layers = len(ours.cfg.hidden)
        mlp("final_mlp.mlp", "mlp", layers)
        _put(dst, "head.weight", src[f"final_mlp.mlp.{4 * layers}.weight"])
        _put(dst, "head.bias", src[f"final_mlp.mlp.{4 * layers}.bias"])
    elif name == "adasparse":
        for li in range(len(ours.pruners)):
            _put(dst, f"pruners.{li}.weight", src[f"pruner_layers.{li}.linear.weight"])
        for li in range(len(ours.layers)):
            for s in ("weight", "bias"):
                _put(dst, f"layers.{li}.0.{s}", src[f"mlp_layers.{li}.0.{s}"])
            if bn:
                for s in ("weight", "bias", "running_mean", "running_var"):
                    _put(dst, f"layers.{li}.1.{s}", src[f"mlp_layers.{li}.1.{s}"])
        last = len(ours.layers)
        _put(dst, "head.weight", src[f"mlp_layers.{last}.weight"])
        _put(dst, "head.bias", src[f"mlp_layers.{last}.bias"])
        dst["alpha"] = theirs.alpha + theirs.delta_alpha  # SWR adds delta before its use
    elif name == "adaptdhm":
        for li in range(len(ours.layers)):
            _put(dst, f"layers.{li}.weight", src[f"domain_w.0.{li}"])
            dst[f"layers.{li}.domain_weight"] = torch.stack(
                [src[f"domain_w.{k + 1}.{li}"] for k in range(ours.cfg.n_clusters)]
            )
        dst["centers"] = theirs.center.clone()
    elif name == "epnet":
        _put(dst, "gate.fc1.weight", src["gatenu.network.0.weight"])
        _put(dst, "gate.fc1.bias", src["gatenu.network.0.bias"])
        _put(dst, "gate.fc2.weight", src["gatenu.network.2.weight"])
        _put(dst, "gate.fc2.bias", src["gatenu.network.2.bias"])
        _put(dst, "head.weight", src["mlp.mlp.0.weight"])
        _put(dst, "head.bias", src["mlp.mlp.0.bias"])
    elif name == "ppnet":
        for d in range(len(ours.towers)):
            t_src, t_dst = f"domain_tower.{d}", f"towers.{d}"
            for li in range(len(ours.cfg.hidden)):
                mlp(f"{t_src}.mlp_layers.{li}.mlp", f"{t_dst}.layers.{li}", 1)
                for a, b in (("0", "fc1"), ("2", "fc2")):
                    for s in ("weight", "bias"):
                        _put(dst, f"{t_dst}.gates.{li}.{b}.{s}", src[f"{t_src}.gate_layers.{li}.network.{a}.{s}"])
            _put(dst, f"{t_dst}.head.weight", src[f"{t_src}.final_layer.weight"])
            _put(dst, f"{t_dst}.head.bias", src[f"{t_src}.final_layer.bias"])
    elif name == "hamur":
        for d in range(ours.info.n_domains):
            for li in range(len(ours.cfg.hidden)):  # SWR: Linear, BatchNorm, ReLU per layer
                for s in ("weight", "bias"):
                    _put(dst, f"backbone.{d}.layers.{li}.0.{s}", src[f"layer_list.{d}.{3 * li}.{s}"])
                for s in ("weight", "bias", "running_mean", "running_var"):
                    _put(dst, f"backbone.{d}.layers.{li}.1.{s}", src[f"layer_list.{d}.{3 * li + 1}.{s}"])
            last = 3 * len(ours.cfg.hidden)
            _put(dst, f"backbone.{d}.head.weight", src[f"layer_list.{d}.{last}.weight"])
            _put(dst, f"backbone.{d}.head.bias", src[f"layer_list.{d}.{last}.bias"])
        mlp("hyper_net", "hyper", len(ours.cfg.hyper_hidden) + 1, dropout=False)
        ad = "adapters.0"
        for a, b in (("u.0", "u_down"), ("v.0", "v_down"), ("u.1", "u_up"), ("v.1", "v_up"),
                     ("b_list.0", "b_down"), ("b_list.1", "b_up"), ("gamma1", "norm.gamma"),
                     ("bias1", "norm.beta")):  # fmt: skip
            _put(dst, f"{ad}.{b}", src[a])
    elif name == "m3oe":
        for a, b in (("skip_conn.domain_specific", "skip"), ("star_mlp.domain_specific", "star_mlp")):
            for j in (0, 1):
                for s in ("weight", "bias"):
                    _put(dst, f"{b}.{j}.{s}", src[f"{a}.{j}.{s}"])
        n = ours.info.n_domains
        _put(dst, "star.weight", src["shared_weight"])
        _put(dst, "star.bias", src["shared_bias"])
        dst["star.domain_weight"] = torch.stack([src[f"slot_weight.{d}"] for d in range(n)])
        dst["star.domain_bias"] = torch.stack([src[f"slot_bias.{d}"] for d in range(n)])
        for s_pre, d_pre, k in (("expert", "experts", ours.cfg.n_experts), ("domain_expert", "domain_experts", n)):
            for j in range(len(ours.cfg.hidden) - 2):
                lin = [f"{s_pre}.{e}.domain_specific.{3 * j}" for e in range(k)]
                ln = [f"{s_pre}.{e}.domain_specific.{3 * j + 1}" for e in range(k)]
                dst[f"{d_pre}.weights.{j}"] = torch.stack([src[p + ".weight"].T for p in lin])
                dst[f"{d_pre}.biases.{j}"] = torch.stack([src[p + ".bias"][None] for p in lin])
                dst[f"{d_pre}.norm_weights.{j}"] = torch.stack([src[p + ".weight"][None] for p in ln])
                dst[f"{d_pre}.norm_biases.{j}"] = torch.stack([src[p + ".bias"][None] for p in ln])
        dst["gate_weight"] = torch.stack([src[f"gate.{d}.0.weight"].T for d in range(n)])
        dst["gate_bias"] = torch.stack([src[f"gate.{d}.0.bias"] for d in range(n)])
        _put(dst, "w_exp", src["_weight_exp_d.deep_weights"])
        _put(dst, "w_bal", src["_weight_bal_d.deep_weights"])
        for d in range(n):
            for a, b in (("0", "0"), ("1", "1"), ("3", "4")):
                for s in ("weight", "bias"):
                    _put(dst, f"towers.{d}.{b}.{s}", src[f"tower.{d}.{a}.{s}"])
    ours.load_state_dict(dst)


def equivalence(name: str, data, emb_dim: int) -> float:
    """max |logit difference| on one batch, eval mode, float64, SWR's weights in both."""
    torch.manual_seed(1)
    theirs = swr_model(name, data.info, emb_dim)
    ours = mdrbench_model(name, data.info, emb_dim)
    # give BatchNorm moving averages and every weight non-trivial values: a few SWR
    # training-mode passes, then random embeddings large enough to matter
    theirs.train()
    with torch.no_grad():
        for batch in data.train.batches(256, None, torch.Generator().manual_seed(0)):
            theirs(swr_batch(batch))
            break
        for k, v in theirs.state_dict().items():
            if ".embed_dict." in k:
                v.normal_(0.0, 0.5)
    load_swr_weights(name, ours, theirs)
    theirs.double().eval()
    ours.double().eval()
    if name == "adaptdhm":
        theirs.center = theirs.center.double()
    rows = torch.arange(0, len(data.train), max(1, len(data.train) // 512))[:512]
    if name == "hamur":  # one domain: SWR's norm uses the whole batch's statistics
        start, stop = data.train.offsets[1], data.train.offsets[2]
        rows = torch.arange(start, min(start + 512, stop))
    batch = data.train.take(rows)
    with torch.no_grad():
        p = theirs(swr_batch(batch))
        if name == "adasparse":  # SWR added delta again in that call: compare at its alpha
            ours.alpha.copy_(theirs.alpha)
        logits = ours(batch)
    return float((torch.logit(p.double()) - logits).abs().max())


# ----------------------------------------------------------------------------- timing


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of fn(). With one thread, CPU seconds are
    the work done: on a machine other processes share, wall time also counts the waits."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def mdrbench_epoch(name: str, data, emb_dim: int, method: str) -> tuple[float, float]:
    from mdrbench.config import TrainConfig
    from mdrbench.frameworks import FRAMEWORKS, Context

    torch.manual_seed(0)
    model = mdrbench_model(name, data.info, emb_dim)
    ctx = Context(data=data, train=TrainConfig(batch_size=1024, lr=1e-3),
                  device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))  # fmt: skip
    fw = FRAMEWORKS.get(method)(model, ctx)
    model.train()
    wall, cpu = _timed(lambda: fw.train_epoch(1, list(range(data.info.n_domains))))
    return len(data.train) / wall, len(data.train) / cpu


def swr_epoch(name: str, data, emb_dim: int) -> tuple[float, float]:
    """SWR's loop: its DataGenerator's DataLoader (shuffled, batch 1024, no workers) and
    CTRTrainer.train_one_epoch (Adam 1e-3, no weight decay, BCELoss on probabilities)."""
    import pandas as pd
    from scenario_wise_rec.trainers import CTRTrainer
    from scenario_wise_rec.utils.data import DataGenerator

    s = data.train
    x = pd.DataFrame({"user_id": s.user_id.numpy(), "item_id": s.item_id.numpy(),
                      "domain_indicator": s.domain_id.numpy()})  # fmt: skip
    x = {k: np.asarray(v) for k, v in x.to_dict("list").items()}
    y = s.label.numpy()
    torch.manual_seed(0)
    model = swr_model(name, data.info, emb_dim)
    loader, _, _ = DataGenerator(x, y).generate_dataloader(
        x_val=x, y_val=y, x_test=x, y_test=y, batch_size=1024, num_workers=0
    )
    trainer = CTRTrainer(model, "bench", optimizer_params={"lr": 1e-3, "weight_decay": 0.0},
                         n_epoch=1, device="cpu", model_path="/tmp")  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        wall, cpu = _timed(lambda: trainer.train_one_epoch(loader))
    return len(y) / wall, len(y) / cpu


def train_flops_per_sample(module, batch: dict, rows: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    module.train()
    counter = FlopCounterMode(display=False)
    with counter:
        out = module(batch)
        out.float().sum().backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops() / rows


def matmul_rate(seconds: float = 1.0) -> float:
    """Best one-thread float32 GEMM rate over a few shapes of this workload's kind, FLOP
    per CPU second."""
    best = 0.0
    for m, k, n in ((1024, 384, 256), (1024, 256, 256), (1024, 512, 512)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        reps, t0 = 0, time.process_time()  # CPU time, as the epochs
        while time.process_time() - t0 < seconds:
            a @ b
            reps += 1
        best = max(best, 2 * m * k * n * reps / (time.process_time() - t0))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mdrbench-swr"))
    ap.add_argument("--size", type=int, default=40_000, help="positives of the synthetic amazon-6")
    ap.add_argument("--train-rows", type=int, default=51_200, help="training rows timed (0: all)")
    ap.add_argument("--emb-dim", type=int, default=128)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    try:
        import scenario_wise_rec  # noqa: F401
    except ImportError:
        print(
            "Scenario-Wise Rec is not importable: clone github Xiaopengli1/Scenario-Wise-Rec and "
            "`pip install --no-deps` it (plus pandas, scikit-learn, tqdm) to run this benchmark.",
            file=sys.stderr,
        )
        return 2
    from mdrbench.data import load_dataset

    torch.set_num_threads(args.threads)
    data = load_dataset(built_dataset(args.work, args.size))
    subset_train(data, args.train_rows)
    info = data.info
    rate = matmul_rate()
    print(f"{info.name}: {info.n_users:,} users, {info.n_items:,} items, {info.n_domains} domains, "
          f"{len(data.train):,} training rows; batch 1024; emb_dim {args.emb_dim}; torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s); matmul {rate / 1e9:.1f} GFLOP/s",
          flush=True)  # fmt: skip
    mixed = data.train.take(torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:1024])
    out = {"dataset": info.name, "train_rows": len(data.train), "threads": torch.get_num_threads(),
           "emb_dim": args.emb_dim, "matmul_flops": rate, "torch": torch.__version__, "models": {}}  # fmt: skip
    for name in args.models.split(","):
        rate = max(rate, matmul_rate())  # the best seen: other processes only lower it
        runs = {"swr": [], "joint": [], "alternate": []}  # (wall, cpu) samples/s per rep
        for _ in range(args.reps):
            runs["swr"].append(swr_epoch(name, data, args.emb_dim))
            runs["joint"].append(mdrbench_epoch(name, data, args.emb_dim, "joint"))
            runs["alternate"].append(mdrbench_epoch(name, data, args.emb_dim, "alternate"))
        # samples per CPU second (the work), median over reps; wall-clock ones kept too
        med = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
        med_wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
        torch.manual_seed(0)
        flops = train_flops_per_sample(mdrbench_model(name, info, args.emb_dim), mixed, 1024)
        flops_swr = train_flops_per_sample(swr_model(name, info, args.emb_dim), swr_batch(mixed), 1024)
        diff = None if name in NO_EQUIVALENCE else equivalence(name, data, args.emb_dim)
        row = {"samples_per_second": runs, "median": med, "median_wall": med_wall,
               "train_flops_per_sample": flops,
               "swr_train_flops_per_sample": flops_swr,
               "share_of_matmul_rate": {k: flops * v / rate for k, v in med.items() if k != "swr"},
               "swr_share_of_matmul_rate": flops_swr * med["swr"] / rate,
               "max_abs_logit_diff": diff, "no_equivalence": NO_EQUIVALENCE.get(name)}  # fmt: skip
        out["models"][name] = row
        eq = "skipped" if diff is None else f"{diff:.1e}"
        print(f"| {name} | {med['swr']:,.0f} | {med['joint']:,.0f} | {med['joint'] / med['swr']:.2f}x | "
              f"{med['alternate']:,.0f} | {flops / 1e6:.2f} | {flops_swr / 1e6:.2f} | "
              f"{row['share_of_matmul_rate']['joint']:.0%} | {row['share_of_matmul_rate']['alternate']:.0%} | "
              f"{eq} |", flush=True)  # fmt: skip
    out["matmul_flops"] = rate
    for row in out["models"].values():  # shares against the best rate seen in the run
        flops, med = row["train_flops_per_sample"], row["median"]
        row["share_of_matmul_rate"] = {k: flops * v / rate for k, v in med.items() if k != "swr"}
        row["swr_share_of_matmul_rate"] = row["swr_train_flops_per_sample"] * med["swr"] / rate
    print(f"best one-thread matmul rate seen: {rate / 1e9:.1f} GFLOP/s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
