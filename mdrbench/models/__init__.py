"""Models: `MODELS` maps a name to a model class (an `nn.Module` with `forward(batch)` ->
logits). Every module of this package is imported here, so a model registers itself by
living in a file of this folder with `@MODELS("name")`."""

from __future__ import annotations

import importlib
import pkgutil

from mdrbench.models.base import MODELS, Inputs, MDRModel, build_model, route

# The paper's order (Table V) first: single-domain models, then multi-domain ones; then any
# other module dropped into this folder.
for _name in ["single", "multi"] + sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["MODELS", "MDRModel", "Inputs", "build_model", "route"]
