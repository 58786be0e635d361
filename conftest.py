"""The test run's view of the optional frameworks.

``--doctest-modules`` imports every module under ``gradcheck/``; the adapters in
``gradcheck/torch`` and ``gradcheck/jax`` need their framework and raise ImportError
without it. Where a framework is not installed their modules are not collected, and the
run's header says so (the tests of ``tests/`` that need one skip with
``pytest.importorskip``, each with its reason).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_ROOT = Path(__file__).resolve().parent
#: The adapter packages and the framework each needs.
_ADAPTERS = {"torch": "PyTorch", "jax": "JAX"}


def _missing() -> dict:
    return {name: label for name, label in _ADAPTERS.items()
            if importlib.util.find_spec(name) is None}


def pytest_ignore_collect(collection_path, config):
    for name in _missing():
        if Path(collection_path).resolve().is_relative_to(_ROOT / "gradcheck" / name):
            return True
    return None


def pytest_report_header(config):
    return [f"gradcheck/{name}: doctests not collected, {label} is not installed "
            f"(pip install gradcheck[{name}])" for name, label in _missing().items()]
