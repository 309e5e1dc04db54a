"""Small atlases shared by the atlas tests (built once per session: a few seconds each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.atlas._hostile import IMG, SCRIPT

DIGITS = {"class_path": "inputopt.data.Digits", "init_args": {"split": "test", "limit": 60}}


def digits_atlas(atlas_dir: Path, steps: int = 5, **overrides):
    """The digits atlas, made small: 4 channels of features.4, 3 classes (transfer to digits_b)."""
    from inputopt.atlas import Atlas

    settings = dict(
        problem={"network": "digits",
                 "param": {"class_path": "PixelImage", "init_args": {"mean": 0.5, "std": 0.01}},
                 "priors": [{"class_path": "MultiScaleEdgeEnergy", "init_args": {"weight": 0.3}}]},
        atlas_dir=str(atlas_dir), image_shape=[1, 32, 32],
        layers=[{"name": "features.4", "units": [0, 1, 2, 3], "context": 16, "display": "std"},
                {"name": None, "units": [0, 1, 2], "unit_names": [f"digit {d}" for d in range(10)]}],
        visualization={"optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.05}},
                       "steps": steps, "units_per_batch": 2, "display": "clamp"},
        examples={"dataset": DIGITS, "k": 3, "batch_size": 30},
        metrics={"transfer_networks": ["digits_b"]},
        trainer={"accelerator": "cpu", "devices": 1}, progress=False)
    settings.update(overrides)
    return Atlas(**settings)


def hostile_atlas(atlas_dir: Path):
    from inputopt.atlas import Atlas

    return Atlas({"network": "tests.atlas._hostile.hostile_net"}, [{"name": SCRIPT, "crop_size": 3}, {"name": IMG},
                                                      {"name": None, "unit_names": "tests.atlas._hostile.class_names"}],
                 str(atlas_dir), image_shape=[1, 32, 32], visualization={"steps": 2, "display": "clamp"},
                 examples={"dataset": DIGITS, "k": 2, "batch_size": 30}, trainer={"accelerator": "cpu"},
                 progress=False)


@pytest.fixture(scope="session")
def built_atlas(tmp_path_factory) -> Path:
    """A digits atlas, run once (read-only for the tests: copy it to change it)."""
    folder = tmp_path_factory.mktemp("atlas") / "digits"
    digits_atlas(folder).run()
    return folder


@pytest.fixture(scope="session")
def built_hostile_atlas(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("atlas") / "hostile"
    hostile_atlas(folder).run()
    return folder
