"""The metric contract, for every torchmetrics ``Metric`` of :mod:`inputopt.metrics`: updated batch by batch it
equals its functional twin (or a direct reference) on all the data at once, and two processes (gloo), each
updating its own batches, equal one.

A new metric needs a row in :func:`cases`: ``test_every_metric_has_a_case`` fails until it has one.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torchmetrics import Metric

import inputopt.metrics
from inputopt.capture import evaluate
from inputopt.functional import fooling_rate
from inputopt.metrics import (ActivationRatio, AttackSuccessRate, Diversity, FoolingRate, HighFrequencyEnergy,
                              PerturbationNorms, Plausibility, RobustAccuracy, SphereLabelChange, TopKExamples,
                              TransferAccuracy, activation_ratio, diversity, high_frequency_energy, plausibility_distance,
                              robust_accuracy, transfer_accuracy, unit_scores)
from inputopt.networks import build_network
from inputopt.zoo import load_digits_split
from tests.conftest import concrete_subclasses


def _batches(*tensors: torch.Tensor, dims: tuple[int, ...] | None = None, size: int = 4) -> list[tuple]:
    """The update arguments: ``tensors`` cut into batches of ``size`` samples along ``dims`` (default 0; 1 for
    the ``(E, B)`` tensors of the attack metrics)."""
    dims = dims or (0,) * len(tensors)
    return list(zip(*(t.split(size, dim=d) for t, d in zip(tensors, dims))))


def cases() -> dict[str, tuple]:
    """``name -> (make the metric, update batches, reference on all the data)``; deterministic, so that every
    process builds the same table."""
    g = torch.Generator().manual_seed(0)
    images, labels = (t[:12] for t in load_digits_split("test"))
    reference = load_digits_split("train")[0][:16]  # Plausibility's real photographs
    predictions = torch.randint(0, 10, (2, 12), generator=g)
    success = torch.rand(2, 12, generator=g) > 0.4
    mask = torch.rand(12, generator=g) > 0.3
    fractions = torch.rand(2, 12, generator=g)
    fractions[0, 3] = fractions[1, 7] = float("nan")
    norms = torch.rand(2, 12, generator=g)
    scores, positions = torch.randn(12, 3, generator=g), torch.randint(0, 64, (12, 3), generator=g)
    units = torch.arange(12) % 3
    maxima = {0: 2.0, 1: 3.0, 2: 1.5}
    zero_images = images.clone()
    zero_images[[2, 5]] = 0  # feature vectors of norm 0: cosine 0 with everything
    networks = [build_network("digits"), build_network("digits_b")]
    digits = networks[0]

    def masked(values, keep):
        return torch.where(keep, values, torch.full_like(values, float("nan")))

    def top_k(k=4):
        values, indices = scores.T.topk(k, dim=1)
        return {"values": values, "indices": indices, "positions": positions.T.gather(1, indices),
                "labels": torch.full_like(indices, -1)}

    return {
        "RobustAccuracy": (lambda: RobustAccuracy(2), _batches(predictions, labels, dims=(1, 0)),
                           lambda: robust_accuracy(predictions, labels)),
        "AttackSuccessRate": (lambda: AttackSuccessRate(2), _batches(success, mask, dims=(1, 0)),
                              lambda: success[:, mask].float().mean(1)),
        "SphereLabelChange": (lambda: SphereLabelChange(2), _batches(fractions, dims=(1,)),
                              lambda: fractions.nanmean(1)),
        "PerturbationNorms": (lambda: PerturbationNorms(2), _batches(norms, success, dims=(1, 1)),
                              lambda: {"median": masked(norms, success).nanmedian(1).values,
                                       "mean": masked(norms, success).nanmean(1)}),
        "TransferAccuracy": (lambda: TransferAccuracy(networks), _batches(images, labels),
                             lambda: transfer_accuracy(torch.stack([n(images) for n in networks]), labels)),
        "ActivationRatio": (lambda: ActivationRatio(digits, "features.4", maxima), _batches(images, units),
                            lambda: activation_ratio(
                                unit_scores(evaluate(digits, images, ["features.4"])["features.4"], units)[0].diagonal(),
                                torch.tensor([maxima[int(u)] for u in units])).mean()),
        "HighFrequencyEnergy": (lambda: HighFrequencyEnergy(0.2), _batches(images),
                                lambda: high_frequency_energy(images, 0.2).mean()),
        "Diversity": (lambda: Diversity(digits, "features.4"), _batches(images),
                      lambda: diversity(evaluate(digits, images, ["features.4"])["features.4"])),
        "Diversity/zero features": (lambda: Diversity(nn.Flatten(), None), _batches(zero_images),
                                    lambda: diversity(zero_images.flatten(1))),
        "TopKExamples": (lambda: TopKExamples(3, k=4), _batches(scores, torch.arange(12), positions), top_k),
        "FoolingRate": (lambda: FoolingRate(), _batches(predictions[0], labels, mask),
                        lambda: fooling_rate(predictions[0], labels, mask=mask)),
        "FoolingRate/targeted": (lambda: FoolingRate(targeted=True), _batches(predictions[1], predictions[0]),
                                 lambda: fooling_rate(predictions[1], predictions[0], targeted=True)),
        "Plausibility": (lambda: Plausibility(digits, "features.4", reference, k=2), _batches(images),
                         lambda: plausibility_distance(evaluate(digits, images, ["features.4"])["features.4"],
                                                       evaluate(digits, reference, ["features.4"])["features.4"],
                                                       k=2).mean()),
    }


def _close(actual, expected) -> None:
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected)
        for key in expected:
            _close(actual[key], expected[key])
        return
    torch.testing.assert_close(torch.as_tensor(actual).float(), torch.as_tensor(expected).float(), equal_nan=True,
                               rtol=1e-5, atol=1e-6)


CASES = cases()


def test_every_metric_has_a_case():
    classes = {cls.__name__ for cls in concrete_subclasses(Metric, inputopt.metrics)}
    named = {name.split("/")[0] for name in CASES}
    assert classes == named, f"metrics without a contract case: {sorted(classes - named)}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_metric_batch_by_batch_equals_its_functional_twin(name):
    make, batches, reference = CASES[name]
    assert len(batches) >= 2
    metric = make()
    for args in batches:
        metric.update(*args)
    _close(metric.compute(), reference())


def _worker(rank: int, world: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        results = {}
        for name, (make, batches, _) in cases().items():
            metric = make()
            for args in batches[rank::world]:  # each process its own batches, as the distributed sampler splits
                metric.update(*args)
            results[name] = metric.compute()  # torchmetrics syncs the states across the processes
        if rank == 0:
            torch.save(results, f"{folder}/results.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned interpreters: about a minute on 2 loaded cores
def test_two_processes_equal_one(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    results = torch.load(tmp_path / "results.pt", weights_only=False)
    assert sorted(results) == sorted(CASES)
    for name, (make, batches, _) in CASES.items():
        metric = make()
        for args in batches:
            metric.update(*args)
        _close(results[name], metric.compute())
