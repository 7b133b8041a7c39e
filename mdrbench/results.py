"""Result files -> aggregates over seeds, RANK, and the paper's tables. NumPy only (no
torch), so the leaderboard and validators reuse these functions as they are.

A result file is one run's JSON (schema_version 1, see docs/training.md). The functions:

- `load_results(paths)`: every result JSON under files/folders;
- `check_versions(results)`: refuses two manifests under one dataset name;
- `aggregate(results, split)`: one row per entry (dataset build, model, method, config and
  track: `validate.entry_key`): mean and std over seeds of the average AUC and of each
  domain's AUC;
- `average_ranks(values)` / `rank_entries(per_domain)` / `add_ranks(rows)`: RANK as in the
  paper: on each domain rank the compared entries by AUC (1 = best, ties share the mean of
  their ranks), then average each entry's ranks over the domains. Entries are ranked (and
  the best marked) only within one track (paper, tuned, custom: mdrbench/track.py);
- `table_v(rows)` (rows = model+method, columns = datasets, cells AUC mean ± std and RANK),
  `table_vii(rows, dataset)` (per-domain AUC), `domain_table(rows, dataset)` (domains as
  rows: one run's or a few entries' per-domain numbers), `render(table, fmt)` for md, csv
  and latex.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mdrbench.errors import UserError
from mdrbench.track import is_trial, profile_track, result_track

# ----------------------------------------------------------------------------- loading


def load_results(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """Every result JSON in the given files and (recursively) folders, sorted by path, each
    with its "track" (paper, tuned or custom; `track.result_track` for a result written
    before tracks). A tuning trial's record (`mdrbench tune`'s OUT/trials/) is skipped;
    any other JSON file that is not a result (no `schema_version`: a dataset's
    manifest.json, ...) is skipped with a warning naming it; an unreadable one, or one with
    a `schema_version` that is not a valid result (a stub, a cut-off record), raises
    UserError."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.rglob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"no results at '{p}'")
    out, skipped = [], []
    for f in files:
        try:
            obj = json.loads(f.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{f}: not readable JSON ({exc})") from None
        if is_trial(obj):  # a tuning trial's record: known, not a result
            continue
        if not (isinstance(obj, dict) and "schema_version" in obj):
            skipped.append(f)
            continue
        from mdrbench.validate import check_schema

        errs = check_schema(obj)
        if errs:
            raise UserError(f"{f}: not a valid result ({errs[0]}); see mdrbench validate {f}")
        obj.setdefault("_path", str(f))
        obj["track"] = result_track(obj)  # one written before tracks: its config's
        out.append(obj)
    if skipped:
        from mdrbench.log import get

        shown = ", ".join(map(str, skipped[:3])) + (
            f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        )
        get(__name__).warning(
            f"warning: skipped {len(skipped)} JSON file(s) that are not results (no "
            f"schema_version): {shown}"
        )
    return out


def check_versions(results: Sequence[Mapping]) -> None:
    """One dataset name must mean one dataset (one manifest sha256): never mix versions."""
    seen: dict[str, dict[str, str]] = {}
    for r in results:
        name, sha = r["dataset"]["name"], r["dataset"].get("manifest_sha256", "")
        seen.setdefault(name, {}).setdefault(sha, r.get("_path", "?"))
    for name, shas in seen.items():
        if len(shas) > 1:
            where = "; ".join(f"{sha[:12]} (e.g. {path})" for sha, path in shas.items())
            raise UserError(
                f"results for dataset '{name}' come from {len(shas)} different builds "
                f"(manifest sha256 {where}): compare runs of one build only"
            )


FRAME_COLUMNS = (
    "dataset", "manifest_sha256", "model", "method", "track", "seed", "split", "domain", "domain_index",
    "auc", "logloss", "n", "split_auc_mean", "split_auc_weighted", "split_logloss",
    "best_epoch", "train_seconds", "n_parameters", "mdrbench_version", "config", "path",
)  # fmt: skip


def results_frame(results: Sequence[Mapping]):
    """Results as one long polars DataFrame: one row per result x split x domain, columns
    `FRAME_COLUMNS` (`domain_index`: the domain's position in the result; `split_*`: the
    split's averages, repeated on its rows; `config`: the resolved config as JSON). A split
    a result does not have (a submission's null `val`) gives no rows."""
    import polars as pl

    rows = []
    for r in results:
        for split, m in r["metrics"].items():
            if not m:
                continue
            for i, (name, dm) in enumerate(m["domains"].items()):
                rows.append(
                    (
                        r["dataset"]["name"], r["dataset"].get("manifest_sha256", ""),
                        r["model"], r["method"], result_track(r), r["seed"], split, name, i,
                        dm.get("auc"), dm.get("logloss"), dm.get("n"),
                        m.get("auc_mean"), m.get("auc_weighted"), m.get("logloss"),
                        r.get("best_epoch"), r.get("train_seconds"), r.get("n_parameters"),
                        r.get("mdrbench_version"), json.dumps(r.get("config", {}), sort_keys=True),
                        r.get("_path"),
                    )
                )  # fmt: skip
    schema = dict(zip(FRAME_COLUMNS, (
        pl.String, pl.String, pl.String, pl.String, pl.String, pl.Int64, pl.String, pl.String, pl.Int64,
        pl.Float64, pl.Float64, pl.Int64, pl.Float64, pl.Float64, pl.Float64,
        pl.Int64, pl.Float64, pl.Int64, pl.String, pl.String, pl.String,
    )))  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


# ----------------------------------------------------------------------------- one run's files
# The one rule for where a run's result lives (eval, sweep, quickstart), and whether a
# finished result is already there (docs/reliability.md, "Atomic result").


def result_stem(dataset: str, model: str, method: str, seed: int) -> str:
    """`<dataset>__<model>__<method>__seed<seed>`: a result is `<stem>.json`, its test
    predictions `<stem>.predictions.parquet` beside it. A name that cannot be part of a
    file name (a control character, a '/') or a negative seed is refused."""
    from mdrbench.errors import name_problem

    for kind, name in (("dataset", dataset), ("model", model), ("method", method)):
        problem = name_problem(name) or ("holds a '/'" if "/" in name else None)
        if problem:
            raise UserError(f"{kind} name {name!r} {problem}: rename it")
    if not (isinstance(seed, int) and seed >= 0):
        raise UserError(f"seed must be an integer >= 0, got {seed!r}")
    return f"{dataset}__{model}__{method}__seed{seed}"


def result_path(out: str | os.PathLike, dataset: str, model: str, method: str, seed: int) -> Path:
    """The result JSON of one run in folder `out`."""
    return Path(out) / f"{result_stem(dataset, model, method, seed)}.json"


def lock_path(path: str | os.PathLike) -> Path:
    """`.<stem>.lock` beside result JSON `path`: held by whoever writes that run
    (`atomic.Lock`), so two processes never write one result."""
    path = Path(path)
    return path.with_name(f".{path.stem}.lock")


def read_result(path: str | os.PathLike) -> dict | None:
    """The result record at `path`; None when there is no file. A file that is there but
    is not a valid result raises UserError (it must never be silently replaced)."""
    from mdrbench.validate import check_schema

    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{path} exists but is not readable JSON ({exc}): move it away, or pass --force "
            "to replace it."
        ) from None
    errs = check_schema(obj)
    if errs:
        raise UserError(
            f"{path} exists but is not a valid result ({errs[0]}): move it away, or pass "
            "--force to replace it."
        )
    return obj


