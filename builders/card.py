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
