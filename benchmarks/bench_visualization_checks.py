"""What the visualization checks cost per unit, against the visualization itself, side by side in one run.

For a set of units, times (1) the visualization: the units' images by ``optimize`` (one batch, ``--steps`` steps);
(2) the default checks (:data:`~inputopt.metrics.visualization_checks.DEFAULT_CHECKS`: transfer, strength, path,
plausibility, high frequency) on those images as a first call: the natural images' summaries computed (their
forward through the network and the transfer network); (3) the same checks again, those summaries kept (any later
call on the same natural images: other units, another layer's for the transfer network); (4) the ``seeds``
check's extra cost for one more seed (another visualization: about 1x by construction). Repetitions alternate
(1) and (2)+(3); medians are printed, and the ratios checks / visualization.

- ``digits`` (default): the 32 channels of the digits model's ``features.4``, the Fourier method of
  ``configs/digits_fourier.yaml`` (decay 1.5, clamp [0, 1], jitter/scale, Adam lr 0.05, 100 steps); natural
  images: the 450 held-out digits; transfer network ``digits_b``, plausibility at its ``classifier.2``.
- ``lite0``: channels of EfficientNet-Lite0's ``blocks.4`` at ``--size`` px, the recommended Fourier + transforms
  (``examples/imagenet_accentuation.py``); natural images: 182 photo crops; transfer network EfficientNet-Lite1,
  plausibility at its ``global_pool``.

    OMP_NUM_THREADS=1 python benchmarks/bench_visualization_checks.py --case digits --reps 3
    OMP_NUM_THREADS=1 python benchmarks/bench_visualization_checks.py --case lite0 --units 8 --steps 64 --size 128 --reps 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from inputopt.engine import optimize
from inputopt.functional.random import RowRandom
from inputopt.loss import LossPath
from inputopt.metrics.visualization_checks import _NATURAL, visualization_checks
from inputopt.objectives import ChannelSum
from inputopt.params import FourierImage
from inputopt.transforms import Jitter, RandomScale, Transforms


def digits_case(units: int, steps: int):
    from inputopt.data import Digits
    from inputopt.zoo import digits_cnn

    network, transfer = digits_cnn("a"), digits_cnn("b")
    natural = Digits("test")  # one data set, as the callback keeps it: the checks keep its summaries
    channels = list(range(units))

    def visualize(seed: int = 0) -> torch.Tensor:
        path = LossPath(network, ChannelSum("features.4", channel=channels), [],
                        Transforms([Jitter(2), RandomScale(0.9, 1.1), Jitter(1)]))
        param = FourierImage(decay_power=1.5, mean=0.5, std=0.01, clamp=(0, 1)).initialize((1, 32, 32), channels, seed)
        optimize(param, path, steps, partial(torch.optim.Adam, lr=0.05), path.default_targets(param()),
                 RowRandom(seed).stream("start").seeds(channels))
        with torch.no_grad():
            return param().detach()

    def check(images: torch.Tensor, **kwargs):
        return visualization_checks(network, "features.4", channels, images, natural, transfer_network=transfer,
                                    plausibility_layer="classifier.2", **kwargs)

    return visualize, check


def lite0_case(units: int, steps: int, size: int):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from imagenet_accentuation import recommended_transforms

    from inputopt.data import PhotoCrops
    from inputopt.networks import build_network, freeze

    network, transfer = freeze(build_network("efficientnet_lite0")), freeze(build_network("efficientnet_lite1"))
    crops = PhotoCrops(size=size, scales=(1.0, 0.7, 0.5))
    channels = list(range(units))

    def visualize(seed: int = 0) -> torch.Tensor:
        path = LossPath(network, ChannelSum("blocks.4", channel=channels), [], Transforms(recommended_transforms(size)))
        param = FourierImage(decorrelate=True, sigmoid=(0, 1)).initialize((3, size, size), channels, seed)
        optimize(param, path, steps, partial(torch.optim.Adam, lr=0.1), path.default_targets(param()),
                 RowRandom(seed).stream("start").seeds(channels))
        with torch.no_grad():
            return param().detach()

    def check(images: torch.Tensor, **kwargs):
        return visualization_checks(network, "blocks.4", channels, images, crops, transfer_network=transfer,
                                    plausibility_layer="global_pool", **kwargs)

    return visualize, check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=["digits", "lite0"], default="digits")
    parser.add_argument("--units", type=int, default=None, help="default: 32 (digits), 8 (lite0)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    units = args.units or (32 if args.case == "digits" else 8)
    visualize, check = digits_case(units, args.steps) if args.case == "digits" else lite0_case(units, args.steps,
                                                                                                  args.size)
    print(f"case {args.case}: {units} units, {args.steps} steps, torch threads {torch.get_num_threads()}")
    images = visualize()  # warm-up, both sides
    check(images)
    vis_times, cold_times, warm_times = [], [], []
    for rep in range(args.reps):
        # (1) the visualization; (2) the checks with nothing kept (the natural images' summaries computed: a first
        # call); (3) the same checks again (the summaries kept from (2): any later call on the same natural images)
        for side in ((0, 1) if rep % 2 == 0 else (1, 0)):
            if side == 0:
                start = time.perf_counter()
                images = visualize()
                vis_times.append(time.perf_counter() - start)
            else:
                _NATURAL.clear()
                start = time.perf_counter()
                check(images)
                cold_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                results = check(images)
                warm_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    others = torch.stack([visualize(seed=1)])
    seeds_time = time.perf_counter() - start
    start = time.perf_counter()
    check(images, checks=["seeds"], seed_images=others)
    seeds_time += time.perf_counter() - start
    v, cold, warm = (statistics.median(t) for t in (vis_times, cold_times, warm_times))
    print(f"visualization: {v:.2f} s ({1000 * v / units:.1f} ms/unit)")
    print(f"default checks, first call: {cold:.2f} s ({1000 * cold / units:.1f} ms/unit) -> {cold / v:.3f}x the "
          f"visualization")
    print(f"default checks, natural images' summaries kept: {warm:.2f} s ({1000 * warm / units:.1f} ms/unit) -> "
          f"{warm / v:.3f}x (goal <= 0.2x)")
    print(f"seeds check with one more seed: {seeds_time:.2f} s -> {seeds_time / v:.2f}x the visualization")
    print(f"units passing every default check: {sum(r.passed for r in results)}/{len(results)}")


if __name__ == "__main__":
    main()