def finished_result(path: str | os.PathLike, predictions: bool = True) -> dict | None:
    """The record of a finished run at result JSON `path`, or None: the JSON is written
    last (after the predictions), so a JSON with a valid schema (and, with `predictions`,
    its `<stem>.predictions.parquet` beside it) is a complete run."""
    from mdrbench.validate import predictions_path

    try:
        rec = read_result(path)
    except UserError:
        return None
    if rec is None or (predictions and not predictions_path(Path(path)).is_file()):
        return None
    return rec


def config_diff(a: Mapping, b: Mapping) -> list[str]:
    """`train.lr: 0.001 -> 0.01` for each config key (at any depth) whose value differs,
    the run-only keys (seed, device, threads) left out."""
    from mdrbench.validate import entry_config, flat_config

    fa, fb = flat_config(entry_config(dict(a))), flat_config(entry_config(dict(b)))
    return [f"{k}: {fa.get(k, '(absent)')} -> {fb.get(k, '(absent)')}"
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]  # fmt: skip


def identity_diff(record: Mapping, config: Mapping, extra: Mapping | None = None) -> list[str]:
    """What, besides the config, makes result `record` another run's than one of resolved
    `config` whose record gets the fields `extra` (a tuned run's "track" and "tuning"):
    its track, and each field of `extra`."""
    extra = dict(extra or {})
    want = extra.pop("track", None) or profile_track(config.get("profile"))
    out = [] if result_track(record) == want else [f"track: {result_track(record)} -> {want}"]
    return out + [f"{k} differs" for k, v in extra.items() if record.get(k) != v]


