"""The `inputopt` command runs every shipped config end to end (random weights, small sizes)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from inputopt import InputOptimization, SphereCheck
from inputopt.cli import SUBCOMMANDS, main
from inputopt.commands.fit import cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
VGG_CONFIGS = sorted(CONFIGS.glob("vgg16_*.yaml"))


def run(config: Path, *overrides: str):
    return cli(["fit", "--config", str(config), "--model.problem.network", "vgg16", "--trainer.enable_progress_bar",
                "false", "--trainer.enable_model_summary", "false", *overrides])


@pytest.mark.parametrize("config", VGG_CONFIGS, ids=lambda p: p.stem)
def test_vgg16_reference_configs_run_with_random_weights(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(config, "--trainer.max_steps", "2", "--model.image_shape", "[3, 48, 48]")
    module = result.model
    assert isinstance(module, InputOptimization) and module.network_name == "vgg16"
    assert module.trainer.global_step == 2
    run_dir = tmp_path / "results" / config.stem / "run"
    grid = Image.open(run_dir / "grid.png")
    assert grid.size == (48, 48)  # make_grid returns a single image as it is
    saved = torch.load(run_dir / "input.pt")
    assert torch.equal(saved, module.images())


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
               "--model.problem.network", "vgg16", "--trainer.max_steps", "2", "--model.image_shape", "[3, 32, 32]"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "results" / "vgg16_conv4_channel" / "run" / "grid.png").is_file()
    assert "wrote results/vgg16_conv4_channel/run/grid.png" in done.stdout + done.stderr


TINY = ["--model.problem.network", "tests.conftest.TinyConvNet", "--model.image_shape",
        "[3, 32, 32]", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.max_steps", "3"]


def test_users_own_objective_and_prior_from_their_own_module(tmp_path, monkeypatch):
    package = tmp_path / "mylab"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "components.py").write_text(
        "import torch\n"
        "from inputopt import InputObjective, Prior\n\n\n"
        "class MeanActivation(InputObjective):\n"
        "    def forward(self, activations):\n"
        "        return activations[self.layer].flatten(1).mean(1)\n\n\n"
        "class L2(Prior):\n"
        "    def forward(self, x):\n"
        "        return x.pow(2).flatten(1).sum(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = cli(["fit", "--config", str(CONFIGS / "vgg16_conv4_channel.yaml"), *TINY, "--allow_packages", "[mylab]",
                  "--model.problem.objective",
                  '{"class_path": "mylab.components.MeanActivation", "init_args": {"layer": "features.4"}}',
                  "--model.problem.priors", '[{"class_path": "mylab.components.L2", "init_args": {"weight": 0.5}}]'])
    module = result.model
    assert type(module.objective).__module__ == "mylab.components" and module.objective.layer == "features.4"
    assert [type(p).__name__ for p in module.priors] == ["L2"] and module.priors[0].weight == 0.5
    assert module.trainer.global_step == 3


def test_same_config_and_seed_give_the_same_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIGS / "vgg16_paper_towel.yaml"), *TINY,
            "--model.problem.objective.init_args.unit", "[1, 4]"]
    first = cli([*args, "--trainer.logger.init_args.version", "a"]).model.images()
    second = cli([*args, "--trainer.logger.init_args.version", "b"]).model.images()
    other_seed = cli([*args, "--trainer.logger.init_args.version", "c", "--model.problem.seed", "1"]).model.images()
    assert torch.equal(first, second)
    assert not torch.allclose(first, other_seed)


def test_precision_choices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(CONFIGS / "vgg16_paper_towel.yaml"), *TINY,
            "--model.problem.objective.init_args.unit", "1"]
    module = cli([*args, "--trainer.precision", "bf16-mixed"]).model
    assert module.param.tensor.dtype == torch.float32 and module.images().dtype == torch.float32
    assert torch.isfinite(module.images()).all()
    with pytest.raises(ValueError, match="would cast the input itself to half precision"):
        cli([*args, "--trainer.precision", "bf16-true"])


def test_digits_fourier_config_runs_with_transforms(tmp_path, monkeypatch):
    from inputopt import FourierImage

    monkeypatch.chdir(tmp_path)
    module = cli(["fit", "--config", str(CONFIGS / "digits_fourier.yaml"), "--trainer.max_steps", "3",
                  "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]).model
    assert isinstance(module.param, FourierImage) and len(module.transforms) > 0
    run_dir = tmp_path / "results" / "digits_fourier" / "run"
    assert torch.equal(torch.load(run_dir / "input.pt"), module.images())  # the images, not the spectrum
    assert set(torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]) == {
        "param.spectrum", "done"}


def test_digits_combo_config_names_images_after_both_terms(tmp_path, monkeypatch):
    from inputopt import Sum

    monkeypatch.chdir(tmp_path)
    module = cli(["fit", "--config", str(CONFIGS / "digits_combo.yaml"), "--trainer.max_steps", "3",
                  "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]).model
    assert isinstance(module.objective, Sum) and module.objective.weights == [1.0, -0.5]
    names = module.image_names()
    assert len(names) == 10 and all("+" in name for name in names)
    written = sorted(p.stem for p in (tmp_path / "results" / "digits_combo" / "run" / "images").iterdir())
    assert written == sorted(names)


def test_help_lists_every_subcommand(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for command in ("fit", "attack", "examples", "sweep", "layers"):
        assert f"\n  {command} " in out, command


def test_command_line_run_does_not_warn_about_args(tmp_path, monkeypatch, recwarn):
    """From the shell, `main` passes sys.argv on as LightningCLI's `args`: no warning about two command lines."""
    from inputopt.cli import main

    monkeypatch.chdir(tmp_path)
    argv = ["attack", "--config", str(CONFIGS / "digits_pgd.yaml"), "--model.dataset.init_args.limit", "4",
            "--model.attack.init_args.steps", "1", "--model.sphere_points", "0", "--trainer.callbacks", "[]",
            "--trainer.enable_progress_bar", "false"]
    monkeypatch.setattr(sys, "argv", ["inputopt", *argv])
    main(argv)
    assert not [w for w in recwarn if "args parameter" in str(w.message)]


