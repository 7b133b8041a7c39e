"""The Python API (docs/api.md), exported at the top level of the package:

    import mdrbench
    ds = mdrbench.load_dataset("taobao-10")          # a built folder, or a name
    ds.split("train")                                 # polars DataFrame (ds.to_pandas(...))
    data = ds.to_torch()                              # tensors for training (MDRData)
    res = mdrbench.train(ds, "mlp", "alternate", seed=0, out="results")
    df = mdrbench.load_results("results")             # long polars DataFrame
    ev = mdrbench.Evaluator("taobao-10")              # OGB-style, for models trained elsewhere
    ev.eval({"score": test_scores})

Nothing here imports torch at module level: `import mdrbench` stays light, and the polars
views never load it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mdrbench.errors import UserError

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"validation": "val", "valid": "val"}  # the Hub's / datasets' names


def _split_name(split: str) -> str:
    s = _SPLIT_ALIASES.get(split, split)
    if s not in SPLITS:
        raise UserError(f"unknown split '{split}'; valid: train, val (or validation), test")
    return s


class Dataset:
    """A built benchmark dataset on disk (docs/format.md): its manifest, polars / pandas
    views of its splits and feature tables, and a torch view for training.

    Get one with `mdrbench.load_dataset(name_or_path)`."""

    def __init__(self, path: str | os.PathLike, *, verify: bool = True):
        from mdrbench.builders.manifest import file_sha256, load_manifest
        from mdrbench.paths import resolve_dataset

        self.path: Path = resolve_dataset(path)
        self.verified: bool = verify  # False: rows are read without the manifest check
        self.check()
        self.manifest: dict = load_manifest(self.path)
        self.manifest_sha256: str = file_sha256(self.path / "manifest.json")
        domains = sorted(self.manifest["domains"], key=lambda d: d["id"])
        self.domain_names: tuple[str, ...] = tuple(str(d["name"]) for d in domains)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind", ""))

    @property
    def n_domains(self) -> int:
        return len(self.domain_names)

    @property
    def has_features(self) -> bool:
        return (self.path / "user_features.parquet").is_file()

    def __repr__(self) -> str:
        t = self.manifest["totals"]
        return (
            f"Dataset({self.name!r}, {self.n_domains} domains, train/val/test "
            f"{t['n_train']:,}/{t['n_val']:,}/{t['n_test']:,} rows, path={str(self.path)!r})"
        )

    def check(self) -> None:
        """Refuse files that no longer match the manifest (UserError naming them), with the
        cached check `eval` runs (`builders.manifest.check_dataset`: a file unchanged since
        its last check is not re-hashed). Every read of rows runs it first, unless the
        dataset was loaded with `verify=False`."""
        if self.verified:
            from mdrbench.builders.manifest import check_dataset

            check_dataset(self.path)

    def split(self, split: str = "train", *, domain_names: bool = True, lazy: bool = False):
        """One split as a polars DataFrame (`lazy=True`: a LazyFrame scanning the Parquet):
        user_id, item_id, domain_id, label, the row fields, and (`domain_names`) `domain`,
        the domain's name as a polars Enum. The files are checked against the manifest first
        (`check`)."""
        import polars as pl

        self.check()
        frame = pl.scan_parquet(self.path / f"{_split_name(split)}.parquet")
        if domain_names:
            names = pl.Enum(list(self.domain_names))
            frame = frame.with_columns(
                pl.col("domain_id")
                .cast(pl.UInt32)
                .replace_strict(list(range(self.n_domains)), list(self.domain_names))
                .cast(names)
                .alias("domain")
            )
        return frame if lazy else frame.collect()

    def to_pandas(self, split: str = "train", *, domain_names: bool = True):
        """One split as a pandas DataFrame (needs pandas installed)."""
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise UserError("to_pandas needs pandas: pip install pandas") from None
        return self.split(split, domain_names=domain_names).to_pandas()

    def features(self, who: str = "user"):
        """The fixed feature table (`who` = "user" or "item") as a polars DataFrame
        (`<who>_id`, `features`: 128 float32), or None when the dataset has none (Amazon)."""
        import polars as pl

        if who not in ("user", "item"):
            raise UserError(f"features: who must be 'user' or 'item', not '{who}'")
        self.check()
        f = self.path / f"{who}_features.parquet"
        return pl.read_parquet(f) if f.is_file() else None

    @property
    def fields(self) -> list[dict]:
        """The side fields the manifest declares (docs/format.md, "Side fields"): dicts of
        name, kind (categorical / dense), owner (user / item / row) and cardinality."""
        return [dict(f) for f in self.manifest.get("fields") or []]

    def field_table(self, who: str = "user"):
        """The user (item) fields as a polars DataFrame, one row per `<who>_id` (categorical:
        int32 codes; dense: float32 in [0, 1]), or None when the build has none. Row fields
        are columns of `split()`."""
        import polars as pl

        if who not in ("user", "item"):
            raise UserError(f"field_table: who must be 'user' or 'item', not '{who}'")
        self.check()
        f = self.path / f"{who}_fields.parquet"
        return pl.read_parquet(f) if f.is_file() else None

    def to_torch(self, device: str = "cpu"):
        """Tensors for training (`mdrbench.data.MDRData`): `.train`, `.val`, `.test` splits
        with `.batches(batch_size)` (each batch carries the side fields by name), and
        `.info` (ids, domains, feature width, `fields`)."""
        from mdrbench.data import load_dataset as load_tensors

        return load_tensors(self.path, device, check=self.verified)

    def verify(self) -> list[str]:
        """Re-hash every file against the manifest; the problems (empty when all match)."""
        from mdrbench.builders.manifest import verify

        return verify(self.path)


def load_dataset(
    name_or_path: str | os.PathLike, *, download: bool = True, verify: bool = True
) -> Dataset:
    """A benchmark dataset: a built folder, or a name (e.g. "taobao-10") found in the data
    directory ($MDRBENCH_DATA or ~/.cache/mdrbench/datasets); a benchmark name not there is
    downloaded (`download=True`) from its pinned Hub home (the spec's repository and
    revision) into the data directory, every file verified against its manifest.

    Its files are checked against the manifest now and before each read of rows, with the
    cached check `mdrbench eval` runs: a changed or damaged file raises UserError naming it.
    `verify=False` is the only way round it (rows of a build that may not be the one its
    manifest describes)."""
    from mdrbench.builders.specs import DATASETS
    from mdrbench.paths import default_data_dir

    p = Path(name_or_path).expanduser()
    name = str(name_or_path)
    local = (p / "manifest.json").is_file() or (default_data_dir() / name / "manifest.json").is_file()
    if not local and download and name in DATASETS:  # the MAMDR five (the field's: build them)
        from mdrbench import hub

        try:
            hub.fetch_dataset(name, default_data_dir())
        except UserError as exc:
            raise UserError(
                f"{name} is not in the data directory {default_data_dir()}, and {exc}\n"
                f"Or build it: mdrbench build {name} --raw-dir RAW_DIR (then load_dataset"
                f"('{name}')), or pass a built folder; download=False skips the Hub."
            ) from None
    return Dataset(name_or_path, verify=verify)


# ----------------------------------------------------------------------------- training


def train(
    dataset: Dataset | str | os.PathLike | Any,
    model: Any = "mlp",
    method: Any = "alternate",
    *,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    predictions: bool = True,
    verbose: bool = False,
    force: bool = False,
    **overrides: Any,
):
    """Train `model` (a registered name, or an nn.Module with forward(batch) -> logits) with
    the learning framework `method` on `dataset` (a Dataset, a built folder or name, or
    MDRData); keyword arguments override hyperparameters as `--set` does (epochs=3,
    lr=0.002, threads=1, ...). With `out`, the result JSON (and its test predictions) is
    written there as `mdrbench eval` writes it (a result there of another config is replaced
    only with `force=True`). `verbose`: epoch lines through logging and a progress bar of
    training rows on a terminal. Returns a `RunResult`: `.record` (the
    result), `.history` (one entry per epoch), `.framework`, `.test_scores`."""
    from mdrbench.data import MDRData
    from mdrbench.runs import save_result, split_arrays
    from mdrbench.trainer import stderr_log
    from mdrbench.trainer import train as run_training

    if isinstance(dataset, Dataset):
        dataset = dataset.to_torch()
    elif not isinstance(dataset, MDRData):
        dataset = load_dataset(dataset).to_torch()
    if verbose:
        from mdrbench.log import setup

        setup()  # INFO messages on stderr (nothing is configured when used as a library)
    res = run_training(
        dataset, model, method, seed=seed, overrides=overrides,
        log=stderr_log if verbose else None, progress=verbose,
    )  # fmt: skip
    if out is not None:
        test = split_arrays(dataset.test) if predictions else None
        res.path = save_result(res.record, Path(out), test, res.test_scores, force=force)
    return res


# ----------------------------------------------------------------------------- evaluation

KEYS = ("user_id", "item_id", "domain_id")

EXPECTED_INPUT_FORMAT = """\
==== Expected input format of mdrbench.Evaluator ====
Keyed (any order): {"user_id": ..., "item_id": ..., "domain_id": ..., "score": ...}, each
row of the split exactly once; all three keys, or none.
In the split's stored order (Dataset.split(split) gives that order): {"score": scores} for
every row, accepted only with in_split_order=True (`mdrbench score --in-split-order`).
- score: click probabilities in [0, 1] (apply a sigmoid to logits); 1-D array-like.
- label (optional, in stored order): checked against the split.
A dict of arrays, a polars or pandas DataFrame, or a Parquet / CSV file with these columns.
==== Output of Evaluator.eval ====
{"auc_mean", "auc_weighted", "logloss", "domains": {name: {"auc", "logloss", "n"}}},
computed by the one evaluator (mdrbench.evaluate); AUC is exact."""


class Evaluator:
    """OGB-style evaluator of one dataset split, for predictions made by any framework.

        ev = mdrbench.Evaluator("taobao-10")     # a name or folder, or a Dataset
        print(ev.expected_input_format)
        metrics = ev.eval(df)                    # user_id, item_id, domain_id, score
        metrics = ev.eval({"score": scores}, in_split_order=True)  # every test row, in order

    Labels and domains come from the dataset itself, never from the input; the numbers
    come from `mdrbench.evaluate.evaluate`, as for results of `mdrbench eval`."""

    expected_input_format = EXPECTED_INPUT_FORMAT

    def __init__(self, dataset: Dataset | str | os.PathLike, split: str = "test"):
        import polars as pl

        self.dataset = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
        self.split = _split_name(split)
        self.dataset.check()
        self.rows = pl.read_parquet(
            self.dataset.path / f"{self.split}.parquet",
            columns=["user_id", "item_id", "domain_id", "label"],
        )

    def __repr__(self) -> str:
        return f"Evaluator({self.dataset.name!r}, split={self.split!r}, rows={self.rows.height})"

    def scores(
        self, predictions: Any, *, logits: bool = False, in_split_order: bool = False
    ) -> np.ndarray:
        """The input's scores aligned to the split's stored order (float64), after every
        check of the expected input format (see `expected_input_format`): matched by
        `user_id`, `item_id`, `domain_id` whenever the input has them (it must have all
        three or none, and match the split's rows one to one); without them, taken in the
        stored order only with `in_split_order=True`, never by default."""
        import polars as pl

        df = _as_frame(predictions)
        where = _describe(predictions)
        if "score" not in df.columns:
            raise UserError(
                f"{where} has no 'score' column (found: {', '.join(df.columns) or 'none'}); "
                "write one click probability per row as 'score'"
            )
        n = self.rows.height
        given = [k for k in KEYS if k in df.columns]
        if given and len(given) < len(KEYS):
            missing = [k for k in KEYS if k not in given]
            raise UserError(
                f"{where} has key column(s) {', '.join(given)} but not {', '.join(missing)}: "
                "rows are matched to the split by all three of user_id, item_id, domain_id "
                f"(add {', '.join(missing)}), never by position while keys are given"
            )
        if given:
            score = self._keyed(df, where)
        elif not in_split_order:
            raise UserError(
                f"{where} has no user_id, item_id, domain_id columns, so nothing says which "
                f"row of the {self.split} split each score belongs to: add those columns "
                "(rows in any order), or, if the rows are in the split's stored order, say so "
                "with --in-split-order (in Python: in_split_order=True)"
            )
        else:
            if df.height != n:
                raise UserError(
                    f"{where} has {df.height:,} rows but the {self.split} split of "
                    f"{self.dataset.name} has {n:,}: give one score per row, in the split's "
                    "order, or add user_id, item_id and domain_id columns to match rows by key"
                )
            if "label" in df.columns:
                try:
                    got = df["label"].cast(pl.Int64, strict=True).to_numpy()
                except pl.exceptions.PolarsError as exc:
                    raise UserError(f"{where}: column label must be integers ({exc})") from None
                bad = int((got != self.rows["label"].cast(pl.Int64).to_numpy()).sum())
                if bad:
                    raise UserError(
                        f"{where}: label differs from the {self.split} split in {bad:,} "
                        "row(s): the rows are not in the split's order (add user_id, "
                        "item_id, domain_id columns to match by key)"
                    )
            try:
                score = df["score"].cast(pl.Float64, strict=True).to_numpy()
            except pl.exceptions.PolarsError as exc:
                raise UserError(f"{where}: 'score' must be numeric ({exc})") from None
        score = np.asarray(score, dtype=np.float64)
        if np.isnan(score).any():
            raise UserError(f"{where}: 'score' holds NaN or null values")
        if logits:
            score = 1.0 / (1.0 + np.exp(-score))
        if score.size and (score.min() < 0 or score.max() > 1):
            raise UserError(
                f"{where}: scores must be probabilities in [0, 1]; apply a sigmoid to logits "
                "(or pass logits=True / --logits)"
            )
        return score

    def _keyed(self, df, where: str) -> np.ndarray:
        """Scores matched to the split's rows by (user_id, item_id, domain_id): each row of
        the split exactly once, and no prediction left over."""
        import polars as pl

        keys = list(KEYS)
        try:
            left = self.rows.select(keys).with_row_index("_row")
            left = left.with_columns(pl.col(k).cast(pl.Int64) for k in keys)
            right = df.select(
                *[pl.col(k).cast(pl.Int64, strict=True) for k in keys],
                pl.col("score").cast(pl.Float64, strict=True),
            )
        except pl.exceptions.PolarsError as exc:
            raise UserError(f"{where}: key and score columns must be numeric ({exc})") from None
        if right["score"].null_count():
            raise UserError(f"{where}: 'score' holds NaN or null values")
        if left.select(keys).is_duplicated().any():
            raise UserError(
                f"the {self.split} split of {self.dataset.name} has rows that share "
                "(user_id, item_id, domain_id): keys cannot tell them apart; give the scores "
                "in the split's stored order with --in-split-order (in_split_order=True)"
            )
        dup = int(right.select(keys).is_duplicated().sum())
        if dup:
            raise UserError(
                f"{where}: {dup:,} row(s) share their (user_id, item_id, domain_id) with "
                "another: give each row of the split one score"
            )
        joined = left.join(right, on=keys, how="left").sort("_row")
        missing = int(joined["score"].null_count())
        extra = right.join(left, on=keys, how="anti").height
        if missing or extra:
            raise UserError(
                f"{where} does not match the {self.split} split of {self.dataset.name} one "
                f"to one: {missing:,} of its {left.height:,} rows have no score, and "
                f"{extra:,} of the {right.height:,} predictions match no row of it (by "
                "user_id, item_id, domain_id): predict exactly the split's rows"
            )
        return joined["score"].to_numpy()

    def eval(
        self, predictions: Any, *, logits: bool = False, in_split_order: bool = False
    ) -> dict:
        """Metrics of the split from the predictions (see `scores` and
        `expected_input_format`)."""
        from mdrbench.evaluate import evaluate

        score = self.scores(predictions, logits=logits, in_split_order=in_split_order)
        return evaluate(
            self.rows["domain_id"].to_numpy(),
            self.rows["label"].to_numpy(),
            score,
            self.dataset.domain_names,
        )


def _as_frame(predictions: Any):
    import polars as pl

    if isinstance(predictions, (str, os.PathLike)):
        p = Path(predictions)
        if not p.is_file():
            raise UserError(f"no predictions file at '{p}'")
        try:
            if p.suffix.lower() in (".csv", ".tsv"):
                return pl.read_csv(p, separator="\t" if p.suffix.lower() == ".tsv" else ",")
            return pl.read_parquet(p)
        except Exception as exc:  # polars raises several error types for a bad file
            raise UserError(
                f"{p} is not a readable Parquet or CSV file ({str(exc).splitlines()[0]})"
            ) from None
    if isinstance(predictions, pl.DataFrame):
        return predictions
    if isinstance(predictions, Mapping):
        cols = {k: np.asarray(v).ravel() for k, v in predictions.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise UserError("the predictions' columns differ in length")
        return pl.DataFrame(cols)
    if type(predictions).__module__.startswith("pandas"):
        return pl.from_pandas(predictions)
    if isinstance(predictions, np.ndarray) or hasattr(predictions, "__array__"):
        return pl.DataFrame({"score": np.asarray(predictions, dtype=np.float64).ravel()})
    raise UserError(
        f"predictions must be a dict of arrays, a DataFrame, an array of scores or a file, "
        f"not {type(predictions).__name__}"
    )


def _describe(predictions: Any) -> str:
    if isinstance(predictions, (str, os.PathLike)):
        return str(predictions)
    return "the predictions"


def external_result(
    dataset: Dataset,
    test: Evaluator,
    test_scores: np.ndarray,
    *,
    model: str,
    method: str,
    seed: int = 0,
    val_metrics: dict | None = None,
    config: Mapping[str, Any] | None = None,
    train_seconds: float = 0.0,
    n_parameters: int = 0,
) -> dict:
    """A result record (schema_version 1, as `mdrbench eval` writes) for a model trained
    outside mdrbench, from its test scores (aligned by `Evaluator.scores`)."""
    from mdrbench import __version__
    from mdrbench.config import MAX_SEED
    from mdrbench.errors import name_problem
    from mdrbench.evaluate import evaluate
    from mdrbench.validate import SCHEMA_VERSION

    for what, name in (("--model-name", model), ("--method-name", method)):
        if not name or "__" in name or "/" in name or name != name.strip() or name_problem(name):
            raise UserError(
                f"{what} {name!r} must be a non-empty name without '/', '__', outer spaces or "
                "control characters"
            )
    if not (isinstance(seed, int) and 0 <= seed <= MAX_SEED):
        raise UserError(f"seed must be from 0 to {MAX_SEED}, got {seed!r}")
    metrics = {
        "val": val_metrics,
        "test": evaluate(
            test.rows["domain_id"].to_numpy(),
            test.rows["label"].to_numpy(),
            test_scores,
            dataset.domain_names,
        ),
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "mdrbench_version": __version__,
        "dataset": {"name": dataset.name, "manifest_sha256": dataset.manifest_sha256},
        "model": model,
        "method": method,
        "seed": seed,
        "config": {"seed": seed, "source": "mdrbench score", **dict(config or {})},
        "best_epoch": None,
        "metrics": metrics,
        "train_seconds": float(train_seconds),
        "samples_per_second": None,
        "n_parameters": int(n_parameters),
    }


def load_results(paths: str | os.PathLike | list):
    """Every result JSON under the given files/folders as a long polars DataFrame: one row
    per result x split x domain (see `mdrbench.results.results_frame` for the columns)."""
    from mdrbench.results import load_results as load_records
    from mdrbench.results import results_frame

    return results_frame(load_records(paths))