def same_run(record: Mapping, config: Mapping, manifest_sha256: str) -> bool:
    """Whether result `record` is a run of resolved `config` on the dataset build
    `manifest_sha256` (the seed and run-only keys aside)."""
    return record["dataset"].get("manifest_sha256") == manifest_sha256 and not config_diff(
        record.get("config", {}), config
    )


# ----------------------------------------------------------------------------- aggregation


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if a.size == 0:
        return (math.nan, math.nan)
    return (float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0)


def aggregate(results: Sequence[Mapping], split: str = "test") -> list[dict]:
    """One row per entry, in first-seen order: results are averaged together only when
    they share dataset build, model, method, resolved config (run-only keys aside) and
    track (`validate.entry_key`, the rule `mdrbench validate` and the leaderboard group
    by); entries of one model, method and track get a `variant` label saying what differs
    (`validate.entry_variants`, "" when there is one). A row:
    {"dataset", "manifest_sha256", "model", "method", "track", "variant", "seeds",
     "auc_mean": (mean, std), "auc_weighted": (mean, std), "logloss": (mean, std),
     "domains": {name: (mean, std)}, "val_auc_mean": (mean, std)}."""
    from mdrbench.validate import entry_key, entry_variants

    check_versions(results)
    groups: dict[tuple, list[Mapping]] = {}
    for r in results:
        groups.setdefault(entry_key(r), []).append(r)
    variants = entry_variants({key: runs[0] for key, runs in groups.items()})
    rows = []
    for key, runs in groups.items():
        ds, _, model, method, _, track = key
        runs = sorted(runs, key=lambda r: r["seed"])
        seeds = [r["seed"] for r in runs]
        if len(set(seeds)) != len(seeds):
            dup = sorted({s for s in seeds if seeds.count(s) > 1})
            paths = [r.get("_path", "?") for r in runs if r["seed"] in dup]
            raise UserError(
                f"{ds} {model} {method}: seed(s) {dup} appear in more than one result of the "
                f"same config ({', '.join(map(str, paths))}): keep one of each"
            )
        m = [r["metrics"][split] for r in runs]
        if any(x is None for x in m):
            raise UserError(
                f"{ds} {model} {method}: a result has no {split} metrics (a submission scored "
                "without --val-predictions); show the test split"
            )
        names: list[str] = []
        for x in m:
            names += [n for n in x["domains"] if n not in names]
        rows.append(
            {
                "dataset": ds,
                "manifest_sha256": runs[0]["dataset"].get("manifest_sha256", ""),
                "model": model,
                "method": method,
                "track": track,
                "variant": variants[key],
                "seeds": seeds,
                "auc_mean": mean_std([x["auc_mean"] for x in m]),
                "auc_weighted": mean_std([x.get("auc_weighted") for x in m]),
                "logloss": mean_std([x.get("logloss") for x in m]),
                "val_auc_mean": mean_std(
                    [(r["metrics"]["val"] or {}).get("auc_mean") for r in runs]
                ),
                "domains": {
                    n: mean_std([x["domains"].get(n, {}).get("auc") for x in m]) for n in names
                },
                "domain_n": {n: m[0]["domains"].get(n, {}).get("n") for n in names},
            }
        )
    return rows


