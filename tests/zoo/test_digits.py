"""The offline digits models, and both reference procedures on them with real semantics."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer

from inputopt import InputOptimization, NegativeCrossEntropy
from inputopt.commands.fit import cli
from inputopt.functional import sphere_check
from inputopt.problem import Problem
from inputopt.zoo import DIGITS_CLASSES, digits_cnn, load_digits_split

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "digits.yaml"


@pytest.fixture(scope="module")
def test_split():
    return load_digits_split("test")


@pytest.mark.parametrize("variant", ["a", "b"])
def test_shipped_models_are_accurate_on_held_out_digits(variant, test_split):
    images, labels = test_split
    assert images.shape == (450, 1, 32, 32) and 0 <= images.min() and images.max() <= 1
    model = digits_cnn(variant)
    assert not model.training
    accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.97, accuracy


def test_split_is_fixed_and_disjoint():
    train, _ = load_digits_split("train")
    test, _ = load_digits_split("test")
    assert torch.equal(load_digits_split("test")[0], test)
    assert len(train) + len(test) == 1797
    train_rows = {tuple(row.tolist()) for row in train[:, 0, ::4, ::4].flatten(1)}
    assert sum(tuple(row.tolist()) in train_rows for row in test[:, 0, ::4, ::4].flatten(1)) < 10  # few duplicates


def test_exception_unknown_variant():
    with pytest.raises(ValueError, match="valid variants"):
        digits_cnn("c")


def recognized(images: torch.Tensor, variant: str) -> int:
    return int((digits_cnn(variant)(images).argmax(1) == torch.arange(10)).sum())


def main_job(tmp_path, monkeypatch, *overrides: str) -> torch.Tensor:
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    result = cli(["fit", "--config", str(CONFIG), "--trainer.enable_progress_bar", "false",
                  "--trainer.enable_model_summary", "false", *overrides])
    assert (tmp_path / "results" / "digits" / "run" / "grid.png").is_file()
    return result.model.images()


def test_main_job_visualizations_are_recognized_by_both_models(tmp_path, monkeypatch):
    """With the prior: every class visualization is its class for the shipped model, and for an
    independently trained model in at least 8 of 10 classes; without the prior, fewer transfer."""
    with_prior = main_job(tmp_path / "prior", monkeypatch)
    without_prior = main_job(tmp_path / "none", monkeypatch, "--model.problem.priors", "[]")
    assert recognized(with_prior, "a") == 10
    transfer = recognized(with_prior, "b")
    assert transfer >= 8
    assert recognized(without_prior, "a") == 10  # the objective alone fools the model it optimizes
    assert recognized(without_prior, "b") < transfer
    assert DIGITS_CLASSES == [str(i) for i in range(10)]


def test_adversarial_reference_procedure_on_digits(test_split):
    images, labels = test_split
    model = digits_cnn("a")
    correct = model(images).argmax(1) == labels
    images, labels = images[correct], labels[correct]
    module = InputOptimization(Problem(model, NegativeCrossEntropy()), init=images,
                               optimizer=partial(torch.optim.SGD, lr=0.1), freeze_done=True)
    Trainer(max_steps=15, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(module)
    assert torch.equal(module.targets, labels)  # y = the model's own prediction on the start
    adversarial = module.images()
    with torch.no_grad():
        ce_before = F.cross_entropy(model(images), labels, reduction="none")
        ce_after = F.cross_entropy(model(adversarial), labels, reduction="none")
    assert (ce_after > ce_before).all()
    fooled = model(adversarial).argmax(1) != labels
    # frozen digits stay fooled; the last step may fool more, after the last check
    assert fooled[module.done].all() and module.done.sum() > 0
    assert fooled.float().mean() >= 0.5, fooled.float().mean()

    # Random perturbations twice as large as the adversarial ones almost never change the label
    fractions, radii = sphere_check(module.predict_classes, images[fooled][:30], adversarial[fooled][:30], factor=2.0,
                                    n=200, seed=0)
    torch.testing.assert_close(radii, 2 * (adversarial - images)[fooled][:30].flatten(1).norm(dim=1))
    assert fractions.mean() < 0.05, fractions
