"""Data names no code: every dotted name read from a config, a command line or a checkpoint goes through one
resolver with an allowlist (inputopt, torch, torchvision, timm, Lightning, torchmetrics, and the packages the
user allows), refused before anything is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from inputopt import InputOptimization
from inputopt._resolve import NotAllowedError, allow_packages, allowed_packages, command_scope, resolve
from inputopt.atlas.config import full_class_path, resolve_unit_names
from inputopt.cli import main
from inputopt.objectives import UnitActivation

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def trap(tmp_path, monkeypatch):
    """A package ``trapmod`` on the import path that leaves a file behind when it is imported or called: the
    stand-in for ``pytest.main`` or any installed package's side effects."""
    marker = tmp_path / "TRAPPED"
    (tmp_path / "trapmod.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        from torch import nn
        Path({str(marker)!r}).write_text("imported")

        def build():
            Path({str(marker)!r}).write_text("called")
            return nn.Linear(2, 2)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 2, 3)

            def forward(self, x):
                return self.conv(x).flatten(1)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "trapmod", raising=False)
    monkeypatch.setenv("INPUTOPT_ALLOW", "tests")
    monkeypatch.chdir(tmp_path)
    yield marker
    sys.modules.pop("trapmod", None)


def _plain_checkpoint(path: Path, network: str) -> Path:
    """A plain-data (weights_only-loadable) checkpoint whose hyperparameters name ``network``."""
    torch.save({"pytorch-lightning_version": "2.6.0", "state_dict": {}, "epoch": 0, "global_step": 0,
                "hyper_parameters": {"problem": {"network": network,
                                                 "objective": UnitActivation(None, unit=0).config()},
                                     "image_shape": [1, 32, 32]}}, path)
    return path


@pytest.mark.parametrize("network", ["pytest.main", "trapmod.build", "trapmod.Net"])
def test_checkpoint_naming_a_package_not_allowed_is_refused_before_import(network, trap, tmp_path):
    path = _plain_checkpoint(tmp_path / "plain.ckpt", network)
    with pytest.raises(NotAllowedError, match=rf"network '{network}': package '\w+' is not allowed.*INPUTOPT_ALLOW"):
        InputOptimization.load_from_checkpoint(path)
    assert not trap.exists() and "trapmod" not in sys.modules


def test_checkpoint_cannot_widen_the_allowlist(trap, tmp_path):
    path = _plain_checkpoint(tmp_path / "plain.ckpt", "trapmod.build")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["allow_packages"] = ["trapmod"]
    checkpoint["allow_packages"] = ["trapmod"]
    torch.save(checkpoint, path)
    with pytest.raises((NotAllowedError, TypeError)):
        InputOptimization.load_from_checkpoint(path)
    assert "trapmod" not in allowed_packages() and not trap.exists()


@pytest.mark.parametrize("names", ["os.abort", "tempfile.mkdtemp", "builtins.input", "inputopt.cli.main",
                                   "torch.save", "trapmod.build"])
def test_atlas_unit_names_outside_the_allowed_functions_are_refused_without_a_call(names, trap, monkeypatch):
    called = []
    monkeypatch.setattr("tempfile.mkdtemp", lambda *a, **k: called.append("mkdtemp") or "x")
    monkeypatch.setattr("sys.stdin", None)
    with pytest.raises(NotAllowedError, match=rf"unit_names '{names}'"):
        resolve_unit_names(names, 10)
    assert called == [] and not trap.exists()


def test_atlas_unit_names_of_the_zoo_and_of_an_allowed_package(trap, tmp_path):
    (tmp_path / "mynames.py").write_text("def digits():\n    return [str(i) for i in range(10)]\n")
    with command_scope():
        allow_packages(["mynames"])
        assert resolve_unit_names("mynames.digits", 10)[3] == "3"
    assert "mynames" not in allowed_packages()  # the scope forgets it
    with pytest.raises(NotAllowedError, match="package 'mynames' is not allowed"):
        resolve_unit_names("mynames.digits", 10)
    sys.modules.pop("mynames", None)


def test_atlas_class_paths_import_nothing_outside_the_allowed_packages(trap):
    with pytest.raises(NotAllowedError, match="class_path 'trapmod.Net': package 'trapmod' is not allowed"):
        full_class_path({"class_path": "trapmod.Net"})
    assert not trap.exists()


@pytest.mark.parametrize(("dotted", "message"), [
    ("torch.save", "a function of torch, which builds no network"),
    ("torch.load", "a function of torch"),
    ("torchvision.io.read_image", "not one of torchvision.models.list_models"),
    ("timm.list_models", "not a model of timm.list_models"),
    ("torch.optim.SGD", "a class that is not an nn.Module"),
    ("inputopt.cli.main", "a function of inputopt outside its zoo"),
    ("torch.hub.urlopen", "leads to urllib.request.urlopen, outside the allowed packages"),
    ("os.system", "package 'os' is not allowed"),
    ("torch.__builtins__", "dunder"),
])
def test_network_names_in_allowed_packages_must_build_a_network(dotted, message):
    with pytest.raises(NotAllowedError, match=message):
        resolve(dotted, "network")


@pytest.mark.parametrize("dotted", ["torchvision.models.resnet18", "torch.nn.Identity", "timm.models.resnet.resnet18",
                                    "tests.conftest.make_tiny_net"])