def average_ranks(values: Sequence[float], higher_is_better: bool = True) -> np.ndarray:
    """1-based ranks (1 = best), ties sharing the mean of their ranks; NaN stays NaN."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, np.nan)
    ok = ~np.isnan(v)
    x = -v[ok] if higher_is_better else v[ok]
    if x.size:
        order = np.argsort(x, kind="mergesort")
        xs = x[order]
        starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
        ends = np.r_[starts[1:], xs.size]
        avg = (starts + ends + 1) / 2.0
        ranks = np.empty(x.size)
        ranks[order] = np.repeat(avg, ends - starts)
        out[ok] = ranks
    return out


def rank_entries(per_domain: Mapping[Any, Mapping[str, float | None]]) -> dict[Any, float]:
    """RANK of each entry: rank the entries on each domain by AUC (1 = best, ties averaged),
    then average each entry's ranks over the domains where it has an AUC."""
    entries = list(per_domain)
    domains: list[str] = []
    for e in entries:
        domains += [d for d in per_domain[e] if d not in domains]
    sums = np.zeros(len(entries))
    counts = np.zeros(len(entries))
    for d in domains:
        vals = [per_domain[e].get(d) for e in entries]
        r = average_ranks([math.nan if v is None else v for v in vals])
        ok = ~np.isnan(r)
        sums[ok] += r[ok]
        counts[ok] += 1
    return {e: float(sums[i] / counts[i]) if counts[i] else math.nan for i, e in enumerate(entries)}


def add_ranks(rows: list[dict]) -> list[dict]:
    """Set row["rank"]: RANK among the rows of the same dataset and track (mean per-domain
    AUCs): entries of different tracks are never ranked together."""
    by_ds: dict[tuple, list[dict]] = {}
    for r in rows:
        by_ds.setdefault((r["dataset"], r.get("track", "")), []).append(r)
    for group in by_ds.values():
        ranks = rank_entries(
            {i: {d: ms[0] for d, ms in r["domains"].items()} for i, r in enumerate(group)}
        )
        for i, r in enumerate(group):
            r["rank"] = ranks[i]
    return rows


# ----------------------------------------------------------------------------- tables