def test_user_objective_from_the_current_folder(tmp_path, monkeypatch):
    """`inputopt fit` imports a class_path from the current folder, once the config allows it (after the
    installed packages: a torch.py there does not shadow torch)."""
    from inputopt.cli import main

    (tmp_path / "my_objectives.py").write_text(
        "from inputopt.objectives import InputObjective\n\n\n"
        "class MyObjective(InputObjective):\n"
        "    def forward(self, activations):\n"
        "        return activations[self.layer].flatten(1).mean(1)\n")
    (tmp_path / "my.yaml").write_text(
        "allow_packages: [my_objectives]\n"
        "trainer: {max_steps: 1, logger: false, enable_checkpointing: false, enable_progress_bar: false}\n"
        "model:\n  problem:\n    network: digits\n    objective:\n      class_path: my_objectives.MyObjective\n"
        "      init_args: {layer: features.0}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_objectives", raising=False)
    main(["fit", "--config", "my.yaml"])
    assert Path(sys.modules["my_objectives"].__file__).resolve() == (tmp_path / "my_objectives.py").resolve()


def test_unknown_command_names_the_commands(capsys):
    from inputopt.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["fti", "--config", "configs/digits.yaml"])
    assert stop.value.code == 2
    assert "unknown command 'fti'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["fit", "--config", "configs/digits.yaml"],
    ["sweep", "--config", "configs/digits.yaml"],
    ["attack", "--config", "configs/digits_pgd.yaml", "--trainer.callbacks+=LogImages"],
], ids=lambda argv: argv[0])
def test_short_class_names_resolve_in_a_fresh_process(argv):
    """The package imports its modules lazily; every command still resolves `class_path: LogImages` & co."""
    code = f"from inputopt.cli import main; main({[*argv, '--print_config']!r})"
    done = subprocess.run([sys.executable, "-c", code], cwd=CONFIGS.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "class_path: inputopt.LogImages" in done.stdout


def _subcommand_of(config: Path) -> str:
    """The subcommand a shipped config is for: the one its header names (``inputopt attack --config ...``)."""
    for line in config.read_text().splitlines():
        if line.startswith("#") and "inputopt " in line and "--config" in line:
            return line.split("inputopt ", 1)[1].split()[0]
    return "fit"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_answers_help(name, capsys):
    """Walks the subcommand table: each command's `--help` works and says how to call it."""
    from inputopt.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_parses_for_its_subcommand(config, capsys, monkeypatch):
    from inputopt.cli import main

    monkeypatch.chdir(CONFIGS.parent)
    command = _subcommand_of(config)
    assert command in SUBCOMMANDS, f"{config.name} names an unknown command {command!r}"
    with pytest.raises(SystemExit) as exit_:
        main([command, "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


def test_every_lightning_cli_is_built_by_the_one_factory():
    """Only ``inputopt.commands.common.lightning_cli`` calls ``LightningCLI`` or a subclass of it: every
    subcommand gets the same defaults (seed, short class names, config overwrite) from one place."""
    import ast

    package = Path(__file__).resolve().parents[1] / "inputopt"
    trees = {path: ast.parse(path.read_text()) for path in package.rglob("*.py")}
    cli_classes = {"LightningCLI"} | {node.name for tree in trees.values() for node in ast.walk(tree)
                                      if isinstance(node, ast.ClassDef)
                                      and any(getattr(base, "id", getattr(base, "attr", None)) == "LightningCLI"
                                              for base in node.bases)}
    assert {"InputOptCLI", "SweepCLI"} <= cli_classes
    calls = sorted(f"{path.relative_to(package.parent)}:{node.lineno}" for path, tree in trees.items()
                   for node in ast.walk(tree) if isinstance(node, ast.Call)
                   and getattr(node.func, "id", getattr(node.func, "attr", None)) in cli_classes
                   and path.name != "common.py")
    assert calls == [], f"build these with inputopt.commands.common.lightning_cli: {calls}"


def test_a_command_closes_the_process_group_of_its_run(tmp_path, capsys):
    # Lightning leaves a multi-device run's process group open; gloo's threads could then abort the process at exit
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        main(["layers", "digits"])
        assert not dist.is_initialized()
        assert "features.0" in capsys.readouterr().out
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
