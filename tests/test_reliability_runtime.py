"""Reliability, round 3, the runtime side: a resume fingerprint that covers the Trainer's numerics, atomic and
contained writes, the user's module handed back as given, data sets refused when non-finite or empty, long jobs
that report and stop (docs/cli.md, "Nothing lost, nothing mixed")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from inputopt import InputOptimization, UnitActivation
from tests.conftest import make_tiny_net

ROOT = Path(__file__).resolve().parents[1]


def module(unit=(0, 1), net=None, **kwargs) -> InputOptimization:
    return InputOptimization(net if net is not None else make_tiny_net(), UnitActivation("features.4", unit=list(unit)),
                             image_shape=(3, 32, 32), **kwargs)


def trainer(tmp_path, max_steps: int, *callbacks, **kwargs) -> Trainer:
    return Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=tmp_path, callbacks=list(callbacks), **kwargs)


# -- the fingerprint covers the Trainer's numerics ------------------------------------------------------------------
@pytest.mark.parametrize(("change", "field"), [
    ({"precision": "bf16-mixed"}, "precision: checkpoint 32-true, now bf16-mixed"),
    ({"gradient_clip_val": 0.5}, "gradient_clip: checkpoint None, now 0.5 (norm)"),
    ({"gradient_clip_val": 1.0, "gradient_clip_algorithm": "value"}, "gradient_clip: checkpoint None, now 1.0 (value)"),
    ({"accumulate_grad_batches": 2}, "accumulate_grad_batches: checkpoint 1, now 2"),
], ids=["precision", "clip_val", "clip_algorithm", "accumulation"])
def test_resume_with_other_trainer_numerics_is_refused_naming_the_difference(change, field, tmp_path):
    trainer(tmp_path, 2, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)).fit(module())
    last = tmp_path / "ckpt" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(ValueError, match=rf"refusing to resume.*\n  {field}".replace("(", r"\(").replace(")", r"\)")):
        trainer(tmp_path, 4, **change).fit(module(), ckpt_path=last)
    assert last.read_bytes() == before
    resumed = module()
    trainer(tmp_path, 4).fit(resumed, ckpt_path=last)  # the same numerics: resumes
    assert resumed.trainer.global_step == 4


def test_resume_from_the_command_line_with_another_precision_is_refused(tmp_path, monkeypatch):
    from inputopt.commands.fit import cli

    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(ROOT / "configs" / "digits.yaml"), "--trainer.max_steps", "2",
            "--model.objective.init_args.unit", "[0, 1]", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]
    cli(args)
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in gradient_clip:"):
        cli([*args[:4], "4", *args[5:], "--ckpt_path", "last", "--trainer.gradient_clip_val", "0.1"])
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in precision:"):
        cli([*args[:4], "4", *args[5:], "--ckpt_path", "last", "--trainer.precision", "bf16-mixed"])


def test_sweep_folder_refuses_units_of_another_precision(tmp_path, monkeypatch):
    from inputopt.commands.sweep import run_sweep

    monkeypatch.chdir(tmp_path)
    args = ["--config", str(ROOT / "configs" / "digits.yaml"), "--trainer.max_steps", "1", "--trainer.logger", "false"]
    run_sweep([*args, "--model.objective.init_args.unit", "[0, 1]"], units_per_batch=2, sweep_dir="s", progress=False)
    with pytest.raises(ValueError, match=r"differs in\n  precision: '32-true' -> 'bf16-mixed'"):
        run_sweep([*args, "--model.objective.init_args.unit", "[2, 3]", "--trainer.precision", "bf16-mixed"],
                  units_per_batch=2, sweep_dir="s", progress=False)
    assert sorted(p.name for p in (tmp_path / "s" / "units").iterdir()) == ["output-0.pt", "output-1.pt"]


# -- the user's module is handed back as it was given ----------------------------------------------------------------
def _users_module():
    net = make_tiny_net().train()
    net.classifier[0].eval()  # a mix of modes and flags, handed back as they were
    net.features[0].weight.requires_grad_(False)
    return net


def _state(net):
    return ({name: m.training for name, m in net.named_modules()},
            {name: p.requires_grad for name, p in net.named_parameters()})


@pytest.mark.parametrize("kind", ["fit", "sweep", "examples", "universal"])
def test_the_users_module_is_handed_back_as_it_was_given(kind, tmp_path):
    """Building a run on a module mid-training, and running it, leaves the module's modes and requires_grad flags
    as they were (they used to be frozen for good at construction)."""
    from torch.utils.data import TensorDataset

    from inputopt.objectives import Margin
    from inputopt.params import PixelImage
    from inputopt.runners.examples import DatasetExamples
    from inputopt.runners.shared import SharedInputOptimization
    from inputopt.runners.sweep import FeatureSweep
    from inputopt.transforms.insert import AddPerturbation

    net = _users_module()
    given = _state(net)
    data = TensorDataset(torch.rand(6, 3, 32, 32), torch.arange(6))
    run = {"fit": lambda: module(net=net),
           "sweep": lambda: FeatureSweep(net, UnitActivation("features.4", unit=[0, 1]), image_shape=(3, 32, 32),
                                         steps=2),
           "examples": lambda: DatasetExamples(net, "features.4", [0, 1], data, k=2, batch_size=3),
           "universal": lambda: SharedInputOptimization(
               net, Margin(), AddPerturbation(), data, batch_size=3, param=PixelImage(mean=0, std=0, eps=0.1))}[kind]()
    assert _state(net) == given  # construction
    seen = []
    hook = net.features[1].register_forward_hook(lambda m, i, o: seen.append((m.training, m.weight.requires_grad)))
    runner = trainer(tmp_path, 2)
    runner.fit(run) if kind in ("fit", "universal") else runner.test(run, verbose=False)
    hook.remove()
    assert seen and set(seen) == {(False, False)}, "the network ran in train mode or with gradients"
    assert _state(net) == given  # the run
