"""The dataset card (README.md) written next to a built dataset."""

from __future__ import annotations

from mdrbench.builders.manifest import describe_split, stats_tables
from mdrbench.builders.specs import (
    AMAZON_CITATION,
    AMAZON_LICENCE,
    MAMDR_CITATION,
    TAOBAO_CITATION,
    TAOBAO_LICENCE,
    DatasetSpec,
)


def dataset_card(spec: DatasetSpec, manifest: dict) -> str:
    if spec.kind not in ("amazon", "taobao"):
        return table_card(spec, manifest)
    amazon = spec.kind == "amazon"
    source = (
        "Amazon Review Data (2018), per-category 5-core files `<Category>_5.json.gz`"
        if amazon
        else "Taobao Cloud Theme Click Dataset (Tianchi 9716): `theme_click_log.csv`, "
        "`user_embedding.csv`, `item_embedding.csv`"
    )
    positives = (
        "every review (reviewerID, asin, overall), exact duplicates of that triple dropped"
        if amazon
        else "distinct (user, item) clicks per theme, after dropping clicks whose user or item "
        "has no pretrained embedding; themes numbered by first appearance in the unfiltered "
        "click log, themes left with no click skipped (the authors' "
        "`dataset/Taobao/preprocess_data.py`)"
    )
    features = (
        "No features: models learn 128-d user, item and domain embeddings."
        if amazon
        else "`user_features.parquet` / `item_features.parquet`: the pretrained 128-d "
        "GraphSage features, one row per id, kept fixed during training."
    )
    raw = "\n".join(
        f"| {name} | {info['bytes']:,} | `{info['sha256']}` | {info['n_bad_lines']} |"
        for name, info in manifest["raw_files"].items()
    )
    return f"""# {manifest["name"]}

{spec.description} One of the five multi-domain recommendation (MDR) benchmarks defined by
MAMDR (Luo et al., ICDE 2023), built by mdrbench {manifest["mdrbench_version"]}
(spec version {manifest["spec_version"]}, seed {manifest["seed"]}).

## How it was built

- Source: {source}.
- Domains: {manifest["totals"]["n_domains"]}, in the spec's order (domain ids 0..n-1).
- Positives (label 1): {positives}.
- One global user id space and one item id space, shared by all domains (ids numbered in
  sorted order of the raw keys).
- Negatives (label 0), per domain d of CTR ratio r and per user u with n_u positives:
  min(int(n_u / r), |pool_d minus items_u|) items drawn uniformly without replacement from the
  items with a positive in d that u has no positive with.
- Split: {describe_split(manifest)}
- {features}
- Malformed raw lines: `{manifest["on_bad_lines"]}` (counts below).

Files: `train.parquet`, `val.parquet`, `test.parquet` with `user_id` int64, `item_id` int64,
`domain_id` int16, `label` int8; `manifest.json` holds counts and sha256 of every file.
Check a copy with `mdrbench verify <folder>`.

## Statistics

{stats_tables(manifest)}

## Raw inputs

| file | bytes | sha256 | bad lines skipped |
|---|---:|---|---:|
{raw}

## Licence

{AMAZON_LICENCE if amazon else TAOBAO_LICENCE} The benchmark construction follows MAMDR;
mdrbench's code is Apache-2.0.

## Citation

```bibtex
{MAMDR_CITATION}

{AMAZON_CITATION if amazon else TAOBAO_CITATION}
```
"""


def fields_table(manifest: dict) -> str:
    """The declared side fields (docs/format.md), as a markdown table; "" when none."""
    fields = manifest.get("fields") or []
    if not fields:
        return ""
    where = {"user": "`user_fields.parquet`", "item": "`item_fields.parquet`",
             "row": "the split files"}  # fmt: skip
    rows = "\n".join(
        f"| `{f['name']}` | {f['kind']} | {f['owner']} | "
        f"{f['cardinality'] if f['cardinality'] is not None else '-'} | {where[f['owner']]} |"
        for f in fields
    )
    return (
        "| field | kind | owner | cardinality | stored in |\n|---|---|---|---:|---|\n" + rows
    )


def table_card(spec: DatasetSpec, manifest: dict) -> str:
    """The card of a build made from a table (builders/table.py): a field dataset or a
    custom table."""
    raw = "\n".join(
        f"| {name} | {info['bytes']:,} | `{info['sha256']}` | {info['n_bad_lines']} |"
        for name, info in manifest["raw_files"].items()
    )
    fields = fields_table(manifest) or "None: models learn user, item and domain embeddings."
    ratios = {d["ctr_ratio"] for d in manifest["domains"]}
    labels = (
        "given by the source (see the recipe)"
        if ratios == {None}
        else "1 for every distinct (user, item, domain) of the input; 0 for negatives sampled "
        "per domain and user as the MAMDR builders sample them: int(n_u x R) items "
        "(R = 1 / CTR ratio negatives per positive) drawn uniformly without replacement from "
        "the domain's items the user has no positive with"
    )
    citation = "\n\n".join(c for c in (spec.citation, _swr_citation(spec)) if c)
    return f"""# {manifest["name"]}

{spec.description} Built by mdrbench {manifest["mdrbench_version"]} (spec version
{manifest["spec_version"]}, seed {manifest["seed"]}).

## How it was built

- Source: {spec.source or "a table given by the user"}.
{spec.recipe + chr(10) if spec.recipe else ""}- Domains: {manifest["totals"]["n_domains"]} (domain ids 0..n-1, in the order below).
- Labels: {labels}.
- One global user id space and one item id space, shared by all domains (ids numbered in
  sorted order of the raw keys).
- Split: {describe_split(manifest)}
- Malformed raw lines: `{manifest["on_bad_lines"]}` (counts below).

Files: `train.parquet`, `val.parquet`, `test.parquet` with `user_id` int64, `item_id` int64,
`domain_id` int16, `label` int8 and the row fields; `user_fields.parquet` /
`item_fields.parquet`: one row per id with that owner's fields (categorical: int32 codes
0..cardinality-1; dense: float32 scaled to [0, 1] by the min and max in `manifest.json`).
Check a copy with `mdrbench verify <folder>`.

## Side fields

{fields}

## Statistics

{stats_tables(manifest)}

## Raw inputs

| file | bytes | sha256 | bad lines skipped |
|---|---:|---|---:|
{raw}

## Licence

{spec.licence or "The data is the user's own; its terms are its owner's."} mdrbench's code
is Apache-2.0.

## Citation

```bibtex
{citation}
```
"""


def _swr_citation(spec: DatasetSpec) -> str:
    from mdrbench.builders.specs import SWR_CITATION

    return "" if spec.kind == "custom" else SWR_CITATION
