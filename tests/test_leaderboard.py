"""The leaderboard: aggregation and RANK, the paper's reference entry, the static site, and
the site in headless Chromium (skipped when /usr/bin/chromium is absent)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from publish_fixtures import CHROMIUM, Chromium, make_dataset, make_results_dir, run_cli

import mdrbench.validate as V
from mdrbench.baselines import paper
from mdrbench.leaderboard.aggregate import Stat, aggregate
from mdrbench.leaderboard.site import build_site

XSS = "<script>alert(1)</script>"
PAPER_MD = Path(__file__).resolve().parents[2] / "shared" / "paper" / "mamdr-paper.md"
ENTRIES = [
    ("mlp", "alternate", 0.8),
    ("mmoe", "alternate", 1.4),
    ("mlp", "mamdr", 2.0),
    ("star", XSS, 0.3),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), "amazon-6")


@pytest.fixture(scope="module")
def results(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("results")
    make_results_dir(root, data, ENTRIES)
    make_results_dir(root, data, [("wdl", "dn", 1.0)], seeds=(0,))  # too few seeds
    return root


@pytest.fixture(scope="module")
def report(results, data):
    return V.validate([results], V.KnownBuilds.discover([data], use_default_data_dir=False))


@pytest.fixture(scope="module")
def site(tmp_path_factory, report):
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(report.results, out, show_unranked=True, n_files=report.n_files,
               n_predictions_checked=report.n_predictions_checked)  # fmt: skip
    return out


# ---------------------------------------------------------------- aggregation and RANK


def test_stat_is_mean_and_sample_std_over_seeds():
    s = Stat.of([0.70, 0.72, None, 0.74])
    assert s.n == 3 and s.mean == pytest.approx(0.72) and s.std == pytest.approx(0.02)
    assert Stat.of([0.7]).std is None and Stat.of([None]).mean is None


def test_rank_is_the_mean_of_per_domain_ranks_among_ranked_entries(report):
    entries = aggregate(report.results)
    ranked = [e for e in entries if e.ranked]
    assert len(ranked) == 4 and [e.model for e in entries if not e.ranked] == ["wdl"]
    domains = list(ranked[0].domains)
    for e in ranked:
        per_domain = []
        for d in domains:
            others = [o.domains[d].mean for o in ranked]
            mine = e.domains[d].mean
            per_domain.append(
                1 + sum(o > mine for o in others) + (sum(o == mine for o in others) - 1) / 2
            )
        assert e.rank == pytest.approx(sum(per_domain) / len(per_domain))
        assert e.auc.n == 3 and e.auc.std is not None
    # The unranked entry and the paper's numbers take no part in the ranking.
    assert next(e for e in entries if not e.ranked).rank is None


# ---------------------------------------------------------------- the paper's numbers


def test_paper_reference_entry_is_labelled_and_complete():
    assert paper.LABEL == "reported in the paper" == paper.load()["label"]
    assert len(paper.entries(tables=("V",))) == 10 * 5
    assert len(paper.entries(tables=("VI",))) == 4 * 5
    assert len(paper.entries(tables=("X",))) == 6 * 10
    mamdr = {
        (e.dataset, e.auc, e.rank)
        for e in paper.entries()
        if e.method == "mamdr" and e.table == "V"
    }
    assert ("amazon-6", 0.7957, 2.5) in mamdr and ("taobao-30", 0.7750, 3.1) in mamdr
    assert paper.method_model_matrix("taobao-10")[("star", "mamdr")] == 0.7520
    assert paper.method_model_matrix("amazon-6") == {}
    # Table VI repeats Table V's rows: one reference row per (model, method) per dataset.
    rows = paper.leaderboard_entries("amazon-13")
    assert len(rows) == 12 and len({(r.model, r.method) for r in rows}) == 12


@pytest.mark.skipif(not PAPER_MD.is_file(), reason=f"paper text not at {PAPER_MD}")
def test_paper_numbers_are_transcribed_exactly():
    text = PAPER_MD.read_text("utf-8")

    def table_rows(start: str, end: str) -> dict[str, list[float]]:
        body = text[text.index(start) : text.index(end, text.index(start))]
        out = {}
        for line in body.splitlines():
            cells = line.split("\t")
            if len(cells) > 2 and re.fullmatch(r"0\.\d{4}", cells[1]):
                out[cells[0]] = [float(c) for c in cells[1:]]
        return out

    def flat(row):
        return [v for d in ("amazon-6", "amazon-13", "taobao-10", "taobao-20", "taobao-30")
                for v in (row["results"][d]["auc"], row["results"][d]["rank"])]  # fmt: skip

    t = paper.load()["tables"]
    assert {r["label"]: flat(r) for r in t["V"]["rows"]} == table_rows("TABLE V ", "#### C.")
    assert {r["label"]: flat(r) for r in t["VI"]["rows"]} == table_rows("TABLE VI ", "TABLE VII")
    x = table_rows("TABLE X ", "the training sets")
    got: dict[str, list[float]] = {}
    for r in t["X"]["rows"]:
        got.setdefault(r["label"].split(" + ")[0], []).append(r["auc"])
    assert got == x


# ---------------------------------------------------------------- the site's files


def test_site_layout_and_config_links(site, report):
    assert (site / "index.html").is_file() and (site / "amazon-6.html").is_file()
    assert {p.name for p in (site / "assets").iterdir()} == {"style.css", "sort.js"}
    entries = aggregate(report.results)
    for page in site.glob("*.html"):
        for href in re.findall(r'href="([^"#]+)"', page.read_text()):
            if not href.startswith("data:"):
                assert (site / href).is_file(), f"{page.name} links to missing {href}"
    cfg = json.loads((site / "configs" / f"{entries[0].id}.json").read_text())
    assert cfg["seeds"] == [0, 1, 2] and "seed" not in cfg["config"]["train"]
    assert [r["config"]["train"]["seed"] for r in cfg["runs"]] == [0, 1, 2]


def test_site_offers_its_tables_as_csv_and_json(site, report):
    import polars as pl

    from mdrbench.leaderboard.site import LEADERBOARD_COLUMNS

    entries = aggregate(report.results)
    csv = pl.read_csv(site / "leaderboard.csv")
    assert csv.columns == list(LEADERBOARD_COLUMNS) and csv.height == len(entries) == 5
    doc = json.loads((site / "leaderboard.json").read_text())
    assert [e["id"] for e in doc["entries"]] == csv["id"].to_list()
    # Ranked entries first, best rank first; the one-seed entry is unranked.
    ranked = csv.filter(pl.col("ranked"))
    assert ranked["rank"].to_list() == sorted(ranked["rank"].to_list())
    assert csv.filter(~pl.col("ranked"))["seeds"].to_list() == ["0"]
    for e in entries:
        row = next(d for d in doc["entries"] if d["id"] == e.id)
        assert row["auc_mean"] == e.auc.mean and row["seeds"] == e.seeds
        assert {k: v["mean"] for k, v in row["domains"].items()} == {
            k: s.mean for k, s in e.domains.items()
        }
        assert (site / row["config"]).is_file()
    assert "&lt;script&gt;" not in (site / "leaderboard.csv").read_text()  # data, not HTML
    assert XSS in set(csv["method"])


def test_site_needs_no_network(site):
    for f in site.rglob("*"):
        if f.suffix in (".html", ".css", ".js"):
            text = f.read_text()
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), f
            assert "@import" not in text and "url(http" not in text


def test_every_results_string_is_escaped(site):
    for page in site.glob("*.html"):
        text = page.read_text()
        assert XSS not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (site / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (site / "amazon-6.html").read_text()


def test_reported_rows_never_mix_with_reproduced_ones(site):
    html = (site / "index.html").read_text()
    section = html[html.index('<section id="amazon-6">') : html.index('<section id="amazon-13">')]
    bodies = re.findall(r'<tbody class="group-(\w+)"[^>]*>(.*?)</tbody>', section, re.S)
    kinds = [k for k, _ in bodies]
    assert kinds == ["reproduced", "unranked", "reported"]
    body = dict(bodies)
    assert (
        body["reproduced"].count("<tr>") == 4 and "reported in the paper" not in body["reproduced"]
    )
    assert (
        body["reported"].count("<tr>") == 12
        and body["reported"].count("reported in the paper") == 12
    )
    assert "(paper)" in body["reported"] and "(paper)" not in body["reproduced"]


def test_dataset_page_has_domains_heatmap_and_matrix(site):
    html = (site / "amazon-6.html").read_text()
    assert html.count("<svg") == 1 and html.count("<rect") >= 5 * 6
    for d in ("Musical Instruments", "Prime Pantry", "Video Games"):
        assert f">{d}<" in html
    assert "Method × model" in html and "Tables V and VI" in html
    taobao = (site / "taobao-10.html").read_text()
    assert "Table X" in taobao and "0.7520" in taobao  # Star + MAMDR as reported


def test_cli_build_refuses_invalid_results_and_writes_nothing(capsys, tmp_path, results, data):
    out = tmp_path / "site"
    code, _, err = run_cli(capsys, "leaderboard", "build", results, "--out", out, "--dataset", data)
    assert code == 2 and "wdl + dn: has 1 seed(s)" in err and "--allow-few-seeds" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    code, out_text, _ = run_cli(capsys, "leaderboard", "build", results, "--out", out, "--dataset", data,
                                "--allow-few-seeds")  # fmt: skip
    assert (
        code == 0
        and (out / "index.html").is_file()
        and "unranked: 1 seed(s)" in (out / "index.html").read_text()
    )
    # Rebuilding replaces the site in place and leaves no temporary folder behind.
    code, _, _ = run_cli(capsys, "leaderboard", "build", results, "--out", out, "--dataset", data,
                         "--allow-few-seeds", "--no-paper")  # fmt: skip
    assert code == 0 and "reported in the paper</span>" not in (out / "index.html").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["site"]


def test_cli_leaderboard_help_has_examples(capsys):
    for args in (
        ["leaderboard", "build", "--help"],
        ["leaderboard", "serve", "--help"],
        ["validate", "--help"],
    ):
        code, out, _ = run_cli(capsys, *args)
        assert code == 0 and "Example: mdrbench" in out


# ---------------------------------------------------------------- serve + headless Chromium


@pytest.fixture(scope="module")
def served(site):
    """`mdrbench leaderboard serve SITE --port 0` in a subprocess; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mdrbench.cli import main; main()", "leaderboard", "serve", str(site), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert m, line
        yield m[1]
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_serves_the_site_on_localhost(served, site):
    with urllib.request.urlopen(served + "index.html", timeout=10) as r:
        assert r.status == 200 and r.read() == (site / "index.html").read_bytes()


needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} not installed (Debian: apt-get install -y chromium)",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Chromium(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()


def rows(browser, section: str, group: str) -> list[list[str]]:
    return browser.js(
        f"""Array.from(document.querySelectorAll('#{section} tbody.group-{group} tr'))
             .map(r => Array.from(r.cells).map(c => c.textContent.trim()))"""
    )


def aucs(browser, group="reproduced") -> list[float]:
    return browser.js(
        f"""Array.from(document.querySelectorAll('#amazon-6 tbody.group-{group} tr'))
             .map(r => parseFloat(r.cells[2].getAttribute('data-value')))"""
    )


@needs_chromium
@pytest.mark.parametrize("how", ["file", "http"])
def test_pages_load_without_console_errors(browser, site, served, how):
    base = site.as_uri() + "/" if how == "file" else served
    for page in [
        "index.html",
        *sorted(p.name for p in site.glob("*.html") if p.name != "index.html"),
    ]:
        browser.goto(base + page)
        assert browser.js("document.readyState") == "complete"
        assert browser.problems() == [], f"{how} {page}"
        assert browser.js("document.querySelectorAll('table').length") >= 1


@needs_chromium
def test_tables_hold_the_entries(browser, site, report):
    browser.goto(site.as_uri() + "/index.html")
    repro = rows(browser, "amazon-6", "reproduced")
    assert sorted((r[0], r[1]) for r in repro) == sorted((m, f) for m, f, _ in ENTRIES)
    assert all(r[4] == "3" and "reproduced" in r[7] for r in repro)
    assert [r[0] for r in rows(browser, "amazon-6", "unranked")] == ["wdl"]
    reported = rows(browser, "amazon-6", "reported")
    assert len(reported) == 12 and all("reported in the paper" in r[7] for r in reported)
    # Datasets without reproduced results still show the paper's numbers.
    assert len(rows(browser, "taobao-30", "reported")) == 12


