"""Learning frameworks: `FRAMEWORKS` maps a name to a `Framework` subclass. Every module of
this package is imported here, so a framework registers itself by living in a file of this
folder with `@FRAMEWORKS("name")` (issue 4's frameworks need no other change)."""

from __future__ import annotations

import importlib
import pkgutil

from mdrbench.frameworks.base import (
    FRAMEWORKS,
    Context,
    EpochStats,
    Framework,
    LossMeter,
    Optimizer,
    Stage,
    clone_params,
    embedding_param_names,
    set_sparse_embeddings,
    sparse_param_names,
    specific_param_names,
)

# The frameworks' modules in the registry's order (`mdrbench methods` lists them so), then
# any other module of the folder (a new framework's, the finetune stage's, the tools').
_ORDER = ["basic", "mamdr", "reptile", "maml", "mldg", "weighted_loss", "pcgrad"]
for _name in _ORDER + sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_name}")


def best_framework() -> str:
    """The registered framework with the highest `priority` (first registered on ties)."""
    names = FRAMEWORKS.names()
    return max(names, key=lambda n: (FRAMEWORKS.get(n).priority, -names.index(n)))


__all__ = [
    "FRAMEWORKS",
    "Context",
    "EpochStats",
    "Framework",
    "LossMeter",
    "Optimizer",
    "Stage",
    "best_framework",
    "clone_params",
    "embedding_param_names",
    "set_sparse_embeddings",
    "sparse_param_names",
    "specific_param_names",
]