def test_network_names_that_build_a_network(dotted):
    assert callable(resolve(dotted, "network"))


def test_network_name_from_the_command_line_imports_nothing_not_allowed(trap, monkeypatch):
    monkeypatch.delitem(sys.modules, "this", raising=False)
    with pytest.raises(NotAllowedError, match=r"network 'this.s': package 'this' is not allowed.*allow_packages"):
        main(["fit", "--config", str(CONFIGS / "digits.yaml"), "--model.problem.network", "this.s"])
    assert "this" not in sys.modules


def test_class_path_from_the_command_line_imports_nothing_not_allowed(trap, capsys):
    with pytest.raises(ValueError, match="trapmod"):
        main(["fit", "--config", str(CONFIGS / "digits.yaml"), "--model.problem.objective",
              '{"class_path": "trapmod.Net", "init_args": {}}'])
    assert not trap.exists() and "trapmod" not in sys.modules


def _fit_config(tmp_path: Path, allow: bool) -> Path:
    config = tmp_path / "mine.yaml"
    config.write_text(("allow_packages: [trapmod]\n" if allow else "") +
                      "model:\n  problem:\n    network: trapmod.Net\n"
                      "    objective: {class_path: inputopt.UnitActivation, init_args: {layer: null, unit: 0}}\n"
                      "  image_shape: [1, 8, 8]\n"
                      "trainer: {max_steps: 1, logger: false, enable_progress_bar: false, enable_model_summary: false}\n")
    return config


@pytest.mark.parametrize("how", ["config", "command-line", "environment"])
def test_a_package_the_user_allows_is_used(how, trap, tmp_path, monkeypatch):
    from inputopt.commands.fit import cli

    args = ["--config", str(_fit_config(tmp_path, allow=how == "config"))]
    if how == "command-line":
        args += ["--allow_packages", "[trapmod]"]
    if how == "environment":
        monkeypatch.setenv("INPUTOPT_ALLOW", "tests,trapmod")
    with command_scope():
        module = cli(args, run=False).model
    assert type(module.network).__module__ == "trapmod" and trap.read_text() == "imported"
    assert "trapmod" not in allowed_packages() or how == "environment"


def test_without_the_allow_entry_the_same_config_is_refused(trap, tmp_path):
    with pytest.raises(NotAllowedError, match="package 'trapmod' is not allowed"):
        main(["fit", "--config", str(_fit_config(tmp_path, allow=False))])
    assert not trap.exists()


@pytest.mark.parametrize("bad", ["jsonargparse", "builtins", "os", "tempfile", "subprocess.run", "not a name"])
def test_some_packages_cannot_be_allowed(bad, monkeypatch):
    with pytest.raises(ValueError, match="allow_packages"):
        allow_packages([bad])
    monkeypatch.setenv("INPUTOPT_ALLOW", bad)  # nor by the environment
    with pytest.raises(ValueError, match="INPUTOPT_ALLOW"):
        allowed_packages()


def test_current_folder_goes_after_the_installed_packages(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    main(["layers", "digits"])
    assert "" not in sys.path and sys.path[-1] == os.getcwd()
    assert "features.0" in capsys.readouterr().out


@pytest.mark.slow
def test_command_puts_the_current_folder_after_the_installed_packages(tmp_path):
    """A lightning.py or torch.py in the current folder is not imported instead of the real package (the
    console script, in a subprocess)."""
    for name in ("lightning", "torch", "jsonargparse"):
        (tmp_path / f"{name}.py").write_text(f"open('SHADOWED-{name}', 'w').close()\nraise SystemExit(7)\n")
    env = {k: v for k, v in os.environ.items() if k != "INPUTOPT_ALLOW"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([str(Path(sys.executable).with_name("inputopt")), "fit", "--config",
                           str(CONFIGS / "digits.yaml"), "--print_config"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "network: digits" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("SHADOWED")) == []


def _atlas_config(tmp_path: Path, unit_names: str, allow: str | None = None) -> str:
    config = tmp_path / "atlas.yaml"
    config.write_text((f"allow_packages: [{allow}]\n" if allow else "") +
                      f"atlas_dir: {tmp_path / 'out'}\nproblem:\n  network: digits\nlayers:\n  - name: null\n"
                      f"    unit_names: {unit_names}\n")
    return str(config)


def test_atlas_command_refuses_unit_names_before_calling_them(trap, tmp_path):
    with pytest.raises(NotAllowedError, match=r"unit_names 'os.abort': package 'os' is not allowed"):
        main(["atlas", "--config", _atlas_config(tmp_path, "os.abort")])  # os.abort() would end the test process
    assert not (tmp_path / "out").exists()


def test_atlas_command_takes_unit_names_of_a_package_its_config_allows(trap, tmp_path, monkeypatch):
    (tmp_path / "mynames.py").write_text("def digits():\n    return [f'digit {i}' for i in range(10)]\n")
    seen = []
    monkeypatch.setattr("inputopt.atlas.run.Atlas.run", lambda self: seen.append(self.layers) or {})
    main(["atlas", "--config", _atlas_config(tmp_path, "mynames.digits", allow="mynames")])
    assert seen[0][0]["unit_names"][3] == "digit 3"
    assert "mynames" not in allowed_packages()  # the command's own
    sys.modules.pop("mynames", None)
