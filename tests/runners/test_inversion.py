"""Feature inversion: the FeatureMatch objective and the dataset runner that inverts every image, on one process
and on two (gloo), whose results are gathered on every process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from inputopt.cli import main
from inputopt.data import Digits
from inputopt.loss import LossPath
from inputopt.networks import build_network
from inputopt.objectives import ChannelSum, FeatureMatch
from inputopt.params import PixelImage
from inputopt.priors import TotalVariation
from inputopt.problem import Problem
from inputopt.runners.inversion import FeatureInversion


def test_smoke_feature_match_scores():
    target = torch.randn(3, 4, 5, 5)
    l2, cosine = FeatureMatch("x"), FeatureMatch("x", metric="cosine")
    assert torch.allclose(l2({"x": target}, target), torch.zeros(3))
    assert torch.allclose(l2({"x": torch.zeros_like(target)}, target), -torch.ones(3))
    assert torch.allclose(cosine({"x": 3 * target}, target), torch.ones(3))
    assert torch.allclose(cosine({"x": -target}, target), -torch.ones(3))


def test_exception_feature_match():
    with pytest.raises(ValueError, match="metric must be"):
        FeatureMatch("x", metric="l1")
    with pytest.raises(ValueError, match="targets must come from the same layer"):
        FeatureMatch("x")({"x": torch.zeros(2, 4)}, torch.zeros(2, 5))


ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "digits_inversion.yaml"
QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)


def test_inversion_matches_the_features_of_each_image_better_than_its_start():
    data = Digits("test", limit=3)
    runner = FeatureInversion(Problem("digits", FeatureMatch("features.4"), [TotalVariation(0.01)]), data, steps=30,
                              batch_size=2)
    Trainer(**QUIET).test(runner, verbose=False)
    assert sorted(runner.inversions) == [0, 1, 2]
    path = LossPath(build_network("digits"), FeatureMatch("features.4"))
    images = torch.stack([data[i][0] for i in range(3)])
    targets = path.default_targets(images)
    inverted = torch.stack([runner.inversions[i] for i in range(3)])
    start = torch.full_like(images, 0.5)
    after, before = (path.terms(x, targets)["objective"] for x in (inverted, start))
    assert (after > before).all() and (after > -0.5).all()


def test_exception_inversion_bad_layer_and_objective():
    with pytest.raises((KeyError, ValueError), match="nolayer"):
        FeatureInversion(Problem("digits", FeatureMatch("nolayer")), Digits(limit=2))
    with pytest.raises(ValueError, match=r"a feature inversion needs a FeatureMatch objective \(e.g. FeatureMatch\("
                                         r"'features.4', metric='l2'\)\), got ChannelSum"):
        FeatureInversion(Problem("digits", ChannelSum("features.4", channel=[0])), Digits(limit=2))
    with pytest.raises(ValueError, match="a feature inversion needs an objective in its problem"):
        FeatureInversion(Problem("digits"), Digits(limit=2))


def test_the_problem_gives_the_start_the_priors_and_the_seed():
    """Grey noise by default; the problem's parameterization, priors and seed otherwise (each batch a fresh copy)."""
    data = Digits("test", limit=2)
    grey = FeatureInversion(Problem("digits", FeatureMatch("features.7")), data, steps=0)
    start = PixelImage(mean=0.2, std=0.0)
    problem = Problem("digits", FeatureMatch("features.7"), [TotalVariation(0.01)], start, seed=5)
    given = FeatureInversion(problem, data, steps=0)
    for runner in (grey, given):
        Trainer(**QUIET).test(runner, verbose=False)
    assert abs(grey.results["images"].mean().item() - 0.5) < 0.01
    assert torch.allclose(given.results["images"], torch.full((2, 1, 32, 32), 0.2))
    assert given.seed == 5 and len(given.priors) == 1 and problem.param is start and not list(start.parameters())


