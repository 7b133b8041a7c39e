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

import gzip
import json
import math
import os
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.specs import AMAZON_6, AMAZON_13, amazon_file_name
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

KINDS = ("amazon", "taobao")
PRESETS = ("tiny", "small", "medium", "paper")
MAX_SIZE = 50_000_000  # positive rows; memory grows about linearly (1e14 asked for 45 TiB)

# amazon-6's categories first (its order), then the other seven of amazon-13 (their order):
# `--domains 6` gives exactly amazon-6's files, the default (13) every amazon dataset's.
AMAZON_CATEGORIES = AMAZON_6 + tuple(c for c in AMAZON_13 if c not in AMAZON_6)
MAX_DOMAINS = {"amazon": len(AMAZON_CATEGORIES), "taobao": 100}
DEFAULT_DOMAINS = {"amazon": 13, "taobao": 30}

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

# Relative sizes of the Amazon categories (rich -> sparse, shaped like Tables II-III).
_AMAZON_WEIGHTS = {
    "Musical Instruments": 7.0,
    "Office Products": 20.0,
    "Patio Lawn and Garden": 16.0,
    "Prime Pantry": 4.0,
    "Toys and Games": 26.0,
    "Video Games": 14.0,
    "Arts Crafts and Sewing": 9.0,
    "Digital Music": 3.0,
    "Gift Cards": 0.15,
    "Industrial and Scientific": 1.8,
    "Luxury Beauty": 0.4,
    "Magazine Subscriptions": 0.12,
    "Software": 0.12,
}

# ---- planted structure (documented in docs/synth.md) ------------------------------------
KS = 4  # shared latent dimensions
KC = 4  # conflicting (domain-specific) latent dimensions
W_C = 1.0  # weight of the domain-specific part
POP = 0.5  # weight of item popularity
TAU = 0.4  # softmax temperature of the choice among candidates
CANDIDATES = 6  # uniform candidates drawn from the domain's pool per positive
N_GROUPS = 3
CLUSTERS = 16  # taste clusters shared by users and items
CLUSTER_SHARE = 0.6  # share of a latent's variance that its cluster explains
AMAZON_USER_DEG = 8.0  # mean positives of a user in a category
AMAZON_ITEM_DEG = 20.0  # mean positives of an item in a category
AMAZON_DOMAINS_PER_USER = 2.0  # sum over categories of their users / number of users
_PROFILE_SEED = 20230403  # domain-level parameters: fixed, independent of `seed`
_MIN_ROWS = 20  # every domain gets at least this many rows
_EMB_DIM = 128
_EMB_NOISE = 1.0

_ALNUM = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


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


def _check(kind: str, n_domains: int | None) -> int:
    if kind not in KINDS:
        raise UserError(f"unknown synthetic kind {kind!r}. Valid kinds: {', '.join(KINDS)}")
    if n_domains is None:
        return DEFAULT_DOMAINS[kind]
    top = MAX_DOMAINS[kind]
    if isinstance(n_domains, bool) or not isinstance(n_domains, (int, np.integer)):
        raise UserError(f"bad n_domains {n_domains!r}: give an int from 1 to {top} for {kind}")
    if not 1 <= n_domains <= top:
        raise UserError(f"bad n_domains {n_domains}: {kind} has 1 to {top} domains")
    return int(n_domains)


