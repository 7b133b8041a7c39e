"""The static leaderboard site: HTML, one CSS file and one plain-JavaScript file.

No CDN, no network, no build step: the pages work opened from disk (file://) and from any
static host. Every string that comes from a results file or a manifest goes through `h()`
(HTML-escaped, quotes included) before it reaches a page; resolved configs are written as
JSON files next to the pages and linked, never inlined.

Every entry shows its track (paper, tuned or custom: mdrbench/track.py) and is ranked only
within it: each track is its own group of rows (a <tbody>, sorted on its own), and a tuned
entry's page section shows its selected values and its trial table (validation AUC only).

Layout of SITE_DIR:
    index.html            one sortable table per dataset build (+ the paper's reference rows)
    <dataset>.html        per-domain AUC table, heatmap (inline SVG), method x model matrix
                          per track, each tuned entry's trials
    configs/<id>.json     the resolved config of each entry's runs
    leaderboard.csv       the reproduced entries as data: one row per entry (index tables)
    leaderboard.json      the same with each entry's per-domain AUCs (dataset pages)
    assets/style.css, assets/sort.js
"""

from __future__ import annotations

import html
import json
import math
import os
from collections import defaultdict
from importlib import resources
from pathlib import Path

from mdrbench import __version__
from mdrbench.atomic import staged
from mdrbench.baselines import paper
from mdrbench.errors import UserError
from mdrbench.leaderboard.aggregate import Entry, aggregate
from mdrbench.results import csv_cell
from mdrbench.track import TRACKS
from mdrbench.validate import MIN_SEEDS, LoadedResult

ASSETS = ("style.css", "sort.js")
# Written into every site; --out is only (re)written when empty or holding this marker, and
# only when it holds nothing but the files the marker lists (a site this command wrote).
SITE_MARKER = ".mdrbench-site.json"
# Methods in the paper's order (Table X), then anything else alphabetically.
METHOD_ORDER = ["joint", "alternate", "finetune", "separate", "weighted_loss", "pcgrad", "maml",
                "reptile", "mldg", "dn", "dr", "mamdr"]  # fmt: skip
