"""Every module imports (catches a missing import that lint alone would not), and `alignment`
resolves to this repository rather than a shadowing install (alignment-handbook, PyPI alignment)."""

import importlib
import pkgutil
from pathlib import Path

import pytest

import alignment

MODULES = sorted(m.name for m in pkgutil.walk_packages(alignment.__path__, "alignment."))


def test_alignment_is_this_repo():
    assert Path(alignment.__file__).resolve().parents[1] == Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name):
    importlib.import_module(name)