def test_results_are_in_data_set_order_with_the_scores_of_each_image():
    """Two batches (2 + 1 images): the results keep every image once, by index; the scores are FeatureMatch's on
    the inversions and on the starting noise, and their mean is logged."""
    data = Digits("test", limit=3)
    runner = FeatureInversion(Problem("digits", FeatureMatch("features.7")), data, steps=5, batch_size=2)
    trainer = Trainer(**QUIET)
    trainer.test(runner, verbose=False)
    results = runner.results
    assert sorted(results) == sorted(FeatureInversion.RESULTS)
    assert results["indices"].tolist() == [0, 1, 2] and results["images"].shape == (3, 1, 32, 32)
    assert all(torch.equal(runner.inversions[i], results["images"][i]) for i in range(3))
    path = LossPath(build_network("digits"), FeatureMatch("features.7"))
    targets = path.default_targets(torch.stack([data[i][0] for i in range(3)]))
    torch.testing.assert_close(results["scores"], path.terms(results["images"], targets)["objective"])
    assert (results["scores"] > results["start_scores"]).all()
    assert trainer.callback_metrics["feature_match"] == pytest.approx(results["scores"].mean().item())


def test_one_image_keeps_the_shapes_of_the_results():
    """torchmetrics squeezes a single value to a 0-d tensor; the results keep one row per image."""
    runner = FeatureInversion(Problem("digits", FeatureMatch("features.7")), Digits("test", limit=1), steps=1)
    Trainer(**QUIET).test(runner, verbose=False)
    assert runner.results["indices"].tolist() == [0] and runner.results["scores"].shape == (1,)
    assert runner.results["images"].shape == (1, 1, 32, 32) and list(runner.inversions) == [0]


def _invert(*overrides: str) -> list[str]:
    """``inputopt invert`` on the digits config, small and quiet, writing under ``out`` (the current folder)."""
    return ["invert", "--config", str(CONFIG), "--model.steps", "8", "--model.batch_size", "2", "--trainer.logger",
            "false", "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", *overrides]


def _saving_to(dirpath: str) -> list[str]:
    return ["--trainer.callbacks", f"[{{class_path: SaveInversions, init_args: {{dirpath: {dirpath}}}}}]"]


SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from inputopt.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_two_gloo_processes_give_the_inversions_of_one(tmp_path, monkeypatch):
    """``inputopt invert --trainer.devices 2 --trainer.strategy ddp`` on 2 CPU processes (gloo): 5 digits split 3 + 2
    (batches of 2, so the processes' results differ in size); rank 0 writes every inversion and score, in data-set
    order, equal to those of one process."""
    (tmp_path / "run.py").write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, "run.py", *_invert("--model.dataset.init_args.limit", "5", *_saving_to("two"),
                                                  "--trainer.devices", "2", "--trainer.strategy", "ddp")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    monkeypatch.chdir(tmp_path)
    main(_invert("--model.dataset.init_args.limit", "5", *_saving_to("one")))
    two, one = (torch.load(tmp_path / name / "inversions.pt") for name in ("two", "one"))
    assert two["indices"].tolist() == one["indices"].tolist() == [0, 1, 2, 3, 4]
    for key in ("images", "scores", "start_scores"):
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(one["images"][0], one["images"][1], atol=0.05)  # a different image each
    assert not torch.allclose(two["images"], two["images"][[1, 0, 2, 3, 4]], atol=0.05)  # in index order


def test_exception_command_unknown_layer_names_the_layers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"unknown layer 'nolayer' in DigitsCNN; valid names include: features"):
        main(_invert("--model.problem.objective.init_args.layer", "nolayer"))
    assert not (tmp_path / "results").exists()  # refused before any run


def test_a_streamed_data_set_gives_the_inversions_of_a_map_style_one():
    from torch.utils.data import IterableDataset

    data = Digits(limit=6)

    class Stream(IterableDataset):
        def __iter__(self):
            return (data[i] for i in range(len(data)))

    runs = []
    for dataset in (data, Stream()):
        runner = FeatureInversion(Problem("digits", FeatureMatch("features.4")), dataset, steps=2, batch_size=4)
        Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(runner, verbose=False)
        runs.append(runner.results)
    assert runs[1]["indices"].tolist() == list(range(6))
    for name in runs[0]:
        torch.testing.assert_close(runs[1][name], runs[0][name])