# Models in the paper's order (Table V), then issue 20's in Scenario-Wise Rec's order.
MODEL_ORDER = ["mlp", "wdl", "nfm", "autoint", "deepfm", "shared_bottom", "mmoe", "ple", "star",
               "sarnet", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet", "hamur", "m3oe"]  # fmt: skip


def h(x) -> str:
    """HTML-escape anything shown on a page (text and attribute values alike)."""
    return html.escape(str(x), quote=True)


def _order(names, preferred) -> list[str]:
    pos = {n: i for i, n in enumerate(preferred)}
    return sorted(set(names), key=lambda n: (pos.get(n, len(pos)), n))


def _dataset_order(names) -> list[str]:
    from mdrbench.builders.specs import DATASETS

    return _order(names, DATASETS.names())


def page_file(dataset: str) -> str:
    """The dataset page's file name (dataset names are validated, but keep it safe anyway)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset).lstrip(".")
    return f"{safe or 'dataset'}.html"


# ---------------------------------------------------------------- formatting


def fmt_auc(mean, std=None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def fmt_rank(r) -> str:
    return "—" if r is None else f"{r:.2f}"


def fmt_params(n) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n:,}"


def fmt_seconds(s) -> str:
    if s is None:
        return "—"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _num(value) -> str:
    """A data-value attribute for sorting ('' sorts last)."""
    return "" if value is None else h(repr(float(value)))


def td(text, value=None, cls="num", extra="") -> str:
    dv = f' data-value="{_num(value)}"' if value is not None or cls == "num" else ""
    c = f' class="{cls}"' if cls else ""
    return f"<td{c}{dv}{extra}>{text}</td>"


def th(label, sort=None, cls="", first=None, title=None) -> str:
    attrs = ""
    if sort:
        attrs += f' data-sort="{sort}"'
    if first:
        attrs += f' data-first="{first}"'
    if cls:
        attrs += f' class="{cls}"'
    if title:
        attrs += f' title="{h(title)}"'
    inner = f'<button type="button">{h(label)}</button>' if sort else h(label)
    return f'<th scope="col"{attrs}>{inner}</th>'


def badge(kind: str, text: str | None = None) -> str:
    return f'<span class="badge {kind}">{h(text or kind)}</span>'


def page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'">
<title>{h(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="assets/style.css">
<script src="assets/sort.js" defer></script>
</head>
<body>
<header><nav><a href="index.html">Leaderboard</a></nav><h1>{h(title)}</h1></header>
<main>
{body}
</main>
<footer><p>Built by mdrbench {h(__version__)} (<code>mdrbench leaderboard build</code>). Every
reproduced number passed <code>mdrbench validate</code>; the paper's numbers are shown as
reported and never ranked with reproduced runs.</p></footer>
</body>
</html>
"""


# ---------------------------------------------------------------- tables


def sortable_table(kind: str, caption: str, head: str, bodies: list[str]) -> str:
    """A table sort.js makes sortable; `caption` and `head` are HTML already escaped."""
    return (
        f'<div class="table-wrap"><table class="sortable {kind}"><caption>{caption}</caption>'
        f"<thead><tr>{head}</tr></thead>{''.join(bodies)}</table></div>"
    )


def _method_cell(e: Entry) -> str:
    v = f' <span class="muted">variant {h(e.variant)}</span>' if e.variant else ""
    return f"<td>{h(e.method)}{v}</td>"


def _selected(e: Entry) -> dict:
    """A tuned entry's selected values ({} for any other)."""
    t = e.tuning
    return dict(t["trials"][t["selected"]]["config"]) if t else {}


def _value(v) -> str:
    """A hyperparameter's value as shown: a string bare, anything else as JSON."""
    return v if isinstance(v, str) else json.dumps(v)


def _track_cell(e: Entry) -> str:
    sel = _selected(e)
    if not sel:
        return f'<td class="track">{h(e.track)}</td>'
    values = ", ".join(f"{k}={_value(v)}" for k, v in sel.items())
    return (f'<td class="track" title="selected on validation: {h(values)}">'
            f'<a href="{h(page_file(e.dataset))}#tuned-{h(e.id)}">{h(e.track)}</a></td>')  # fmt: skip


def _by_track(entries: list[Entry]) -> list[tuple[str, list[Entry]]]:
    """`entries` grouped by track, in TRACKS order (any other track after them)."""
    names = _order({e.track for e in entries}, list(TRACKS))
    return [(t, [e for e in entries if e.track == t]) for t in names]


def _index_row(e: Entry) -> str:
    status = (
        badge("reproduced") if e.ranked else badge("unranked", f"unranked: {len(e.seeds)} seed(s)")
    )
    seeds = ", ".join(str(s) for s in e.seeds)
    return (
        "<tr>"
        f"<td>{h(e.model)}</td>{_method_cell(e)}"
        + td(fmt_auc(e.auc.mean, e.auc.std), e.auc.mean)
        + td(fmt_rank(e.rank) if e.ranked else "—", e.rank if e.ranked else None)
        + td(h(len(e.seeds)), len(e.seeds), extra=f' title="seeds {h(seeds)}"')
        + td(fmt_params(e.n_parameters), e.n_parameters)
        + td(h(fmt_seconds(e.train_seconds.mean)), e.train_seconds.mean)
        + f'<td class="source">{status} <a href="configs/{h(e.id)}.json">config</a></td>'
        + _track_cell(e) + "</tr>"
    )


def _paper_row(p: paper.PaperEntry) -> str:
    return (
        "<tr>"
        f'<td>{h(p.model)}</td><td title="{h(p.label)} (Table {h(p.table)})">{h(p.method)}</td>'
        + td(fmt_auc(p.auc), p.auc, extra=' title="one number, no seeds or std reported"')
        + td(
            f"{p.rank:.1f} (paper)" if p.rank is not None else "—",
            p.rank,
            extra=' title="the paper\'s RANK among its own methods; not comparable"',
        )
        + td("—", None) + td("—", None) + td("—", None)
        + f'<td class="source">{badge("reported", paper.LABEL)} '
        f'<span class="muted">Table {h(p.table)}</span></td>'
        '<td class="track">—</td></tr>'
    )  # fmt: skip


def paper_table(rows: list[paper.PaperEntry], caption: str) -> str:
    """The paper's rows for one dataset, as printed (its labels, AUC and RANK)."""
    head = (
        th("As printed", "text") + th("Model", "text") + th("Method", "text")
        + th("Average AUC", "num", "num", "descending") + th("RANK (paper)", "num", "num")
        + th("Table", "text")
    )  # fmt: skip
    body = "".join(
        f"<tr><td>{h(p.label)}</td><td>{h(p.model)}</td><td>{h(p.method)}</td>"
        + td(fmt_auc(p.auc), p.auc)
        + td("—" if p.rank is None else f"{p.rank:.1f}", p.rank)
        + f"<td>{h(p.table)}</td></tr>"
        for p in rows
    )
    return sortable_table("paper", caption, head, [f'<tbody class="group-reported">{body}</tbody>'])


def index_table(entries: list[Entry], reported: list[paper.PaperEntry], caption: str) -> str:
    unranked = sorted((e for e in entries if not e.ranked), key=lambda e: -(e.auc.mean or 0))
    head = (
        th("Model", "text") + th("Method", "text")
        + th("Average AUC (mean ± std)", "num", "num", "descending", "test AUC averaged over domains")
        + th("RANK", "num", "num", None, "per-domain rank among the reproduced entries of the same track, averaged")
        + th("Seeds", "num", "num") + th("Parameters", "num", "num")
        + th("Training time", "num", "num", None, "mean over seeds")
        + th("Source", "text")
        + th("Track", "text", None, None, "paper: the authors' configuration; tuned: selected "
             "on validation within a declared space and budget; custom: anything else; "
             "entries are ranked within their track only")
    )  # fmt: skip
    bodies = []
    for track, group in _by_track([e for e in entries if e.ranked]):
        ranked = sorted(group, key=lambda e: (e.rank is None, e.rank or 0))
        bodies.append(f'<tbody class="group-reproduced" data-track="{h(track)}">'
                      + "".join(map(_index_row, ranked)) + "</tbody>")  # fmt: skip
    if unranked:
        bodies.append(
            '<tbody class="group-unranked">' + "".join(map(_index_row, unranked)) + "</tbody>"
        )
    if reported:
        bodies.append(
            '<tbody class="group-reported">' + "".join(map(_paper_row, reported)) + "</tbody>"
        )
    return sortable_table("leaderboard", caption, head, bodies)


def domain_table(entries: list[Entry], domains: list[str]) -> str:
    head = (
        th("Model", "text") + th("Method", "text") + th("Track", "text")
        + th("Average", "num", "num", "descending")
        + th("RANK", "num", "num") + "".join(th(d, "num", "num", "descending") for d in domains)
        + th("Config")
    )  # fmt: skip
    bodies = []
    for track, group in _by_track(entries):
        best = {d: max((e.domains[d].mean for e in group if d in e.domains and e.domains[d].mean is not None), default=None)
                for d in domains}  # fmt: skip
        rows = []
        for e in sorted(group, key=lambda e: (not e.ranked, e.rank if e.rank is not None else 1e9)):
            cells = ""
            for d in domains:
                s = e.domains.get(d)
                if s is None or s.mean is None:
                    cells += td("—", None)
                else:
                    cls = "num best" if s.mean == best[d] and len(group) > 1 else "num"
                    cells += td(fmt_auc(s.mean, s.std), s.mean, cls=cls)
            tag = "" if e.ranked else " " + badge("unranked", f"{len(e.seeds)} seed(s)")
            rows.append(
                f"<tr><td>{h(e.model)}{tag}</td>{_method_cell(e)}{_track_cell(e)}"
                + td(fmt_auc(e.auc.mean, e.auc.std), e.auc.mean)
                + td(fmt_rank(e.rank) if e.ranked else "—", e.rank if e.ranked else None)
                + cells
                + f'<td><a href="configs/{h(e.id)}.json">config</a></td></tr>'
            )
        bodies.append(f'<tbody data-track="{h(track)}">{"".join(rows)}</tbody>')
    caption = ("Test AUC per domain (mean ± std over seeds; best per domain within a track "
               "in bold)")  # fmt: skip
    return sortable_table("per-domain", caption, head, bodies)


def tuned_section(e: Entry) -> str:
    """A tuned entry's selection: its selected values, how it was tuned (budget, search,
    seed, space and sources) and every trial with its validation AUC."""
    t = e.tuning
    keys = list(t["space"])
    head = th("Trial", "num", "num") + "".join(th(k, "text") for k in keys) + th(
        "Validation AUC", "num", "num", "descending"
    )
    rows = []
    for i, tr in enumerate(t["trials"]):
        cls = ' class="selected"' if i == t["selected"] else ""
        mark = " " + badge("reproduced", "selected") if i == t["selected"] else ""
        v = tr["val_auc"]
        rows.append(
            f"<tr{cls}>" + td(h(i), i)
            + "".join(f"<td>{h(_value(tr['config'].get(k)))}</td>" for k in keys)
            + td(("diverged" if v is None else f"{v:.4f}") + mark, v) + "</tr>"
        )  # fmt: skip
    sel = ", ".join(f"{k} = {_value(v)}" for k, v in _selected(e).items()) or "—"
    sources = "".join(f"<li>{h(x)}</li>" for x in t.get("sources", []))
    seeds = ",".join(map(str, t.get("select_seeds", [])))
    caption = (f"{h(e.model)} + {h(e.method)}: {h(len(t['trials']))} trial(s), validation "
               "AUC only (no trial was evaluated on test)")  # fmt: skip
    return (
        f'<section id="tuned-{h(e.id)}"><h3>Tuned: {h(e.model)} + {h(e.method)}</h3>'
        f'<p class="note">Selected on validation: <code>{h(sel)}</code> (trial '
        f'{h(t["selected"])}). Budget {h(t["budget"])}, {h(t["search"])} search, seed '
        f'{h(t["seed"])}, selection seed(s) {h(seeds)}; then run on seeds '
        f'{h(", ".join(map(str, e.seeds)))}.</p>'
        + (f'<ul class="note">{sources}</ul>' if sources else "")
        + sortable_table("trials", caption, head, [f"<tbody>{''.join(rows)}</tbody>"])
        + "</section>"
    )


# Five stops of the viridis colour map (perceptually uniform, colour-blind safe).
def heatmap_svg(entries: list[Entry], domains: list[str]) -> str:
    """Entries x domains, mean test AUC, as inline SVG by the one heatmap writer
    (mdrbench/heatmap.py): a sequential scale over the shown range."""
    from mdrbench.heatmap import heatmap_svg as draw
    from mdrbench.heatmap import sequential

    rows = [e for _, group in _by_track(entries) for e in
            sorted(group, key=lambda e: (not e.ranked, e.rank if e.rank is not None else 1e9))]  # fmt: skip
    labels = [f"{e.model} + {e.method} [{e.track}]" + (f" ({e.variant})" if e.variant else "")
              for e in rows]  # fmt: skip
    stats = [[e.domains.get(d) for d in domains] for e in rows]
    matrix = [[None if s is None else s.mean for s in line] for line in stats]
    vals = [v for line in matrix for v in line if v is not None]
    if not vals:
        return '<p class="empty">No per-domain AUC to draw.</p>'
    tips = [["no AUC" if s is None or s.mean is None else fmt_auc(s.mean, s.std) for s in line]
            for line in stats]  # fmt: skip
    return draw(matrix, labels, domains, lo=min(vals), hi=max(vals), colour=sequential,
                scale="range", cell=(62, 24), digits=3, tips=tips)  # fmt: skip


def matrix_table(cells: dict[tuple[str, str], tuple[str, float | None]], caption: str,
                 note_cells: set[tuple[str, str]] = frozenset()) -> str:  # fmt: skip
    """Method x model (Table X style): rows models, columns methods; best per row in bold."""
    models = _order({m for m, _ in cells}, MODEL_ORDER)
    methods = _order({f for _, f in cells}, METHOD_ORDER)
    head = th("Model", "text") + "".join(th(f, "num", "num", "descending") for f in methods)
    rows = []
    for m in models:
        vals = [
            cells[(m, f)][1] for f in methods if (m, f) in cells and cells[(m, f)][1] is not None
        ]
        best = max(vals) if vals else None
        tds = ""
        for f in methods:
            if (m, f) not in cells:
                tds += td("", None)
                continue
            text, v = cells[(m, f)]
            mark = " †" if (m, f) in note_cells else ""
            cls = "num best" if v is not None and v == best else "num"
            tds += td(text + mark, v, cls=cls)
        rows.append(f"<tr><td>{h(m)}</td>{tds}</tr>")
    return sortable_table("matrix", caption, head, [f"<tbody>{''.join(rows)}</tbody>"])


def reproduced_matrix(entries: list[Entry], track: str) -> str:
    cells: dict[tuple[str, str], tuple[str, float | None]] = {}
    unranked = set()
    # Several variants of one model + method: the best one's mean, marked.
    for e in sorted(entries, key=lambda e: e.auc.mean if e.auc.mean is not None else -1):
        cells[(e.model, e.method)] = (fmt_auc(e.auc.mean, e.auc.std), e.auc.mean)
        if not e.ranked:
            unranked.add((e.model, e.method))
        else:
            unranked.discard((e.model, e.method))
    note = " († fewer seeds than a ranked entry needs)" if unranked else ""
    return matrix_table(
        cells,
        f"Reproduced, {h(track)} track: average test AUC, method × model (mean ± std over "
        "seeds)" + note,
        unranked,
    )


# ---------------------------------------------------------------- pages


def index_page(by_name: dict[str, dict[str, list[Entry]]], include_paper: bool,
               n_files: int, n_pred: int, show_unranked: bool) -> str:  # fmt: skip
    n_entries = sum(len(v) for b in by_name.values() for v in b.values())
    parts = [
        '<p class="note">Multi-domain recommendation benchmarks of MAMDR (ICDE 2023), rebuilt '
        "by mdrbench. Each table holds the entries of one dataset build (named by the sha256 "
        "of its <code>manifest.json</code>); an entry is one model + method (+ config) over "
        f"its seeds, ranked only with at least {MIN_SEEDS} seeds, and only among the entries "
        "of its track (last column): <em>paper</em>, the authors' published configuration; "
        "<em>tuned</em>, selected on validation AUC within a declared search space and the "
        "same budget for every method (<code>mdrbench tune</code>); <em>custom</em>, anything "
        "else. RANK: on each domain rank the entries by mean test AUC (1 = best), then average "
        "over domains. Click a column header to sort; each track's rows and the reported rows "
        "sort separately.</p>",
        f'<p class="note">{h(n_files)} result file(s), {h(n_entries)} entr{"y" if n_entries == 1 else "ies"}, '
        f"{h(n_pred)} predictions file(s) recomputed with the one evaluator. As data: "
        '<a href="leaderboard.csv">leaderboard.csv</a>, '
        '<a href="leaderboard.json">leaderboard.json</a> (reproduced entries).</p>',
    ]
    if include_paper:
        parts.append(
            f'<p class="note">{badge("reported", paper.LABEL)} rows: {h(paper.load()["source"])}, '
            "Tables V and VI. One number per cell, no seeds or std; the RANK shown is the "
            "paper's own among its methods, not comparable with reproduced RANK.</p>"
        )
    for name in _dataset_order(by_name):
        builds = by_name[name]
        reported = paper.leaderboard_entries(name) if include_paper else []
        parts.append(
            f'<section id="{h(name)}"><h2><a href="{h(page_file(name))}">{h(name)}</a></h2>'
        )
        if not builds:
            parts.append('<p class="empty">No reproduced results yet.</p>')
            parts.append(index_table([], reported, f"{h(name)}: reported in the paper only"))
        for sha, entries in sorted(builds.items()):
            shown = [e for e in entries if e.ranked or show_unranked]
            cap = f'{h(name)}, build <span class="mono" title="{h(sha)}">{h(sha[:12])}</span>'
            parts.append(index_table(shown, reported, cap))
        parts.append("</section>")
    return page("mdrbench leaderboard", "\n".join(parts))


def dataset_page(name: str, builds: dict[str, list[Entry]], domains_of: dict[str, list[str]],
                 include_paper: bool, show_unranked: bool) -> str:  # fmt: skip
    from mdrbench.builders.specs import DATASETS

    parts = []
    if name in DATASETS:
        parts.append(f"<p>{h(DATASETS.get(name).description)}</p>")
    if not builds:
        parts.append('<p class="empty">No reproduced results for this dataset yet.</p>')
    for sha, entries in sorted(builds.items()):
        shown = [e for e in entries if e.ranked or show_unranked]
        domains = domains_of[sha]
        parts.append(
            f'<section><h2>Build <span class="mono" title="{h(sha)}">{h(sha[:12])}</span></h2>'
            f'<p class="note">manifest sha256 <code>{h(sha)}</code>; {h(len(domains))} domains.</p>'
        )
        if not shown:
            parts.append('<p class="empty">No ranked entries.</p></section>')
            continue
        parts.append(domain_table(shown, domains))
        parts.append("<h3>Heatmap</h3>" + heatmap_svg(shown, domains))
        for track, group in _by_track(shown):
            parts.append(f"<h3>Method × model ({h(track)})</h3>" + reproduced_matrix(group, track))
        parts += [tuned_section(e) for e in shown if e.tuning]
        parts.append("</section>")
    if include_paper:
        rows = paper.leaderboard_entries(name)
        if rows:
            parts.append(f"<section><h2>{badge('reported', paper.LABEL)} Tables V and VI</h2>")
            parts.append(
                paper_table(rows, f"{h(name)}: average test AUC and RANK as printed in the paper")
            )
            parts.append("</section>")
        x = paper.method_model_matrix(name)
        if x:
            cells = {k: (f"{v:.4f}", v) for k, v in x.items()}
            parts.append(f"<section><h2>{badge('reported', paper.LABEL)} Table X</h2>")
            parts.append(matrix_table(cells, h(paper.load()["tables"]["X"]["caption"])))
            parts.append(
                '<p class="note">'
                + "<br>".join(h(n) for n in paper.load()["notes"])
                + "</p></section>"
            )
    return page(name, "\n".join(parts))


def _config_doc(e: Entry) -> dict:
    return {
        "dataset": {"name": e.dataset, "manifest_sha256": e.manifest_sha256},
        "model": e.model,
        "method": e.method,
        "track": e.track,
        "seeds": e.seeds,
        "config": e.config,
        **({"tuning": e.tuning} if e.tuning else {}),
        "runs": [
            {
                "seed": r.data["seed"],
                "file": r.path.name,
                "mdrbench_version": r.data["mdrbench_version"],
                "best_epoch": r.data["best_epoch"],
                "config": r.data["config"],
            }
            for r in sorted(e.runs, key=lambda r: r.data["seed"])
        ],  # fmt: skip
    }


LEADERBOARD_COLUMNS = (
    "dataset", "manifest_sha256", "model", "method", "track", "variant", "ranked", "rank",
    "auc_mean", "auc_std", "val_auc_mean", "n_seeds", "seeds", "n_parameters",
    "train_seconds", "tuned_values", "config", "id",
)  # fmt: skip


def _entry_row(e: Entry) -> dict:
    return {
        "dataset": e.dataset, "manifest_sha256": e.manifest_sha256, "model": e.model,
        "method": e.method, "track": e.track, "variant": e.variant, "ranked": e.ranked,
        "rank": e.rank, "auc_mean": e.auc.mean, "auc_std": e.auc.std,
        "val_auc_mean": e.val_auc.mean, "n_seeds": len(e.seeds), "seeds": e.seeds,
        "n_parameters": e.n_parameters, "train_seconds": e.train_seconds.mean,
        "tuned_values": _selected(e) or None, "config": f"configs/{e.id}.json", "id": e.id,
    }  # fmt: skip


def leaderboard_data(entries: list[Entry]) -> tuple[str, str]:
    """leaderboard.csv (one row per entry; seeds joined by spaces) and leaderboard.json
    (the rows, each with "domains": {name: {"mean", "std", "n"}} and, for a tuned entry,
    its "tuning" record), in the index's order: by dataset, build, track, rank. A tuned
    entry's `tuned_values` are its selected values (JSON in the CSV)."""
    import csv
    import io

    order = {t: i for i, t in enumerate(TRACKS)}
    rows = sorted(entries, key=lambda e: (e.dataset, e.manifest_sha256, not e.ranked,
                                          order.get(e.track, len(order)), e.track,
                                          e.rank if e.rank is not None else math.inf,
                                          e.model, e.method, e.variant))  # fmt: skip
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LEADERBOARD_COLUMNS)
    docs = []
    for e in rows:
        row = _entry_row(e)
        w.writerow(
            [csv_cell(" ".join(map(str, v)) if k == "seeds" else "" if v is None
                      else json.dumps(v) if k == "tuned_values" else v)
             for k, v in row.items()]
        )  # fmt: skip
        row["domains"] = {
            d: {"mean": s.mean, "std": s.std, "n": s.n} for d, s in e.domains.items()
        }
        if e.tuning:
            row["tuning"] = e.tuning
        docs.append(row)
    doc = {"mdrbench_version": __version__, "entries": docs}
    return buf.getvalue(), json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def build_site(
    results: list[LoadedResult],
    out: os.PathLike | str,
    *,
    include_paper: bool = True,
    show_unranked: bool = False,
    min_seeds: int = MIN_SEEDS,
    n_files: int | None = None,
    n_predictions_checked: int = 0,
) -> list[Path]:
    """Write the site for already-validated `results` into `out` (replaced atomically).
    Returns the written files, relative to `out`."""
    from mdrbench.builders.specs import DATASETS

    entries = aggregate(results, min_seeds=min_seeds)
    by_name: dict[str, dict[str, list[Entry]]] = defaultdict(lambda: defaultdict(list))
    domains_of: dict[str, list[str]] = {}
    for e in entries:
        by_name[e.dataset][e.manifest_sha256].append(e)
    for r in results:
        sha = r.data["dataset"]["manifest_sha256"]
        if r.build is not None:
            domains_of[sha] = list(r.build.domains)
        else:
            domains_of.setdefault(sha, list(r.data["metrics"]["test"]["domains"]))
    if include_paper:
        for name in DATASETS.names():
            by_name.setdefault(name, defaultdict(list))

    out = Path(out)
    check_site_folder(out, [r.path for r in results])
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged(out) as tmp:
        files: dict[str, str] = {
            "index.html": index_page(
                by_name,
                include_paper,
                len(results) if n_files is None else n_files,
                n_predictions_checked,
                show_unranked,
            ),  # fmt: skip
        }
        for name, builds in by_name.items():
            files[page_file(name)] = dataset_page(
                name, builds, domains_of, include_paper, show_unranked
            )
        files["leaderboard.csv"], files["leaderboard.json"] = leaderboard_data(entries)
        for e in entries:
            files[f"configs/{e.id}.json"] = (
                json.dumps(_config_doc(e), indent=2, ensure_ascii=False) + "\n"
            )
        assets = resources.files("mdrbench.leaderboard").joinpath("assets")
        for a in ASSETS:
            files[f"assets/{a}"] = assets.joinpath(a).read_text("utf-8")
        files[SITE_MARKER] = (
            json.dumps({"mdrbench_site": __version__, "files": sorted(files)}, indent=2) + "\n"
        )
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
    return sorted(Path(f) for f in files if f != SITE_MARKER)


def check_site_folder(out: Path, inputs: list[Path] = ()) -> None:
    """Refuse an --out the site would replace unless it is empty or a site this command
    wrote (its marker lists every file in it), and never one holding the results."""
    out = Path(out)
    fix = "pass a new or empty folder (or the folder of an earlier site) as --out"
    real = out.resolve()
    for p in inputs:
        if Path(p).resolve().is_relative_to(real):
            raise UserError(f"--out {out} holds the results being published ({p}): {fix}.")
        if Path(p).is_dir() and real.is_relative_to(Path(p).resolve()):
            raise UserError(
                f"--out {out} is inside the results folder {p} (its JSON files would be read "
                f"as results): {fix} outside it."
            )
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder: {fix}.")
    present = {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()}
    if not present and not any(out.iterdir()):
        return
    try:
        listed = set(json.loads((out / SITE_MARKER).read_text("utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"--out {out} is not empty and is not a site written by mdrbench (no "
            f"{SITE_MARKER}); its files would be replaced: {fix}."
        ) from None
    extra = sorted(present - listed - {SITE_MARKER})
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise UserError(
            f"--out {out} is an earlier site but also holds files it did not write "
            f"({shown}); they would be deleted: move them out, or {fix}."
        )
