"""The shipped configs on the real EfficientNet-Lite0 (configs/imagenet_*.yaml): every one parses; the slow tests
run each end to end for 1-2 steps at small sizes (the network is fully convolutional with global pooling)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from inputopt.cli import main
from inputopt.data import photo

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
COMMANDS = {  # config -> the command that runs it
    "imagenet_paper_towel": "fit", "imagenet_paper_towel_recommended": "fit", "imagenet_classes": "fit",
    "imagenet_adversarial": "fit", "imagenet_accentuation": "fit",
    "imagenet_channels": "sweep", "imagenet_examples": "examples", "imagenet_pgd": "attack", "imagenet_fmn": "attack",
    "imagenet_autoattack": "attack", "imagenet_atlas": "atlas", "imagenet_inversion": "invert",
}
QUIET = ["--trainer.enable_progress_bar", "false"]


def test_every_imagenet_config_is_listed():
    assert sorted(p.stem for p in CONFIGS.glob("imagenet_*.yaml")) == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_config_parses(name, capsys):
    with pytest.raises(SystemExit) as stop:
        main([COMMANDS[name], "--config", str(CONFIGS / f"{name}.yaml"), "--print_config"])
    assert stop.value.code == 0
    assert "efficientnet_lite0" in capsys.readouterr().out


@pytest.mark.slow
def test_fit_configs_run(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    for name in ("imagenet_paper_towel", "imagenet_paper_towel_recommended", "imagenet_classes"):
        main(["fit", "--config", str(CONFIGS / f"{name}.yaml"), "--trainer.max_steps", "2", "--model.image_shape",
              "[3, 64, 64]", *QUIET])
        images = torch.load(tmp_path / "results" / name / "run" / "input.pt")
        assert images.shape[1:] == (3, 64, 64) and torch.isfinite(images).all()
    assert images.shape[0] == 10  # one image per class
    torch.save(photo("chelsea", size=64), tmp_path / "cat.pt")
    with caplog.at_level(logging.INFO):
        main(["fit", "--config", str(CONFIGS / "imagenet_adversarial.yaml"), "--trainer.max_steps", "2",
              "--model.init", "cat.pt", *QUIET])
    assert "Egyptian cat" in caplog.text  # the table names the classes
    assert "Random-sphere check" in caplog.text
    assert (tmp_path / "results" / "imagenet_adversarial" / "grid.png").is_file()


@pytest.mark.slow
def test_sweep_examples_attack_and_invert_configs_run(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    main(["sweep", "--config", str(CONFIGS / "imagenet_channels.yaml"), "--sweep_dir", "sweep", "--trainer.max_steps",
          "1", "--model.image_shape", "[3, 64, 64]", "--model.problem.objective.init_args.channel", "[0, 79]", *QUIET])
    assert sorted(p.name for p in (tmp_path / "sweep" / "units").iterdir()) == ["blocks.3-0.pt", "blocks.3-79.pt"]
    main(["examples", "--config", str(CONFIGS / "imagenet_examples.yaml"), "--model.dataset.init_args.size", "64",
          "--model.dataset.init_args.sources", "[coffee]", "--model.crop_size", "32", "--model.k", "2", *QUIET])
    examples = json.loads((tmp_path / "results" / "imagenet_examples" / "examples.json").read_text())
    assert len(json.dumps(examples)) > 100
    for name in ("imagenet_pgd", "imagenet_fmn"):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            main(["attack", "--config", str(CONFIGS / f"{name}.yaml"), "--model.attack.init_args.steps", "1",
                  "--model.dataset.init_args.size", "64", "--model.sphere_points", "2", *QUIET])
        assert "Examples: label | clean prediction" in caplog.text and "Egyptian cat" in caplog.text  # class names
        results = json.loads((tmp_path / "results" / name / "results.json").read_text())
        assert results, name
    main(["invert", "--config", str(CONFIGS / "imagenet_inversion.yaml"), "--model.steps", "3",
          "--model.dataset.init_args.size", "64", "--model.dataset.init_args.names", "[coffee]", *QUIET])
    inverted = torch.load(tmp_path / "results" / "imagenet_inversion" / "inversions.pt")
    assert inverted["images"].shape == (1, 3, 64, 64) and (inverted["scores"] > inverted["start_scores"]).all()
