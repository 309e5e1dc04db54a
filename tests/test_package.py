"""The top-level package: every name of ``__all__`` is importable from it, imported only when first used."""

from __future__ import annotations

import importlib

import pytest

import inputopt


@pytest.mark.parametrize("name", inputopt.__all__)
def test_every_export_is_the_object_of_its_module(name):
    module = importlib.import_module(inputopt._MODULE_OF[name])
    assert getattr(inputopt, name) is getattr(module, name)
    namespace: dict = {}
    exec(f"from inputopt import {name}", namespace)
    assert namespace[name] is getattr(module, name)


def test_dir_lists_the_exports_and_unknown_names_fail():
    assert set(inputopt.__all__) <= set(dir(inputopt))
    assert set(inputopt._MODULE_OF) == set(inputopt.__all__)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        inputopt.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from inputopt import NoSuchThing", {})
