"""Tiny networks and fixtures shared by the tests."""

from __future__ import annotations

import importlib
import inspect
import os
import pathlib
import pkgutil

import pytest
import torch
from torch import nn

# The tests' own networks and components (tests.conftest.TinyConvNet, ...) are named in configs and checkpoints:
# the suite allows its own package, as a user allows theirs (inputopt imports no other package named in data).
os.environ["INPUTOPT_ALLOW"] = ",".join(p for p in (os.environ.get("INPUTOPT_ALLOW", ""), "tests") if p)


class TinyConvNet(nn.Module):
    """A VGG-shaped toy classifier for (B, 3, 32, 32) inputs, with BatchNorm and Dropout so that eval
    mode matters. Layers: features.0 conv, .1 BN, .2 ReLU, .3 pool, .4 conv, .5 ReLU, .6 pool;
    classifier.0 Dropout, .1 Linear(8·8·8 → 16), .2 ReLU, .3 Linear(16 → 10)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(8 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def make_tiny_net(seed: int = 0, **kwargs) -> TinyConvNet:
    """A TinyConvNet with seeded random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    net = TinyConvNet(**kwargs)
    with torch.no_grad():
        bn = net.features[1]
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


def make_tiny_vit(seed: int = 0, in_chans: int = 3):
    """The zoo's ViT class, tiny (2 blocks of 16 features, 2 heads, 8×8 patches of 32×32 images: a 4×4 grid),
    with seeded random weights: its layouts are declared (tokens with a class token, heads exposed)."""
    from inputopt.zoo.vit import DigitsViT

    torch.manual_seed(seed)
    net = DigitsViT(in_chans=in_chans, image_size=32, patch=8, dim=16, depth=2, num_heads=2)
    with torch.no_grad():
        net.cls_token.normal_()  # a class token that differs from the zeros it starts as
    return net.eval()


def concrete_subclasses(base: type, package) -> list[type]:
    """Every non-abstract subclass of ``base`` defined in the ``inputopt`` package, after importing all of
    ``package``: the registry that contract tests parametrize over (subclasses defined in tests or
    docstring examples are left out)."""
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
    found, todo = [], [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if not inspect.isabstract(sub) and sub.__module__.split(".")[0] == "inputopt" and sub not in found:
                found.append(sub)
    return sorted(found, key=lambda c: c.__qualname__)


@pytest.fixture
def tiny_net() -> TinyConvNet:
    return make_tiny_net()


@pytest.fixture
def fast_trainer_kwargs(tmp_path) -> dict:
    """Trainer options for quick, quiet CPU runs that write only under tmp_path."""
    return dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)


# The tests run many tiny tensor operations, for which waking a second thread costs more than it saves
# (and on a busy machine, far more): one thread keeps the suite fast and its timings steady.
torch.set_num_threads(1)


class Watch:
    """A step callback (:class:`inputopt.record.StepCallback`) that calls ``function(record, step, terms)`` after
    each backward: what the engine tests watch."""

    def __new__(cls, function):
        from inputopt.record import StepCallback

        class _Watch(StepCallback):
            def on_after_backward(self, record, step, terms):
                function(record, step, terms)

        return _Watch()


def command_on_two_processes_and_one(args: list[str], callback: str, tmp_path, monkeypatch) -> dict[int, pathlib.Path]:
    """Run the ``inputopt`` command line ``args`` (after the program name) with 2 CPU processes (gloo, from the
    command line, a subprocess) and with 1 (in this process), each writing through the callback ``callback``
    (a class path taking ``dirpath``) into its own folder; returns ``{devices: folder}``."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from inputopt.cli import main

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONWARNINGS="ignore")
    folders = {}
    for devices in (2, 1):
        extra = ["--trainer.devices", str(devices)] + (["--trainer.strategy", "ddp"] if devices > 1 else [])
        out = tmp_path / f"devices{devices}"
        run = [*args, "--trainer.accelerator", "cpu", *extra, "--trainer.callbacks",
               json.dumps([{"class_path": callback, "init_args": {"dirpath": str(out)}}])]
        if devices == 1:
            monkeypatch.chdir(tmp_path)
            main(run)
        else:
            done = subprocess.run([str(Path(sys.executable).with_name("inputopt")), *run], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=400)
            assert done.returncode == 0, done.stderr[-3000:]
        folders[devices] = out
    return folders
