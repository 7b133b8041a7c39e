"""Every registered model and framework has a test: a name registered without being listed
in a test module's hand-written MODELS_TESTED / FRAMEWORKS_TESTED fails here.

Any tests/test_*.py may define those tuples (tests/test_models.py: the seventeen models x
the basic frameworks; tests/test_models_swr.py: issue 20's eight models' own tests;
tests/test_frameworks.py: issue 4's frameworks); they are united here.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from mdrbench.frameworks import FRAMEWORKS
from mdrbench.models import MODELS


def _tested(name: str) -> set[str]:
    out: set[str] = set()
    for f in sorted(Path(__file__).parent.glob("test_*.py")):
        if f"{name} = " in f.read_text():
            out |= set(getattr(importlib.import_module(f.stem), name, ()))
    return out


MODELS_TESTED = _tested("MODELS_TESTED")
FRAMEWORKS_TESTED = _tested("FRAMEWORKS_TESTED")


def test_every_registered_model_is_tested():
    missing = [m for m in MODELS if m not in MODELS_TESTED]
    assert not missing, (
        f"registered model(s) {missing} have no test: add them to MODELS_TESTED in "
        "tests/test_models.py (and tiny sizes for new hyperparameters to TINY in "
        "tests/train_fixtures.py)"
    )
    assert not set(MODELS_TESTED) - set(MODELS), "MODELS_TESTED names an unregistered model"


def test_every_registered_framework_is_tested():
    missing = [f for f in FRAMEWORKS if f not in FRAMEWORKS_TESTED]
    assert not missing, (
        f"registered framework(s) {missing} have no test: list them in a FRAMEWORKS_TESTED "
        "tuple of a test module that trains every model with them (tests/test_models.py "
        "does so for the basic frameworks)"
    )
    assert not set(FRAMEWORKS_TESTED) - set(FRAMEWORKS), "FRAMEWORKS_TESTED names an unknown one"


def test_registered_models_have_paper_defaults():
    """Defaults = the paper's hyperparameters (benchmark-spec.md, Training protocol); issue
    20's models: Scenario-Wise Rec's (baselines/swr_profile.json), with mdrbench's common
    emb_dim and dropout."""
    from mdrbench.baselines import swr

    cfg = {name: MODELS.get(name).Config() for name in MODELS}
    assert set(swr.models()) <= set(cfg)
    for name in swr.models():
        assert {k: getattr(cfg[name], k) for k in swr.defaults(name)} == swr.defaults(name)
    assert all(c.emb_dim == 128 for c in cfg.values())
    # dropout 0.5, except STAR: the authors' STAR configs have none (config/*/star*.json)
    assert all(c.dropout == (0.0 if n == "star" else 0.5) for n, c in cfg.items())
    for name in ("mlp", "wdl", "nfm", "autoint", "deepfm"):
        assert cfg[name].hidden == [256, 128, 64]
    assert cfg["autoint"].heads == 4
    assert (cfg["shared_bottom"].shared_hidden, cfg["shared_bottom"].tower_hidden) == (
        [512, 256, 128],
        [64],
    )
    m = cfg["mmoe"]
    assert (m.expert_hidden, m.tower_hidden, m.gate_hidden, m.n_experts) == (
        [512, 256, 128],
        [64],
        [64],
        2,
    )
    p = cfg["ple"]
    assert (p.expert_hidden, p.tower_hidden, p.gate_hidden) == ([64], [256], [64])
    assert (p.n_shared_experts, p.n_specific_experts) == (2, 10)
    assert cfg["star"].hidden == [256, 128, 64]
