"""One table renderer (mdrbench.results.render) and one heatmap writer (mdrbench.heatmap)
serve every table and heatmap: results, dataset statistics, conflict and leaderboard."""

from __future__ import annotations

import csv
import io

from publish_fixtures import make_dataset

from mdrbench.builders.manifest import load_manifest, stats_tables
from mdrbench.heatmap import diverging, heatmap_svg, sequential


def test_stats_tables_in_md_csv_and_latex(tmp_path):
    m = load_manifest(make_dataset(tmp_path, "amazon-6"))
    md = stats_tables(m, "md")
    assert "**Overall statistics (paper Table I)**" in md
    assert "|---:|" in md  # numbers right-aligned (the id column)
    assert "| Musical Instruments" in md
    rows = list(csv.reader(io.StringIO(stats_tables(m, "csv").split("\n\n")[1])))
    assert rows[0][:3] == ["id", "Domain", "#Samples"] and len(rows) == 1 + 6
    assert rows[1][1] == "Musical Instruments" and rows[1][2] == "40"  # raw numbers
    tex = stats_tables(m, "latex")
    assert tex.count("\\begin{tabular}") == 2 and "\\#Train" in tex


def test_thousands_separators_in_md_raw_in_csv():
    from mdrbench.results import Table, render

    t = Table("t", ["a", "n", "x"], [["d", 1234567, 0.12345]], digits={2: 3})
    assert "1,234,567" in render(t, "md") and "0.123" in render(t, "md")
    assert "d,1234567,0.12345" in render(t, "csv")


def test_heatmap_scales_and_escaping():
    assert diverging(1.0) == (178, 24, 43) and diverging(-1.0) == (33, 102, 172)
    assert sequential(0.0) == (0x44, 0x01, 0x54) and sequential(1.0) == (0xFD, 0xE7, 0x25)
    svg = heatmap_svg([[0.7, None]], ["m <x>"], ["D1", "D&2"], lo=0.6, hi=0.8,
                      colour=sequential, scale="range", cell=(62, 24), digits=3,
                      tips=[["0.7000 ± 0.0100", "no AUC"]])  # fmt: skip
    assert "m &lt;x&gt; / D&amp;2: no AUC" in svg and "0.7000 ± 0.0100" in svg
    assert ">0.700<" in svg and svg.count("<title>") == 2
    # 0.7 is mid-range: the sequential scale's middle colour.
    assert 'fill="#21918c"' in svg


def test_site_and_conflict_draw_with_the_one_writer():
    import mdrbench.conflict as conflict
    import mdrbench.leaderboard.site as site

    assert conflict.color is diverging
    assert not hasattr(site, "_colour") and not hasattr(site, "_STOPS")
