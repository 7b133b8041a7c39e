"""mdrbench: the open benchmark for multi-domain recommendation.

The Python API (docs/api.md): `load_dataset`, `Dataset`, `train`, `evaluate` (the one
evaluator), `Evaluator` (OGB-style, for predictions made elsewhere) and `load_results`
(a long polars DataFrame). Importing the package loads neither torch nor polars: those load
when a function needs them (`mdrbench build` never imports torch)."""

__version__ = "0.1.0"

# The one evaluator, bound eagerly (NumPy only): `mdrbench.evaluate(...)` is the function,
# also once the `mdrbench.evaluate` module has been imported elsewhere.
from mdrbench.evaluate import evaluate  # noqa: E402

_API = {
    "load_dataset": "mdrbench.api",
    "Dataset": "mdrbench.api",
    "train": "mdrbench.api",
    "Evaluator": "mdrbench.api",
    "load_results": "mdrbench.api",
    "UserError": "mdrbench.errors",
}

__all__ = ["__version__", "evaluate", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mdrbench' has no attribute '{name}'")


def __dir__():
    return sorted([*globals(), *_API])