def domain_profile(kind: str, n_domains: int | None = None) -> list[dict]:
    """The domain-level parameters planted for `kind` (independent of the seed): name,
    size share, conflict group and the conflict weights s[d, :]."""
    n = _check(kind, n_domains)
    prof_rng = np.random.default_rng(_PROFILE_SEED)
    if kind == "amazon":
        names = list(AMAZON_CATEGORIES[:n])
        w = np.array([_AMAZON_WEIGHTS[c] for c in names])
        prof_rng.normal(size=MAX_DOMAINS["taobao"])  # keep the stream aligned with taobao
    else:
        names = [f"theme {d + 1}" for d in range(n)]
        z = prof_rng.normal(size=MAX_DOMAINS["taobao"])[:n]
        w = np.exp(-np.arange(n) / 7.0) * np.exp(0.5 * z)
    mags = prof_rng.uniform(0.5, 1.5, size=(MAX_DOMAINS["taobao"], KC))[:n]
    share = w / w.sum()
    out = []
    for d in range(n):
        g = d % N_GROUPS
        sign = np.ones(KC)
        if g == 1:
            sign[: KC // 2] = -1.0
        elif g == 2:
            sign[KC // 2 :] = -1.0
        out.append(
            {
                "domain": d,
                "name": names[d],
                "share": float(share[d]),
                "group": g,
                "conflict_weights": [round(float(x), 4) for x in sign * mags[d]],
            }
        )
    return out


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


# ---- shared machinery -------------------------------------------------------------------
def _allocate(total: int, shares: np.ndarray, floor: int) -> np.ndarray:
    """Integer rows per domain summing to `total`, each >= min(floor, total // n)."""
    n = len(shares)
    floor = min(floor, total // n)
    counts = np.maximum(np.floor(shares * total).astype(np.int64), floor)
    diff = total - int(counts.sum())
    order = np.argsort(-shares, kind="stable")
    i = 0
    while diff != 0:
        d = order[i % n]
        if diff > 0:
            counts[d] += 1
            diff -= 1
        elif counts[d] > floor:
            counts[d] -= 1
            diff += 1
        i += 1
    return counts


def _unique_ints(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """n distinct random ints in [low, high), in random order."""
    got = np.empty(0, dtype=np.int64)
    while len(got) < n:
        draw = rng.integers(low, high, size=int((n - len(got)) * 1.05) + 16)
        allv = np.concatenate([got, draw])
        _, first = np.unique(allv, return_index=True)
        got = allv[np.sort(first)]
    return got[:n]


def _random_strings(
    rng: np.random.Generator, n: int, lengths: np.ndarray, alphabet: np.ndarray, prefix: bytes
) -> list[str]:
    """n distinct strings prefix + random chars from alphabet, of the given total lengths."""
    width = int(lengths.max()) - len(prefix)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        k = n - len(out)
        codes = alphabet[rng.integers(0, len(alphabet), size=(k, width))]
        raw = codes.view(f"S{width}").ravel()
        lens = lengths[len(out) : len(out) + k] - len(prefix)
        p = prefix.decode()
        for s, ln in zip(raw, lens):
            v = p + s[:ln].decode()
            if v not in seen:
                seen.add(v)
                out.append(v)
    return out


def _sample_weighted(rng: np.random.Generator, logw: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices, drawn without replacement with probability ~ exp(logw) (Gumbel top-k)."""
    k = min(k, len(logw))
    key = logw + rng.gumbel(size=len(logw))
    idx = np.argpartition(-key, k - 1)[:k] if k < len(logw) else np.arange(len(logw))
    return np.sort(idx)


def _counts(rng: np.random.Generator, total: int, m: int, base: int, weights: np.ndarray, cap: int):
    """Positives per user for up to m users, summing to `total` unless capped: `base` each
    (8% of users a little fewer: not strictly 5-core), the rest multinomial ~ weights."""
    c = np.full(m, min(base, cap), dtype=np.int64)
    if base > 2:
        few = rng.random(m) < 0.08
        c[few] = np.minimum(c[few], rng.integers(max(1, base - 3), base, size=int(few.sum())))
    if c.sum() > total:  # tiny domains: fewer users, one positive each to start
        c = np.ones(min(m, total), dtype=np.int64)
    rest = total - int(c.sum())
    if rest > 0:
        w = weights[: len(c)]
        c += rng.multinomial(rest, w / w.sum())
    return np.minimum(c, cap)


def _choose(
    rng: np.random.Generator,
    user_vec: np.ndarray,  # (m, K) domain-weighted user vectors of the domain's users
    item_vec: np.ndarray,  # (P, K) item vectors of the domain's pool
    item_bias: np.ndarray,  # (P,)
    counts: np.ndarray,  # (m,) positives wanted per user
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each user, `counts[u]` distinct pool items drawn ~ softmax(score / TAU) among
    CANDIDATES * counts[u] uniform candidates. Returns (user_local, item_local, score)."""
    m, p = len(counts), len(item_bias)
    n_cand = counts * CANDIDATES
    cu = np.repeat(np.arange(m, dtype=np.int64), n_cand)
    ci = rng.integers(0, p, size=len(cu))
    score = np.empty(len(cu), dtype=np.float32)
    step = 1 << 20
    for s in range(0, len(cu), step):
        e = s + step
        score[s:e] = (
            np.einsum("ij,ij->i", user_vec[cu[s:e]], item_vec[ci[s:e]]) + item_bias[ci[s:e]]
        )
    key = score / TAU + rng.gumbel(size=len(cu)).astype(np.float32)
    order = np.lexsort((-key, cu))
    cu, ci, score = cu[order], ci[order], score[order]
    code = cu * p + ci
    _, first = np.unique(code, return_index=True)
    keep = np.zeros(len(cu), dtype=bool)
    keep[first] = True
    cu, ci, score = cu[keep], ci[keep], score[keep]
    start = np.searchsorted(cu, np.arange(m))
    pos = np.arange(len(cu)) - start[cu]
    sel = pos < counts[cu]
    return cu[sel], ci[sel], score[sel]


def _latents(rng: np.random.Generator, n: int, centers: np.ndarray) -> np.ndarray:
    """Latent vectors: a taste cluster's center plus individual noise (unit variance per dim)."""
    c = rng.integers(0, len(centers), size=n)
    z = rng.standard_normal(size=(n, KS + KC)).astype(np.float32)
    return (math.sqrt(CLUSTER_SHARE) * centers[c] + math.sqrt(1 - CLUSTER_SHARE) * z).astype(
        np.float32
    )


def _centers(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(size=(CLUSTERS, KS + KC)).astype(np.float32)


def _domain_user_vectors(lat: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """User side of score(.,.,d): [a_u / sqrt(KS), W_C * s[d] * c_u / sqrt(KC)]."""
    scale = np.concatenate([np.full(KS, 1 / math.sqrt(KS)), W_C * weights / math.sqrt(KC)])
    return (lat * scale.astype(np.float32)).astype(np.float32)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _pool(values: list[str]) -> pl.Series:
    return pl.Series(values, dtype=pl.String)


# ---- amazon -------------------------------------------------------------------------------
_DAY0 = 10957  # 2000-01-01 in days since the epoch
_DAY1 = 17775  # 2018-09-01

_FIRST = (
    "John Mary James Linda Robert Susan Michael Karen David Lisa William Nancy Richard Betty "
    "Joseph Sandra Thomas Donna Chris Carol Daniel Ruth Paul Sharon Mark Michelle Steven Laura "
    "Kevin Sarah Brian Kim Jeff Deborah Gary Jessica Tim Cynthia Jason Angela Ryan Melissa "
    "Eric Amy Jacob Anna Victor Beth Pam Denise"
).split()
_LAST = (
    "Smith Johnson Williams Brown Jones Miller Davis Garcia Rodriguez Wilson Martinez Anderson "
    "Taylor Thomas Moore Jackson Martin Lee Thompson White Harris Clark Lewis Robinson Walker "
    "Young Allen King Wright Scott Hill Green Adams Baker Nelson Carter Mitchell Roberts"
).split()
_ODD_NAMES = [
    "Amazon Customer",
    "Kindle Customer",
    "Jos\u00e9 Mu\u00f1oz",
    "Ren\u00e9e",
    'J. "JJ" Doe',
    "Bookworm",
    "Happy Shopper",
    "Gadget Guy",
    "mom of 3",
    "A. Reader",
]
_SENTENCES = [
    "Works as described.",
    "Great value for the money.",
    "Arrived quickly and well packaged.",
    "My kids love it.",
    "The quality is better than I expected.",
    "Not what I expected, but it does the job.",
    "I would buy this again.",
    "Broke after two weeks of use.",
    "Exactly what I needed.",
    "Easy to set up and use.",
    "The color is a bit different from the picture.",
    "Five stars, highly recommend!",
    'It\'s a "must have" for anyone who needs one.',
    "Returned it.",
    "Good product, fair price.",
    "Smaller than it looks in the photos.",
    "Bought this as a gift and they loved it.",
    "Does what it says, nothing more.",
    "Instructions were unclear.",
    "Sturdy and well made.",
    "I've been using it daily for a month now.",
    "Customer service was helpful.",
    "Perfect fit.",
    "Too expensive for what you get.",
    "Would recommend to a friend.",
]
_SUMMARIES = [
    "Great",
    "Works great",
    "Love it",
    "Good value",
    "As described",
    "Disappointed",
    "Not bad",
    "Perfect",
    "Nice",
    "Excellent product",
    "OK for the price",
    "Would buy again",
    "Does the job",
    "Highly recommend",
    "Meh",
]
_STAR_SUMMARY = ["One Star", "Two Stars", "Three Stars", "Four Stars", "Five Stars"]
_STYLES = {
    "Musical Instruments": [
        ("Color:", ["Black", "Natural", "Sunburst"]),
        ("Size:", ["1-Pack", "3-Pack"]),
    ],
    "Office Products": [("Color:", ["Black", "Blue", "Assorted"]), ("Size:", ["Letter", "Legal"])],
    "Patio Lawn and Garden": [
        ("Size:", ["Small", "Large", "10 ft"]),
        ("Color:", ["Green", "Brown"]),
    ],
    "Prime Pantry": [
        ("Size:", ["12 oz", "1 Pack", "6 Count"]),
        ("Flavor:", ["Original", "Vanilla"]),
    ],
    "Toys and Games": [
        ("Color:", ["Red", "Pink", "Multicolor"]),
        ("Style:", ["Standard", "Deluxe"]),
    ],
    "Video Games": [("Platform:", ["PlayStation 4", "Xbox One", "PC"]), ("Edition:", ["Standard"])],
    "Arts Crafts and Sewing": [("Color:", ["White", "Assorted"]), ("Size:", ["1 Yard", "Small"])],
    "Digital Music": [("Format:", ["Audio CD", "MP3 Music", "Vinyl"])],
    "Gift Cards": [("Gift Amount:", ["25", "50", "100"])],
    "Industrial and Scientific": [("Size:", ["1 Pack", "100 Count"]), ("Color:", ["Clear"])],
    "Luxury Beauty": [("Size:", ["1.7 Fl Oz", "3.4 Fl Oz"]), ("Color:", ["Nude", "Rose"])],
    "Magazine Subscriptions": [("Format:", ["Print Magazine", "Kindle Edition"])],
    "Software": [("Platform:", ["PC Download", "Mac", "PC/Mac Disc"])],
}
# key orders: the real files' usual order (optional keys where they sit), their second order,
# and three shuffles
_TEMPLATES = [
    ["image", "overall", "vote", "verified", "reviewTime", "reviewerID", "asin", "style",
     "reviewerName", "reviewText", "summary", "unixReviewTime"],
    ["reviewerID", "asin", "reviewerName", "verified", "image", "reviewText", "overall",
     "reviewTime", "summary", "unixReviewTime", "vote", "style"],
    ["asin", "overall", "reviewerID", "summary", "reviewText", "verified", "unixReviewTime",
     "reviewTime", "vote", "image", "reviewerName", "style"],
    ["overall", "reviewTime", "unixReviewTime", "reviewerID", "reviewerName", "asin",
     "verified", "style", "summary", "reviewText", "image", "vote"],
    ["summary", "reviewText", "style", "reviewerName", "asin", "reviewerID", "vote",
     "unixReviewTime", "reviewTime", "verified", "overall", "image"],
]  # fmt: skip
_CHUNK = 200_000  # lines built and compressed at a time (bounds memory)
_STYLE_RATE = {
    "Gift Cards": 0.35,
    "Digital Music": 0.8,
    "Software": 0.7,
    "Magazine Subscriptions": 0.9,
}


def _dumps(s: str) -> str:
    return json.dumps(s)


def _style_pool(category: str) -> list[str]:
    """`"style": {...}` fragments for a category (one or two keys)."""
    attrs = _STYLES[category]
    frags = []
    for k, vals in attrs:
        for v in vals:
            frags.append(f'"style": {{{_dumps(k)}: {_dumps(" " + v)}}}')
    if len(attrs) > 1:
        (k1, v1s), (k2, v2s) = attrs[0], attrs[1]
        for v1 in v1s:
            for v2 in v2s:
                frags.append(
                    f'"style": {{{_dumps(k1)}: {_dumps(" " + v1)}, {_dumps(k2)}: {_dumps(" " + v2)}}}'
                )
    return frags


def _text_pools(rng: np.random.Generator) -> tuple[list[str], list[str], list[str]]:
    """JSON fragments for reviewText, summary and image (small pools, gathered per line)."""
    texts = []
    for _ in range(600):
        k = int(rng.integers(1, 5))
        sent = [_SENTENCES[j] for j in rng.integers(0, len(_SENTENCES), size=k)]
        sep = "\n\n" if rng.random() < 0.1 else " "
        texts.append('"reviewText": ' + _dumps(sep.join(sent)))
    summaries = ['"summary": ' + _dumps(s) for s in _SUMMARIES + _STAR_SUMMARY]
    images = []
    for _ in range(200):
        k = int(rng.integers(1, 5))
        codes = _random_strings(
            rng,
            k,
            np.full(k, 11),
            np.frombuffer(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-", dtype=np.uint8
            ),
            b"",
        )
        urls = [f"https://images-na.ssl-images-amazon.com/images/I/{c}._SY88.jpg" for c in codes]
        images.append('"image": ' + json.dumps(urls))
    return texts, summaries, images


def _day_pools() -> tuple[list[str], list[str]]:
    days = np.arange(_DAY0, _DAY1 + 1)
    dates = days.astype("datetime64[D]").astype(str)  # YYYY-MM-DD
    rt, ut = [], []
    for day, iso in zip(days.tolist(), dates.tolist()):
        y, mo, dd = iso.split("-")
        rt.append(f'"reviewTime": "{mo} {int(dd)}, {y}"')
        ut.append(f'"unixReviewTime": {day * 86400}')
    return rt, ut


def _amazon(out: Path, prof: list[dict], total: int, rng: np.random.Generator) -> None:
    n = len(prof)
    shares = np.array([p["share"] for p in prof])
    lines = _allocate(total, shares, _MIN_ROWS)
    n_rerate = (lines * 0.003).astype(np.int64)
    n_dup = (lines * 0.004).astype(np.int64)
    n_pos = lines - n_rerate - n_dup
    m = np.maximum(1, np.round(n_pos / AMAZON_USER_DEG)).astype(np.int64)
    pool = np.maximum(np.minimum(15, n_pos), np.round(n_pos / AMAZON_ITEM_DEG)).astype(np.int64)

    # one global population of users and items
    n_users = int(max(m.max(), round(m.sum() / AMAZON_DOMAINS_PER_USER)))
    centers = _centers(rng)
    u_lat = _latents(rng, n_users, centers)
    u_act = rng.normal(0.0, 1.0, size=n_users)  # log activity
    borrow = np.where(np.arange(n) > 0, np.round(pool * 0.05), 0).astype(np.int64)
    own = pool - borrow
    n_items = int(own.sum())
    i_lat = _latents(rng, n_items, centers)
    i_pop = rng.normal(0.0, 1.0, size=n_items).astype(np.float32)
    own_start = np.concatenate([[0], np.cumsum(own)])
    pools = []
    for d in range(n):
        mine = np.arange(own_start[d], own_start[d + 1])
        if borrow[d] > 0:
            others = np.concatenate(
                [np.arange(0, own_start[d]), np.arange(own_start[d + 1], n_items)]
            )
            extra = rng.choice(others, size=min(int(borrow[d]), len(others)), replace=False)
            mine = np.concatenate([mine, np.sort(extra)])
        pools.append(mine)

    # ids and names
    u_len = np.where(rng.random(n_users) < 0.74, 14, np.where(rng.random(n_users) < 0.97, 13, 12))
    reviewer_ids = _random_strings(rng, n_users, u_len, _ALNUM, b"A")
    isbn = rng.random(n_items) < 0.05
    asins = _random_strings(rng, n_items, np.full(n_items, 10), _ALNUM, b"B0")
    isbn_codes = _random_strings(rng, int(isbn.sum()), np.full(int(isbn.sum()), 10), _DIGITS, b"")
    asins = np.array(asins, dtype=object)
    asins[isbn] = isbn_codes
    asin_rank = np.argsort(np.argsort(asins.astype(str), kind="stable"), kind="stable")
    name_pool = list(_ODD_NAMES)
    for f in _FIRST:
        name_pool.append(f)
        name_pool.extend(
            f"{f} {last[0]}." if k % 2 else f"{f} {last}" for k, last in enumerate(_LAST)
        )
    # "Amazon Customer" ~8%, "Kindle Customer" ~1%, the rest spread over the pool
    u = rng.random(n_users)
    name_idx = np.where(
        u < 0.08, 0, np.where(u < 0.09, 1, rng.integers(2, len(name_pool), size=n_users))
    )
    name_frag = _pool(['"reviewerName": ' + _dumps(s) for s in name_pool]).gather(name_idx)
    rid_frag = _pool(['"reviewerID": ' + _dumps(s) for s in reviewer_ids])
    asin_frag = _pool([f'"asin": "{a}"' for a in asins.tolist()])
    texts, summaries, images = _text_pools(rng)
    text_s, summ_s, img_s = _pool(texts), _pool(summaries), _pool(images)
    rt_s, ut_s = (_pool(x) for x in _day_pools())
    n_days = _DAY1 - _DAY0 + 1

    for d, p in enumerate(prof):
        # users of this domain: weighted by activity, so active users appear in many domains
        users = _sample_weighted(rng, u_act, int(m[d]))
        cap = max(1, len(pools[d]) // 2)
        counts = _counts(rng, int(n_pos[d]), len(users), 5, np.exp(u_act[users]), cap)
        users = users[: len(counts)]
        uvec = _domain_user_vectors(u_lat[users], np.asarray(p["conflict_weights"]))
        ivec = i_lat[pools[d]]
        bias = POP * (i_pop[pools[d]] + 0.5 * rng.standard_normal(len(pools[d])).astype(np.float32))
        ul, il, score = _choose(rng, uvec, ivec, bias, counts)
        gu, gi = users[ul], pools[d][il]
        k = len(gu)
        # ratings: mostly 5, a bit higher for better-matching pairs
        z = score - score.mean() if k else score
        rating = np.clip(np.round(4.8 + 0.35 * z + rng.normal(0, 0.9, k)), 1, 5).astype(np.int64)
        angry = rng.random(k) < 0.03
        rating[angry] = rng.integers(1, 3, size=int(angry.sum()))
        day = np.clip(_DAY1 - np.floor(rng.exponential(900.0, k)), _DAY0, _DAY1).astype(np.int64)
        # the same pair reviewed twice with a different rating (kept twice by the builder)
        nr = min(int(n_rerate[d]), k)
        if nr:
            rr = rng.choice(k, size=nr, replace=False)
            gu = np.concatenate([gu, gu[rr]])
            gi = np.concatenate([gi, gi[rr]])
            new_r = (rating[rr] - 1 + rng.integers(1, 5, size=nr)) % 5 + 1
            rating = np.concatenate([rating, new_r])
            day = np.concatenate([day, np.minimum(_DAY1, day[rr] + rng.integers(1, 400, size=nr))])
        k = len(gu)
        order = np.lexsort((-day, asin_rank[gi]))
        # exact duplicate lines right after their original: fill up to the wanted line count
        ndup = max(0, int(lines[d]) - k)
        reps = np.ones(k, dtype=np.int64)
        if ndup and k:
            reps[rng.choice(k, size=min(ndup, k), replace=False)] += 1
            while reps.sum() < lines[d]:
                reps[rng.integers(0, k)] += 1
        _write_amazon(out / amazon_file_name(p["name"]), p["name"], rng, gu, gi, rating, day, order, reps,
                      name_frag, rid_frag, asin_frag, text_s, summ_s, img_s, rt_s, ut_s, n_days)  # fmt: skip


def _write_amazon(
    path, category, rng, gu, gi, rating, day, order, reps,
    name_frag, rid_frag, asin_frag, text_s, summ_s, img_s, rt_s, ut_s, n_days,
) -> None:  # fmt: skip
    k = len(gu)
    # per-line random attributes (drawn before duplication, so duplicates are exact)
    verified = rng.random(k) < 0.9
    has_vote = rng.random(k) < 0.1
    vote = np.minimum(2 + np.floor(rng.pareto(1.3, k) * 3), 99_999).astype(np.int64)
    style_pool = _style_pool(category)
    has_style = rng.random(k) < _STYLE_RATE.get(category, 0.5)
    style_idx = rng.integers(0, len(style_pool), k)
    has_image = rng.random(k) < 0.02
    img_idx = rng.integers(0, len(img_s), k)
    text_idx = rng.integers(0, len(text_s), k)
    has_text = rng.random(k) >= 0.002
    star = rng.random(k) < 0.45
    summ_idx = np.where(star, len(_SUMMARIES) + rating - 1, rng.integers(0, len(_SUMMARIES), k))
    has_summ = rng.random(k) >= 0.001
    tpl = np.where(
        rng.random(k) < 0.9, 0, np.where(rng.random(k) < 0.8, 1, 2 + rng.integers(0, 3, k))
    )

    idx = np.repeat(order, reps[order])
    overall_s = _pool([f'"overall": {r}.0' for r in range(1, 6)])
    verified_s = _pool(['"verified": false', '"verified": true'])
    style_s = _pool(style_pool)
    vote_str = (
        pl.when(pl.col("v") >= 1000)
        .then(
            pl.format(
                "{},{}", pl.col("v") // 1000, (pl.col("v") % 1000).cast(pl.String).str.zfill(3)
            )
        )
        .otherwise(pl.col("v").cast(pl.String))
    )
    expr = None
    for t, keys in enumerate(_TEMPLATES):
        line = pl.concat_str([pl.col(c) for c in keys], separator=", ", ignore_nulls=True)
        cond = pl.col("tpl") == t
        expr = pl.when(cond).then(line) if expr is None else expr.when(cond).then(line)
    line_expr = pl.concat_str([pl.lit("{"), expr.otherwise(None), pl.lit("}\n")])

    def lines(j: np.ndarray) -> bytes:
        """The JSON lines of rows j (strings built column-wise, no per-line json.dumps)."""
        optional = {
            "vote": has_vote[j],
            "style": has_style[j],
            "image": has_image[j],
            "reviewText": has_text[j],
            "summary": has_summ[j],
        }
        df = pl.DataFrame(
            {
                "overall": overall_s.gather(rating[j] - 1),
                "verified": verified_s.gather(verified[j].astype(np.int64)),
                "reviewTime": rt_s.gather(day[j] - _DAY0),
                "reviewerID": rid_frag.gather(gu[j]),
                "asin": asin_frag.gather(gi[j]),
                "reviewerName": name_frag.gather(gu[j]),
                "unixReviewTime": ut_s.gather(day[j] - _DAY0),
                "reviewText": text_s.gather(text_idx[j]),
                "summary": summ_s.gather(summ_idx[j]),
                "style": style_s.gather(style_idx[j]),
                "image": img_s.gather(img_idx[j]),
                "v": vote[j],
                "tpl": tpl[j],
                **{f"m_{c}": x for c, x in optional.items()},
            }
        )
        df = df.with_columns(
            pl.concat_str([pl.lit('"vote": "'), vote_str, pl.lit('"')]).alias("vote")
        ).with_columns(
            [pl.when(pl.col(f"m_{c}")).then(pl.col(c)).otherwise(None).alias(c) for c in optional]
        )
        return "".join(df.select(line_expr.alias("l"))["l"].to_list()).encode("ascii")

    inner = path.name[: -len(".gz")]  # the gzip header names the inner file, as the real ones

    def write(f):
        with gzip.GzipFile(filename=inner, mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz:
            for s in range(0, len(idx), _CHUNK):
                gz.write(lines(idx[s : s + _CHUNK]))

    _atomic_write(path, write)


# ---- taobao ---------------------------------------------------------------------------------
_T0 = 1543593600  # 2018-11-30 16:00:00 UTC (2018-12-01 00:00 in Beijing)


def _fmt_time(ts: np.ndarray) -> pl.Series:
    return pl.from_epoch(pl.Series(ts.astype(np.int64)), time_unit="s").dt.strftime("%Y%m%d%H%M%S")


def _emb_strings(x: np.ndarray) -> pl.Series:
    x = np.round(x.astype(np.float64), 4) + 0.0  # + 0.0: no "-0.0"
    s = pl.Series("emb", x.astype(np.float32))
    return s.cast(pl.List(pl.Float32)).list.eval(pl.element().cast(pl.String)).list.join(" ")


def _write_csv(path: Path, df: pl.DataFrame) -> None:
    _atomic_write(path, lambda f: df.write_csv(f, quote_style="necessary", line_terminator="\n"))


def _taobao(out: Path, prof: list[dict], total: int, rng: np.random.Generator) -> None:
    n = len(prof)
    shares = np.array([p["share"] for p in prof])
    rows = _allocate(total, shares, _MIN_ROWS)
    n_re = (rows * 0.06).astype(np.int64)  # re-click rows: duplicate (user, item, theme)
    n_pos = rows - n_re
    user_deg, item_deg = 1.6, 6.0
    m = np.maximum(1, np.round(n_pos / user_deg)).astype(np.int64)
    pool = np.maximum(np.minimum(30, 2 * n_pos), np.round(n_pos / item_deg * 1.3)).astype(np.int64)

    n_users = int(max(m.max(), round(m.sum() / 1.3)))
    centers = _centers(rng)
    u_lat = _latents(rng, n_users, centers)
    u_act = rng.normal(0.0, 1.0, size=n_users)
    n_items = int(max(pool.max(), round(pool.sum() / 1.25)))
    i_lat = _latents(rng, n_items, centers)
    i_pop = rng.normal(0.0, 1.0, size=n_items).astype(np.float32)
    pools = [np.sort(rng.choice(n_items, size=int(pool[d]), replace=False)) for d in range(n)]

    user_ids = _unique_ints(rng, n_users, 10_000_000, 2_000_000_000)
    item_ids = _unique_ints(rng, n_items, 1_000_000, 600_000_000)
    theme_ids = _unique_ints(rng, n, 1_000, 100_000)
    if n >= 2 and np.all(np.diff(theme_ids) > 0):
        theme_ids[[0, 1]] = theme_ids[[1, 0]]
    n_leaf = max(10, n_items // 25)
    leaf_ids = _unique_ints(rng, n_leaf, 50_000, 200_000_000)
    l1_ids = _unique_ints(rng, max(3, n_leaf // 15), 1_000, 200_000_000)
    leaf_of = rng.integers(0, n_leaf, n_items)
    l1_of_leaf = rng.integers(0, len(l1_ids), n_leaf)

    t_start = _T0 + np.cumsum(rng.integers(3_600, 6 * 3_600, size=n))  # themes launch in turn
    parts = []
    for d, p in enumerate(prof):
        users = _sample_weighted(rng, u_act, int(m[d]))
        counts = _counts(
            rng,
            int(n_pos[d]),
            len(users),
            1,
            np.exp(0.5 * u_act[users]),
            max(1, len(pools[d]) // 2),
        )
        users = users[: len(counts)]
        uvec = _domain_user_vectors(u_lat[users], np.asarray(p["conflict_weights"]))
        bias = POP * (i_pop[pools[d]] + 0.5 * rng.standard_normal(len(pools[d])).astype(np.float32))
        ul, il, _ = _choose(rng, uvec, i_lat[pools[d]], bias, counts)
        gu, gi = users[ul], pools[d][il]
        # re-clicks: the same (user, item, theme) again later; fill up to the wanted row count
        k = len(gu)
        extra = int(rows[d]) - k
        off = np.minimum(np.floor(rng.exponential(2 * 86_400, k)), 14 * 86_400).astype(np.int64) + 1
        if extra > 0 and k:
            again = rng.integers(0, k, size=extra)
            gu = np.concatenate([gu, gu[again]])
            gi = np.concatenate([gi, gi[again]])
            off = np.concatenate([off, off[again] + rng.integers(60, 3 * 86_400, size=extra)])
        clk = np.where(rng.random(len(gu)) < 0.9, 1, rng.integers(2, 4, size=len(gu)))
        parts.append((np.full(len(gu), d), gu, gi, off, clk))
    dom = np.concatenate([x[0] for x in parts])
    gu = np.concatenate([x[1] for x in parts])
    gi = np.concatenate([x[2] for x in parts])
    off = np.concatenate([x[3] for x in parts])
    clk = np.concatenate([x[4] for x in parts])

    # anchor: one row per theme at exactly the theme's start, so theme d appears first before
    # theme d + 1, with or without the rows whose user or item has no embedding.
    first_of = np.searchsorted(dom, np.arange(n))
    has_rows = first_of < np.append(first_of[1:], len(dom))
    anchor = first_of[has_rows]
    off[anchor] = 0
    # users / items without embeddings: ~2% / ~1.5% of those clicked, never an anchor's
    clicked_u = np.unique(gu)
    clicked_i = np.unique(gi)
    safe_u, safe_i = set(gu[anchor].tolist()), set(gi[anchor].tolist())
    cand_u = np.array([u for u in clicked_u.tolist() if u not in safe_u], dtype=np.int64)
    cand_i = np.array([i for i in clicked_i.tolist() if i not in safe_i], dtype=np.int64)
    no_emb_u = (
        rng.choice(cand_u, size=int(round(0.02 * len(clicked_u))), replace=False)
        if len(cand_u)
        else cand_u
    )
    no_emb_i = (
        rng.choice(cand_i, size=int(round(0.015 * len(clicked_i))), replace=False)
        if len(cand_i)
        else cand_i
    )
    if len(cand_u) and len(no_emb_u) == 0:
        no_emb_u = cand_u[:1]
    if len(cand_i) and len(no_emb_i) == 0:
        no_emb_i = cand_i[:1]

    ts = t_start[dom] + off
    order = np.lexsort((gi, gu, ts))
    dom, gu, gi, ts, clk = dom[order], gu[order], gi[order], ts[order], clk[order]
    click = pl.DataFrame(
        {
            "user_id": user_ids[gu],
            "theme_id": theme_ids[dom],
            "item_id": item_ids[gi],
            "leaf_cate_id": leaf_ids[leaf_of[gi]],
            "cate_level1_id": l1_ids[l1_of_leaf[leaf_of[gi]]],
            "clk_cnt": clk,
            "reach_time": _fmt_time(ts),
        }
    )
    _write_csv(out / "theme_click_log.csv", click)

    # embeddings: noisy linear maps of the latent vectors (items also carry popularity)
    wu = rng.standard_normal((KS + KC, _EMB_DIM)).astype(np.float32) / math.sqrt(KS + KC)
    wi = rng.standard_normal((KS + KC + 1, _EMB_DIM)).astype(np.float32) / math.sqrt(KS + KC + 1)
    extra_u = rng.choice(np.setdiff1d(np.arange(n_users), clicked_u), size=min(n_users - len(clicked_u), len(clicked_u) // 20), replace=False)  # fmt: skip
    emb_u = np.setdiff1d(np.concatenate([clicked_u, extra_u]), no_emb_u)
    emb_u = emb_u[rng.permutation(len(emb_u))]
    in_pool = np.unique(np.concatenate(pools))
    emb_i = np.setdiff1d(in_pool, no_emb_i)
    emb_i = emb_i[rng.permutation(len(emb_i))]

    def emb_frame(idx, lat, w, id_col, ids):
        parts = []
        step = 100_000
        for s in range(0, len(idx), step):
            j = idx[s : s + step]
            x = 0.25 * (
                lat(j) @ w + _EMB_NOISE * rng.standard_normal((len(j), _EMB_DIM)).astype(np.float32)
            )
            parts.append(pl.DataFrame({id_col: ids[j], "emb": _emb_strings(x)}))
        if not parts:
            return pl.DataFrame(
                {id_col: pl.Series([], dtype=pl.Int64), "emb": pl.Series([], dtype=pl.String)}
            )
        return pl.concat(parts)

    _write_csv(
        out / "user_embedding.csv", emb_frame(emb_u, lambda j: u_lat[j], wu, "user_id", user_ids)
    )
    _write_csv(
        out / "item_embedding.csv",
        emb_frame(
            emb_i,
            lambda j: np.concatenate([i_lat[j], i_pop[j, None]], axis=1),
            wi,
            "item_id",
            item_ids,
        ),
    )

    pool_df = pl.DataFrame(
        {
            "theme_id": np.concatenate([np.full(len(pools[d]), theme_ids[d]) for d in range(n)]),
            "item_id": item_ids[
                np.concatenate([pools[d][rng.permutation(len(pools[d]))] for d in range(n)])
            ],
        }
    )
    _write_csv(out / "theme_item_pool.csv", pool_df)

    # purchases: ~3% of clicks lead to a purchase a little later
    buy = np.flatnonzero(rng.random(len(gu)) < 0.03)
    pay = ts[buy] + rng.integers(120, 5 * 86_400, size=len(buy))
    o = np.argsort(pay, kind="stable")
    buy_df = pl.DataFrame(
        {
            "user_id": user_ids[gu[buy][o]],
            "item_id": item_ids[gi[buy][o]],
            "paytime": _fmt_time(pay[o]),
        }
    )
    _write_csv(out / "user_item_purchase_log.csv", buy_df)
