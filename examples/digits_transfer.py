"""Do class visualizations of the shipped digits model transfer to an independently trained one?

The main job's settings (configs/digits.yaml) for several seeds, with and without the edge-energy prior;
prints how many of the ten visualizations each model classifies as their class.

    python examples/digits_transfer.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch
from lightning.pytorch import Trainer

from inputopt import InputOptimization, MultiScaleEdgeEnergy, UnitActivation
from inputopt.zoo import digits_cnn


def visualize(weight: float, seed: int) -> torch.Tensor:
    priors = [MultiScaleEdgeEnergy(weight)] if weight else []
    module = InputOptimization("digits", UnitActivation(None, unit=list(range(10))), priors, image_shape=(1, 32, 32),
                               init_mean=0.5, init_std=0.01, seed=seed, optimizer=partial(torch.optim.Adam, lr=0.05))
    Trainer(max_steps=100, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(module)
    return module.input.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--weight", type=float, default=0.3, help="weight of the edge-energy prior")
    args = parser.parse_args()
    models = {"a": digits_cnn("a"), "b": digits_cnn("b")}
    print("seed | prior: a   b  | no prior: a   b  | seconds per run")
    for seed in args.seeds:
        counts, seconds = [], []
        for weight in (args.weight, 0.0):
            start = time.perf_counter()
            x = visualize(weight, seed)
            seconds.append(time.perf_counter() - start)
            counts += [int((m(x).argmax(1) == torch.arange(10)).sum()) for m in models.values()]
        print(f"{seed:4} | {counts[0]:6}/10 {counts[1]:2}/10 | {counts[2]:9}/10 {counts[3]:2}/10 | "
              f"{seconds[0]:.2f}, {seconds[1]:.2f}")


if __name__ == "__main__":
    main()
