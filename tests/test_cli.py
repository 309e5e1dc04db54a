"""The `inputopt` command runs every shipped config end to end (random weights, small sizes)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import read_image

from inputopt import InputOptimization, SphereCheck
from inputopt.cli import cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
VGG_CONFIGS = sorted(CONFIGS.glob("vgg16_*.yaml"))


def run(config: Path, *overrides: str):
    return cli(["fit", "--config", str(config), "--model.weights", "null", "--trainer.enable_progress_bar", "false",
                "--trainer.enable_model_summary", "false", *overrides])


@pytest.mark.parametrize("config", VGG_CONFIGS, ids=lambda p: p.stem)
def test_vgg16_reference_configs_run_with_random_weights(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(config, "--trainer.max_steps", "2", "--model.image_shape", "[3, 48, 48]")
    module = result.model
    assert isinstance(module, InputOptimization) and module.network_name == "vgg16"
    assert module.trainer.global_step == 2
    run_dir = tmp_path / "results" / config.stem / "run"
    grid = read_image(str(run_dir / "grid.png"))
    assert grid.shape[-2:] == (48, 48)  # make_grid returns a single image as it is
    saved = torch.load(run_dir / "input.pt")
    assert torch.equal(saved, module.input.detach())


def test_alexnet_adversarial_config_prints_table_and_sphere_check(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        result = run(CONFIGS / "alexnet_adversarial.yaml", "--model.image_shape", "[3, 64, 64]")
    module = result.model
    assert module.trainer.global_step == 15
    assert type(module.optimizers().optimizer).__name__ == "SGD"
    assert "Predicted class after each step:" in caplog.text
    assert len([line for line in caplog.text.splitlines() if line[:3].strip().isdigit()]) >= 16  # steps 0..15
    check = next(c for c in result.trainer.callbacks if isinstance(c, SphereCheck))
    assert check.num_points == 1000 and check.fractions.shape == (1,)
    assert "Random-sphere check" in caplog.text


def test_print_config_shows_reference_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["fit", "--config", str(CONFIGS / "vgg16_paper_towel.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "class_path: inputopt.UnitActivation" in out
    assert "unit: 700" in out and "lr: 0.1" in out


@pytest.mark.slow
def test_console_command_in_a_subprocess(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    command = [str(Path(sys.executable).with_name("inputopt")), "fit", "--config", str(CONFIGS / "vgg16_conv4_channel.yaml"),
               "--model.weights", "null", "--trainer.max_steps", "2", "--model.image_shape", "[3, 32, 32]"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "results" / "vgg16_conv4_channel" / "run" / "grid.png").is_file()
    assert "wrote results/vgg16_conv4_channel/run/grid.png" in done.stdout + done.stderr
