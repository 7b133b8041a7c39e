"""Tiny raw files in the real formats, written by the tests themselves."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from mdrbench.builders.specs import amazon_file_name


def write_amazon(raw_dir: Path, category: str, n_users=30, n_items=12, per_user=5, seed=0,
                 extra_lines=()) -> Path:  # fmt: skip
    """A 5-core-like category file; keys in varying order, optional fields sometimes absent."""
    rnd = random.Random(seed)
    raw_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for u in range(n_users):
        for it in rnd.sample(range(n_items), per_user):
            rec = {
                "overall": float(rnd.randint(1, 5)),
                "verified": True,
                "reviewTime": "06 17, 2018",
                "reviewerID": f"A{seed}U{u:05d}",
                "asin": f"B{seed}I{it:06d}",
                "reviewerName": "x",
                "unixReviewTime": 1529193600,
            }
            if rnd.random() < 0.5:
                rec["reviewText"] = "great"
            if rnd.random() < 0.3:
                rec["vote"] = "1,341"
            keys = list(rec)
            rnd.shuffle(keys)
            lines.append(json.dumps({k: rec[k] for k in keys}))
    lines.append(lines[0])  # an exact duplicate line, as in the real files
    lines.extend(extra_lines)
    path = raw_dir / amazon_file_name(category)
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode())
    return path


def write_taobao(raw_dir: Path, n_themes=3, n_users=40, n_items=30, seed=0, header=None) -> Path:
    rnd = random.Random(seed)
    raw_dir.mkdir(parents=True, exist_ok=True)
    themes = [9000 - 7 * t for t in range(n_themes)]  # not in sorted order
    rows = []
    for t in themes:
        for u in range(n_users):
            for it in rnd.sample(range(n_items), 4):
                rows.append(f"{100 + u},{t},{500 + it},1,2,1,20190101120000")
    (raw_dir / "theme_click_log.csv").write_text(
        (header or "user_id,theme_id,item_id,leaf_cate_id,cate_level1_id,clk_cnt,reach_time")
        + "\n"
        + "\n".join(rows)
        + "\n"
    )
    emb = lambda: " ".join(f"{rnd.gauss(0, 1):.4f}" for _ in range(128))  # noqa: E731
    # User 100 and item 500 have no embedding: their clicks are dropped.
    (raw_dir / "user_embedding.csv").write_text(
        "user_id,emb\n" + "".join(f"{100 + u},{emb()}\n" for u in range(1, n_users))
    )
    (raw_dir / "item_embedding.csv").write_text(
        "item_id,emb\n" + "".join(f"{500 + i},{emb()}\n" for i in range(1, n_items))
    )
    return raw_dir