@needs_chromium
def test_clicking_a_header_sorts_each_group(browser, site):
    browser.goto(site.as_uri() + "/index.html")
    before = aucs(browser)
    paper_before = aucs(browser, "reported")
    browser.click("#amazon-6 th:nth-child(3) button")  # Average AUC: first click sorts descending
    assert (
        browser.js("document.querySelector('#amazon-6 th:nth-child(3)').getAttribute('aria-sort')")
        == "descending"
    )
    after = aucs(browser)
    assert after == sorted(before, reverse=True) and after != before
    assert aucs(browser, "reported") == sorted(paper_before, reverse=True)
    browser.click("#amazon-6 th:nth-child(3) button")
    assert aucs(browser) == sorted(before)
    browser.click("#amazon-6 th:nth-child(1) button")  # Model, text
    models = [r[0] for r in rows(browser, "amazon-6", "reproduced")]
    assert models == sorted(models)
    # The groups stay apart: no reported row moved into the reproduced body.
    assert len(rows(browser, "amazon-6", "reproduced")) == 4
    assert browser.problems() == []


@needs_chromium
def test_a_script_in_a_method_name_shows_as_text(browser, site):
    for page in ("index.html", "amazon-6.html"):
        browser.goto(site.as_uri() + "/" + page)
        cells = browser.js(
            f"Array.from(document.querySelectorAll('td')).filter(c => c.textContent.includes({json.dumps(XSS)})).length"
        )
        assert cells >= 1
        assert browser.js("document.querySelectorAll('script').length") == 1  # only assets/sort.js
        assert browser.problems() == []  # an alert() would show up as a dialog here


@needs_chromium
def test_the_browser_harness_reports_errors_and_dialogs(browser, tmp_path):
    """Negative control: the checks above would see a console error, an exception, a failed
    load and an alert()."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><link rel="stylesheet" href="missing.css">'
        '<script>console.error("boom"); alert("xss"); undefinedFn();</script>'
    )
    browser.goto(page.as_uri())
    problems = "\n".join(browser.problems())
    for expected in ("console.error: ['boom']", "dialog: xss", "undefinedFn", "missing.css"):
        assert expected in problems
