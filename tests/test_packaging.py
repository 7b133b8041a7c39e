"""Packaging: every third-party module the installed package imports is declared in
pyproject.toml; LICENSE, py.typed, `python -m mdrbench`; `mdrbench models` / `methods`."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from click.testing import CliRunner

from mdrbench.cli import cli

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ["mdrbench", "builders", "baselines", "leaderboard"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_top_level() -> dict[str, str]:
    """Top-level module -> first file importing it, over the installed package's sources."""
    out: dict[str, str] = {}
    for d in PACKAGE_DIRS:
        for f in sorted((ROOT / d).rglob("*.py")):
            tree = ast.parse(f.read_text("utf-8"))
            optional = {  # `try: import x / except ImportError:`: an optional dependency
                id(n)
                for t in ast.walk(tree)
                if isinstance(t, ast.Try)
                and any("ImportError" in ast.unparse(h.type or ast.Name("")) for h in t.handlers)
                for stmt in t.body
                for n in ast.walk(stmt)
            }
            for node in ast.walk(tree):
                if id(node) in optional:
                    continue
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for n in names:
                    out.setdefault(n.split(".")[0], str(f.relative_to(ROOT)))
    return out


def test_every_third_party_import_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # A feature's optional extra (mdrbench[ray]) declares what only that feature imports.
    extras = meta["optional-dependencies"]
    features = [d for k, v in extras.items() if k not in ("test", "bench") for d in v]
    declared = {_norm(re.split(r"[<>=!~;\[ ]", d)[0]) for d in [*meta["dependencies"], *features]}
    dists = packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    missing = []
    for mod, where in _imported_top_level().items():
        if mod in stdlib or mod == "mdrbench" or mod not in dists:
            continue
        names = {_norm(x) for x in dists[mod]}
        if not names & declared:
            missing.append(f"{mod} ({'/'.join(sorted(names))}, imported in {where})")
    assert not missing, f"imported but not in [project].dependencies: {missing}"


def test_scikit_learn_is_not_a_runtime_dependency():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(_norm(d).startswith("scikit-learn") for d in meta["dependencies"])
    assert "sklearn" not in _imported_top_level()


def test_license_and_py_typed():
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert "Version 2.0" in (ROOT / "LICENSE").read_text()[:200]
    assert (ROOT / "mdrbench" / "py.typed").is_file()
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in cfg["tool"]["setuptools"]["package-data"]["mdrbench"]


def test_python_dash_m_runs_the_cli():
    r = subprocess.run(
        [sys.executable, "-m", "mdrbench", "--version"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "0." in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "mdrbench", "stats", "/nonexistent/x"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.startswith("Error: ") and "Traceback" not in r.stderr


def test_models_and_methods_list_the_registries():
    from mdrbench.frameworks import FRAMEWORKS, best_framework
    from mdrbench.models import MODELS

    out = CliRunner().invoke(cli, ["models"]).output
    for name in MODELS:
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name
    assert "emb_dim=128" in out and "hidden=[256, 128, 64]" in out
    out = CliRunner().invoke(cli, ["methods"]).output
    for name in FRAMEWORKS:
        assert re.search(rf"^[ *]{re.escape(name)}\s", out, re.M), name
    assert f"*{best_framework()} " in out
    assert "beta=" in out