@dataclass
class Table:
    """Cells: str, int, float, (mean, std) or None. `bold` = (row, col) cells to emphasise;
    `align`: one "l" or "r" per column (default: all left in md; l, l, then c in latex);
    `digits`: decimals of a column's floats in md and latex (default 2)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    align: str = ""
    digits: dict[int, int] = field(default_factory=dict)


def _ms(r: Mapping, value: tuple[float, float] | None):
    """A (mean, std) cell; std None when the row has a single seed (nothing to spread)."""
    if value is None:
        return None
    return (value[0], None) if len(r["seeds"]) == 1 else value


def _entry(r: Mapping) -> str:
    return f"{r['model']}+{_method(r)} ({r['track']})"


def _method(r: Mapping) -> str:
    """The method, with the entry's variant (what sets it apart from entries of the same
    model, method and track) in brackets."""
    v = r.get("variant")
    return f"{r['method']} [{v}]" if v else r["method"]


def _best(table: Table, col: int, higher_is_better: bool, group_col: int | None = None) -> None:
    """Bold the best cell of column `col`, among the rows with the same value in column
    `group_col` (the track: entries of different tracks are never compared)."""
    groups: dict[Any, list[int]] = {}
    for i, row in enumerate(table.rows):
        groups.setdefault(None if group_col is None else row[group_col], []).append(i)
    for rows in groups.values():
        vals = []
        for i in rows:
            c = table.rows[i][col]
            v = c[0] if isinstance(c, tuple) else c
            vals.append(v if isinstance(v, (int, float)) and not math.isnan(v) else None)
        ok = [v for v in vals if v is not None]
        if len(ok) < 2:
            continue
        best = max(ok) if higher_is_better else min(ok)
        table.bold |= {(i, col) for i, v in zip(rows, vals) if v == best}


def table_v(rows: list[dict], datasets: Sequence[str] | None = None) -> Table:
    """Table V: rows model+method+track, for each dataset AUC (mean ± std over seeds) and
    RANK (within the track)."""
    rows = add_ranks([dict(r) for r in rows])
    datasets = list(datasets or dict.fromkeys(r["dataset"] for r in rows))
    entries = list(dict.fromkeys((r["model"], _method(r), r["track"]) for r in rows))
    cell = {(r["model"], _method(r), r["track"], r["dataset"]): r for r in rows}
    columns = ["Model", "Method", "Track"]
    for ds in datasets:
        columns += [f"{ds} AUC", f"{ds} RANK"]
    body = []
    for model, method, track in entries:
        line: list[Any] = [model, method, track]
        for ds in datasets:
            r = cell.get((model, method, track, ds))
            line += [_ms(r, r["auc_mean"]), r["rank"]] if r else [None, None]
        body.append(line)
    t = Table("Average AUC over domains (mean ± std over seeds) and RANK (within a track)",
              columns, body)  # fmt: skip
    for i in range(len(datasets)):
        _best(t, 3 + 2 * i, True, group_col=2)
        _best(t, 4 + 2 * i, False, group_col=2)
    return t


def table_vii(rows: list[dict], dataset: str) -> Table:
    """Table VII: rows model+method, columns the dataset's domains (AUC mean ± std), then
    the average."""
    rows = [r for r in rows if r["dataset"] == dataset]
    if not rows:
        raise UserError(f"no results for dataset '{dataset}'")
    domains = list(dict.fromkeys(d for r in rows for d in r["domains"]))
    body = [
        [
            r["model"],
            _method(r),
            r["track"],
            *[_ms(r, r["domains"].get(d)) for d in domains],
            _ms(r, r["auc_mean"]),
        ]
        for r in rows
    ]
    t = Table(
        f"AUC of each domain on {dataset} (mean ± std over seeds; best within a track)",
        ["Model", "Method", "Track", *domains, "Average"],
        body,
    )
    for c in range(3, len(t.columns)):
        _best(t, c, True, group_col=2)
    return t


def domain_table(rows: list[dict], dataset: str | None = None) -> Table:
    """Domains as rows, one AUC column per entry (model+method): a run's per-domain table,
    or a side-by-side comparison (the quickstart's)."""
    if dataset is not None:
        rows = [r for r in rows if r["dataset"] == dataset]
    if not rows:
        raise UserError("no results to show")
    domains = list(dict.fromkeys(d for r in rows for d in r["domains"]))
    columns = ["Domain", "n", *[f"{r['model']}+{_method(r)} AUC ({r['track']})" for r in rows]]
    body = [
        [d, rows[0]["domain_n"].get(d), *[_ms(r, r["domains"].get(d)) for r in rows]]
        for d in domains
    ]
    body.append(["Average AUC", None, *[_ms(r, r["auc_mean"]) for r in rows]])
    body.append(["Weighted AUC", None, *[_ms(r, r["auc_weighted"]) for r in rows]])
    body.append(["Logloss", None, *[_ms(r, r["logloss"]) for r in rows]])
    seeds = ", ".join(f"{_entry(r)}: {len(r['seeds'])}" for r in rows)
    t = Table(
        f"Test AUC per domain on {rows[0]['dataset']} (mean ± std over seeds; {seeds})",
        columns,
        body,
    )
    tracks: dict[str, list[int]] = {}  # the best is marked within a track only
    for j, r in enumerate(rows):
        tracks.setdefault(r["track"], []).append(j)
    for cols in (c for c in tracks.values() if len(c) > 1):
        for i in range(len(body) - 1):  # not the logloss row
            vals = [body[i][2 + j][0] if isinstance(body[i][2 + j], tuple) else None for j in cols]
            ok = [v for v in vals if v is not None and not math.isnan(v)]
            if ok:
                t.bold |= {(i, 2 + j) for j, v in zip(cols, vals) if v == max(ok)}
    return t


# ----------------------------------------------------------------------------- rendering


def _fmt(c: Any, fmt: str, digits: int = 2) -> str:
    if c is None:
        return "-"
    if isinstance(c, int) and not isinstance(c, bool):
        return f"{c:,}"
    if isinstance(c, tuple):
        m, s = c
        if m is None or math.isnan(m):
            return "-"
        if s is None:  # a single seed: no spread to show
            return f"{m:.4f}"
        pm = " $\\pm$ " if fmt == "latex" else " ± "
        return f"{m:.4f}{pm}{s:.4f}"
    if isinstance(c, float):
        return "-" if math.isnan(c) else f"{c:.{digits}f}"
    return str(c)


def _latex_escape(s: str) -> str:
    for a, b in (
        ("\\", "\\textbackslash{}"),
        ("&", "\\&"),
        ("%", "\\%"),
        ("_", "\\_"),
        ("#", "\\#"),
        ("±", "$\\pm$"),
    ):
        s = s.replace(a, b)
    return s


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A text cell as a spreadsheet must not run it: text starting with = + - @, a tab or
    a carriage return gets a leading ' (OWASP's rule against CSV formula injection), so a
    model named `=HYPERLINK(...)` stays text. Numbers are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def frame_csv(df) -> str:
    """A polars DataFrame as CSV, its text columns through `csv_cell`."""
    import polars as pl

    text = [c for c, t in df.schema.items() if t == pl.String]
    safe = [pl.col(c).map_elements(csv_cell, return_dtype=pl.String) for c in text]
    return df.with_columns(safe).write_csv()


