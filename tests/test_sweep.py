"""Sweeps (docs/sweeps.md): units as the data of a runner, written as they finish, resumed without
recomputing, independent of the chunk size, and a folder that refuses another configuration."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer
from PIL import Image

from inputopt.callbacks.sweep import SaveSweep
from inputopt.commands.fit import cli
from inputopt.commands.sweep import run_sweep, sweep_cli
from inputopt.objectives import ChannelSum, UnitActivation
from inputopt.priors import MultiScaleEdgeEnergy
from inputopt.problem import Problem
from inputopt.runners.sweep import FeatureSweep

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "digits.yaml"
ARGS = ["--config", str(CONFIG), "--trainer.max_steps", "4", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.logger", "false", "--trainer.callbacks",
        '[{"class_path": "SaveImages", "init_args": {"display": "clamp", "dirpath": "single"}}]']
ALL = ["--model.problem.objective.init_args.unit", "all"]


def test_interrupted_sweep_resumes_without_recomputing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*ARGS, *ALL]
    assert run_sweep(args, units_per_batch=4, sweep_dir="sweep", progress=False) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    units = tmp_path / "sweep" / "units"
    first = torch.load(tmp_path / "sweep" / "input.pt")
    assert first.shape == (10, 1, 32, 32)
    assert sorted(p.name for p in (tmp_path / "sweep" / "images").iterdir()) == [f"output-{c}.png" for c in range(10)]
    assert Image.open(tmp_path / "sweep" / "grid.png").size == (4 * 34 + 2, 3 * 34 + 2)  # 10 images: 4 columns, 3 rows
    assert not list(units.glob("*.partial"))

    # An interruption that lost units 2, 5 and 9: only those run again, in new company, to the same images.
    for c in (2, 5, 9):
        (units / f"output-{c}.pt").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in units.iterdir()}
    assert run_sweep(args, units_per_batch=2, sweep_dir="sweep", progress=False) == [[2, 5], [9]]
    assert {p.name: p.stat().st_mtime_ns for p in units.iterdir() if p.name in kept} == kept
    torch.testing.assert_close(torch.load(tmp_path / "sweep" / "input.pt"), first, rtol=1e-5, atol=1e-6)
    assert run_sweep(args, units_per_batch=2, sweep_dir="sweep", progress=False) == []  # nothing left to do
    assert not (tmp_path / "single").exists()  # the config's SaveImages does not write: the sweep does
    assert not (tmp_path / "results").exists() and not (tmp_path / "checkpoints").exists()  # no logger, no ckpt

    # and a plain one-batch fit of the same units gives the same images
    single = cli(["fit", *args]).model.images()
    torch.testing.assert_close(first, single, rtol=1e-5, atol=1e-6)


def test_sweep_folder_records_its_config_and_refuses_another(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_sweep([*ARGS, "--model.problem.objective.init_args.unit", "[7, 3]"], units_per_batch=4, sweep_dir="s",
                     progress=False) == [[7, 3]]
    record = yaml.safe_load((tmp_path / "s" / "sweep.yaml").read_text())
    assert record["steps"] == 4 and record["network"] == "digits" and record["seed"] == 0
    assert record["objective"] == {"class_path": "inputopt.objectives.activation.UnitActivation",
                                   "init_args": {"layer": None, "position": None}}  # the units are not part of it
    assert record["optimizer"] == {"class_path": "torch.optim.adam.Adam", "init_args": {"lr": 0.05}}
    assert record["priors"][0]["init_args"]["weight"] == 0.3 and record["image_shape"] == [1, 32, 32]
    three = torch.load(tmp_path / "s" / "input.pt")

    # the same config with more units: only the new ones are computed, in the order of the objective
    assert run_sweep([*ARGS, *ALL], units_per_batch=4, sweep_dir="s", progress=False) == [[0, 1, 2, 4], [5, 6, 8, 9]]
    torch.testing.assert_close(torch.load(tmp_path / "s" / "input.pt")[[7, 3]], three, rtol=0, atol=0)

    # another config: refused before anything is computed, naming every difference
    before = sorted(p.name for p in (tmp_path / "s" / "units").iterdir())
    with pytest.raises(ValueError, match=r"(?s)another sweep configuration.*priors\.0\.init_args\.weight: 0\.3 -> 0\.5"
                                         r".*\n  steps: 4 -> 3\n"):
        run_sweep([*ARGS, *ALL, "--trainer.max_steps", "3", "--model.problem.priors",
                   '[{"class_path": "MultiScaleEdgeEnergy", "init_args": {"weight": 0.5}}]'], sweep_dir="s", progress=False)
    assert sorted(p.name for p in (tmp_path / "s" / "units").iterdir()) == before

    # unit files without a record (another tool, an older inputopt): refused too
    (tmp_path / "old" / "units").mkdir(parents=True)
    torch.save(torch.zeros(1, 32, 32), tmp_path / "old" / "units" / "output-0.pt")
    with pytest.raises(ValueError, match="sweep.yaml is missing"):
        run_sweep([*ARGS, *ALL], sweep_dir="old", progress=False)


def test_feature_sweep_with_a_trainer(tmp_path):
    """The Python API: FeatureSweep + SaveSweep under Trainer.test; the same images as the command."""
    sweep = FeatureSweep(Problem("digits", ChannelSum("features.4", channel=[5, 1, 30]), [MultiScaleEdgeEnergy(0.3)]),
                         image_shape=(1, 32, 32), steps=3, units_per_batch=2)
    assert sweep.units == [5, 1, 30] and sweep.image_names == ["features.4-5", "features.4-1", "features.4-30"]
    saver = SaveSweep(tmp_path / "a", display="clamp", progress=False)
    trainer = Trainer(callbacks=[saver], logger=False, enable_progress_bar=False, enable_model_summary=False)
    assert trainer.test(sweep, verbose=False) == [{}]
    assert saver.chunks == [[5, 1], [30]]
    x = torch.load(tmp_path / "a" / "input.pt")
    # one unit alone, in a chunk of one: the same image
    alone = FeatureSweep(Problem("digits", ChannelSum("features.4", channel=30), [MultiScaleEdgeEnergy(0.3)]),
                         image_shape=(1, 32, 32), steps=3)
    Trainer(callbacks=[SaveSweep(tmp_path / "b", progress=False)], logger=False, enable_progress_bar=False,
            enable_model_summary=False).test(alone, verbose=False)
    torch.testing.assert_close(torch.load(tmp_path / "b" / "input.pt")[0], x[2], rtol=1e-5, atol=1e-6)
    assert sweep.record() == alone.record()


def test_with_units_keeps_the_other_arguments():
    objective = UnitActivation("features.4", unit="all", position=(1, 2))
    chunk = objective.with_units([4, 7])
    assert type(chunk) is UnitActivation and chunk.units == [4, 7] and chunk.position == (1, 2)
    assert chunk.init_args == {"layer": "features.4", "unit": [4, 7], "position": (1, 2)}
    assert objective.init_args["unit"] == "all"  # the original is unchanged
    assert ChannelSum("features.4", channel=[1, 2]).with_units(3).init_args == {"layer": "features.4", "channel": 3}
    assert ChannelSum("features.4", channel=[1, 2]).with_units(range(2)).units == [0, 1]


def test_exception_sweep_needs_units(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="units_per_batch must be >= 1, got 0"):
        run_sweep(ARGS, units_per_batch=0, progress=False)
    with pytest.raises(ValueError, match=r"a sweep needs a UnitsObjective objective \(e.g. UnitActivation"):
        run_sweep([*ARGS, "--model.problem.objective", '{"class_path": "NegativeCrossEntropy"}'], progress=False)
    diversity = ('{"class_path": "Sum", "init_args": {"terms": [{"class_path": "ChannelSum", "init_args": '
                 '{"layer": "features.4", "channel": "all"}}, {"class_path": "Diversity", "init_args": '
                 '{"layer": "features.4"}}]}}')
    with pytest.raises(ValueError, match=r"Sum couples the rows of a batch .* with `inputopt fit`"):
        run_sweep([*ARGS, "--model.problem.objective", diversity], progress=False)
    with pytest.raises(ValueError, match=r"one image per unit, but units \[3, 3\] repeat"):
        run_sweep([*ARGS, "--model.problem.objective.init_args.unit", "[3, 3]"], progress=False)
    with pytest.raises(ValueError, match="unit 10 is out of range for layer '', which has 10 units"):
        run_sweep([*ARGS, "--model.problem.objective.init_args.unit", "[3, 10]"], progress=False)
    with pytest.raises(ValueError, match="model.init does not apply"):
        run_sweep([*ARGS, "--model.init", "x.pt"], progress=False)
    with pytest.raises(ValueError, match="precision '16-true'"):
        run_sweep([*ARGS, "--trainer.precision", "16-true"], progress=False)
    assert not (tmp_path / "results" / "sweep" / "units").exists()  # nothing computed


def test_sweep_cli_parses_what_fit_parses_without_importing_it():
    """`inputopt sweep` takes the arguments of `inputopt fit`, with its defaults, and the sweep's command line does
    not import the others (inputopt.cli dispatches to it; inputopt.commands.fit is `inputopt fit`)."""
    sweep = sweep_cli([*ARGS, *ALL])
    fit = cli([*ARGS, *ALL], run=False)
    assert sweep.config["model"] == fit.config["model"]
    # the same problem block builds the same Problem for both
    assert type(sweep.model.problem) is type(fit.model.problem) is Problem
    assert sweep.model.problem.config() == fit.model.problem.config()
    assert sweep.config["trainer"]["max_steps"] == fit.config["trainer"]["max_steps"] == 4
    assert sweep.parser.get_defaults()["trainer"]["max_steps"] == fit.parser.get_defaults()["trainer"]["max_steps"]
    tree = ast.parse((ROOT / "inputopt" / "commands" / "sweep.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not imported & {"inputopt.cli", "inputopt.commands.fit"}
