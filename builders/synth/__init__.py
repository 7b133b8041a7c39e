"""Synthetic raw files in exactly the real formats, with planted multi-domain structure.

`synthesize("amazon", out)` writes one `<Category>_5.json.gz` per category (gzip JSON Lines,
as the Amazon 2018 5-core files); `synthesize("taobao", out)` writes the five CSV files of
the Taobao Cloud Theme Click dataset. The builders read them exactly as they read the real
files, so the whole pipeline (build, train, tables) runs offline and in seconds.

What is planted (docs/synth.md gives the formulas): every user u and item i has a latent
vector; domain d's positives for u are drawn from d's item pool with probability increasing
in

    score(u, i, d) = <a_u, a_i> / sqrt(KS)                    shared by all domains
                   + W_C * sum_k s[d, k] c_uk c_ik / sqrt(KC) domain-specific, conflicting
                   + POP * (b_i + 0.5 e_id)                   item popularity

where the signs of s[d, :] differ between the three domain groups (d mod 3), so a model
that shares everything is pulled in opposite directions by different domains. Domain sizes
go from rich to very sparse. Taobao's 128-d embeddings are noisy linear maps of the latent
vectors; Amazon has only ids. Negatives are not written: the builder samples them.

Everything is vectorised numpy, seeded by `numpy.random.default_rng(seed)`: the same
arguments give byte-identical files. Domain-level parameters (sizes, groups, conflict signs)
come from a fixed generator, so only the sampled users, items and interactions change with
the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mdrbench.builders.specs import amazon_file_name
from mdrbench.builders.synth.amazon import _amazon
from mdrbench.builders.synth.planted import (
    _MIN_ROWS,
    AMAZON_CATEGORIES,
    DEFAULT_DOMAINS,
    KINDS,
    MAX_DOMAINS,
    _check,
    domain_profile,
)
from mdrbench.builders.synth.taobao import _taobao
from mdrbench.errors import UserError

__all__ = [
    "KINDS",
    "PRESETS",
    "AMAZON_CATEGORIES",
    "MAX_DOMAINS",
    "DEFAULT_DOMAINS",
    "synthesize",
    "resolve_size",
    "domain_profile",
    "output_files",
]

PRESETS = ("tiny", "small", "medium", "paper")
MAX_SIZE = 50_000_000  # positive rows; memory grows about linearly (1e14 asked for 45 TiB)

# Total positive rows (review lines / click rows) over the written domains.
_PRESET_SIZES = {
    "amazon": {"tiny": 3_000, "small": 60_000, "medium": 500_000},
    "taobao": {"tiny": 3_000, "small": 45_000, "medium": 500_000},
}
# "paper": the positives behind the paper's Table I (samples x r / (1 + r), roughly).
_PAPER_SIZES = {
    "amazon": {6: 3_700_000, 13: 4_700_000},
    "taobao": {10: 40_000, 20: 105_000, 30: 172_000},
}
_TAOBAO_PAPER_PER_DOMAIN = 5_700


# ---- public helpers ---------------------------------------------------------------------
def resolve_size(kind: str, size: str | int, n_domains: int) -> int:
    """Total positive rows for a preset name or an int."""
    if isinstance(size, bool):
        raise UserError(f"bad size {size!r}: give a preset ({', '.join(PRESETS)}) or an int >= 1")
    if isinstance(size, (int, np.integer)):
        if not 1 <= size <= MAX_SIZE:
            raise UserError(
                f"bad size {size}: give a preset ({', '.join(PRESETS)}) or an int from 1 to "
                f"{MAX_SIZE:,} (10x the paper's Amazon-13)"
            )
        return int(size)
    if isinstance(size, str):
        s = size.strip().lower().replace("_", "")
        if s.isdigit():
            return resolve_size(kind, int(s), n_domains)
        if s in _PRESET_SIZES[kind]:
            return _PRESET_SIZES[kind][s]
        if s == "paper":
            table = _PAPER_SIZES[kind]
            if n_domains in table:
                return table[n_domains]
            if kind == "amazon":
                return table[6] if n_domains <= 6 else table[13]
            return _TAOBAO_PAPER_PER_DOMAIN * n_domains
    raise UserError(f"bad size {size!r}: give a preset ({', '.join(PRESETS)}) or an int >= 1")


def output_files(kind: str, n_domains: int | None = None) -> list[str]:
    """The file names `synthesize` writes."""
    n = _check(kind, n_domains)
    if kind == "amazon":
        return [amazon_file_name(c) for c in AMAZON_CATEGORIES[:n]]
    return [
        "theme_click_log.csv",
        "user_embedding.csv",
        "item_embedding.csv",
        "theme_item_pool.csv",
        "user_item_purchase_log.csv",
    ]


def synthesize(
    kind: str,
    out: Path,
    *,
    n_domains: int | None = None,
    size: str | int = "small",
    seed: int = 0,
) -> Path:
    """Write synthetic raw files of `kind` ("amazon" or "taobao") into `out`; return `out`.

    `size` is a preset ("tiny", "small", "medium", "paper") or the total number of
    positive rows (review lines / click rows, planted duplicates included) over all written
    domains. `n_domains` defaults to 13 (amazon: amazon-6's six categories first) and 30
    (taobao). Same arguments -> byte-identical files.
    """
    n = _check(kind, n_domains)
    total = resolve_size(kind, size, n)
    if total < _MIN_ROWS * n:
        raise UserError(
            f"size {total} is too small for {n} {kind} domains: give at least {_MIN_ROWS * n} "
            f"rows ({_MIN_ROWS} a domain) or a preset ({', '.join(PRESETS)})"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"bad seed {seed!r}: give an int >= 0")
    from mdrbench.atomic import writable_dir

    out = writable_dir(Path(out))
    rng = np.random.default_rng(int(seed))
    prof = domain_profile(kind, n)
    if kind == "amazon":
        _amazon(out, prof, total, rng)
    else:
        _taobao(out, prof, total, rng)
    return out