def render(table: Table, fmt: str = "md") -> str:
    """The table as Markdown (`md`), CSV (`csv`: a (mean, std) cell becomes two columns,
    numbers unrounded, text through `csv_cell`) or a LaTeX tabular (`latex`). Best cells bold in md and latex."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        pairs = [
            any(isinstance(r[c], tuple) for r in table.rows) for c in range(len(table.columns))
        ]
        header = []
        for name, pair in zip(table.columns, pairs):
            header += [name, f"{name} std"] if pair else [name]
        w.writerow(map(csv_cell, header))
        for row in table.rows:
            line = []
            for c, pair in zip(row, pairs):
                if pair:
                    line += (
                        ["" if v is None else v for v in c] if isinstance(c, tuple) else ["", ""]
                    )
                else:
                    line.append("" if c is None else c)
            w.writerow(map(csv_cell, line))
        return buf.getvalue()
    cells = [[_fmt(c, fmt, table.digits.get(j, 2)) for j, c in enumerate(row)] for row in table.rows]
    for i, j in table.bold:
        if cells[i][j] != "-":
            cells[i][j] = f"**{cells[i][j]}**" if fmt == "md" else f"\\textbf{{{cells[i][j]}}}"
    if fmt == "md":
        widths = [
            max(len(h), *(len(r[j]) for r in cells)) if cells else len(h)
            for j, h in enumerate(table.columns)
        ]
        right = [a == "r" for a in table.align] or [False] * len(widths)

        def line(r):
            return "| " + " | ".join(
                c.rjust(w) if rj else c.ljust(w) for c, w, rj in zip(r, widths, right)
            ) + " |"  # fmt: skip

        lines = [f"**{table.title}**", ""] if table.title else []
        lines.append(line(table.columns))
        lines.append("|" + "|".join("-" * (w + 1) + (":" if rj else "-")
                                    for w, rj in zip(widths, right)) + "|")  # fmt: skip
        lines += [line(r) for r in cells]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        spec = table.align or "l" * 2 + "c" * (len(table.columns) - 2)
        lines = [
            "\\begin{table}[t]",
            f"\\caption{{{_latex_escape(table.title)}}}",
            f"\\begin{{tabular}}{{{spec}}}",
            "\\toprule",
            " & ".join(_latex_escape(h) for h in table.columns) + " \\\\",
            "\\midrule",
        ]
        for r in cells:
            lines.append(" & ".join(_latex_escape(c) if "\\" not in c else c for c in r) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        return "\n".join(lines) + "\n"
    raise UserError(f"unknown format '{fmt}'; valid formats: md, csv, latex")
