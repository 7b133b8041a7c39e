"""The Amazon writer: one `<Category>_5.json.gz` per category, gzip JSON Lines as the
Amazon 2018 5-core files, ids only (no embeddings), drawn from the planted structure."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl

from mdrbench.builders.specs import amazon_file_name
from mdrbench.builders.synth.planted import (
    _MIN_ROWS,
    AMAZON_DOMAINS_PER_USER,
    AMAZON_ITEM_DEG,
    AMAZON_USER_DEG,
    POP,
    _allocate,
    _atomic_write,
    _centers,
    _choose,
    _counts,
    _domain_user_vectors,
    _latents,
    _random_strings,
    _sample_weighted,
)

_ALNUM = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


def _pool(values: list[str]) -> pl.Series:
    return pl.Series(values, dtype=pl.String)


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
