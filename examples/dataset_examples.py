"""Optimized images next to dataset examples: channels of the digits model's features.4.

For each channel: its feature visualization (ChannelSum, edge-energy prior weight 0.3, Adam lr 0.05, 100
steps: the settings of configs/digits.yaml and of the sweep figure in docs/sweeps.md), then its top-k
held-out digits (DatasetExamples over the 450 test images), each with the 8×8-pixel receptive field of its
maximal position outlined in red. Prints each channel's activation ratio (the visualization's maximum over
positions over the best digit's) and high-frequency energy fraction, and the images' diversity.

    python examples/dataset_examples.py                      # writes results/figures/digits_dataset_examples.png
    python examples/dataset_examples.py --out docs/images/digits_dataset_examples.png   # the docs' figure
    python examples/dataset_examples.py --channels 0 1 2 --k 5 --out /tmp/examples.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
from functools import partial

import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from torchvision.utils import make_grid, save_image

from _quiet import quiet_lightning
from inputopt import ChannelSum, InputOptimization
from inputopt.data import Digits
from inputopt.problem import Problem
from inputopt.runners.examples import DatasetExamples
from inputopt.functional.display import to_display
from inputopt.metrics import Diversity, activation_ratio, high_frequency_energy, unit_scores
from inputopt.params import PixelImage
from inputopt.priors import MultiScaleEdgeEnergy
from inputopt.problem import Problem

LAYER = "features.4"
RECEPTIVE_FIELD = 8  # 3x3 conv, 2x2 max-pool, 3x3 conv: 3 + 1 + 2·2 pixels
QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


def visualize(channels: list[int], steps: int) -> InputOptimization:
    module = InputOptimization(Problem("digits", ChannelSum(LAYER, channel=channels),
                                       [MultiScaleEdgeEnergy(weight=0.3)], param=PixelImage(mean=0.5, std=0.01)),
                               image_shape=(1, 32, 32), optimizer=partial(torch.optim.Adam, lr=0.05))
    Trainer(max_steps=steps, **QUIET).fit(module)
    return module


def outlined(image: torch.Tensor, position: list[int] | None, map_shape: list[int]) -> torch.Tensor:
    """A grey image as RGB in [0, 1], with the receptive field around ``position`` outlined in red."""
    rgb = image.clamp(0, 1).expand(3, -1, -1).clone()
    if position is None:
        return rgb
    height, width = image.shape[-2:]
    cy, cx = [(p + 0.5) * size / cells for p, size, cells in zip(position, (height, width), map_shape)]
    top = min(max(round(cy - RECEPTIVE_FIELD / 2), 0), height - RECEPTIVE_FIELD)
    left = min(max(round(cx - RECEPTIVE_FIELD / 2), 0), width - RECEPTIVE_FIELD)
    bottom, right = top + RECEPTIVE_FIELD - 1, left + RECEPTIVE_FIELD - 1
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1)
    rgb[:, top, left:right + 1] = red
    rgb[:, bottom, left:right + 1] = red
    rgb[:, top:bottom + 1, left] = red
    rgb[:, top:bottom + 1, right] = red
    return rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[0, 3, 6, 9, 12, 15, 18, 21])
    parser.add_argument("--k", type=int, default=8, help="dataset examples per channel")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--out", default="results/figures/digits_dataset_examples.png",
                        help="the figure (the docs' own: docs/images/digits_dataset_examples.png)")
    args = parser.parse_args()
    quiet_lightning()

    module = visualize(args.channels, args.steps)
    optimized = module.images()
    runner = DatasetExamples(Problem("digits", ChannelSum(LAYER, channel=args.channels)), Digits("test"), k=args.k,
                             batch_size=150)
    Trainer(**QUIET).test(runner, verbose=False)
    results = runner.results

    with torch.no_grad():
        acts = module.activations(optimized, [LAYER])[LAYER]
    scores = unit_scores(acts, args.channels)[0].diagonal()  # each image on its own channel
    dataset_max = torch.tensor([row[0] for row in results["values"]])
    ratios = activation_ratio(scores, dataset_max)
    energy = high_frequency_energy(optimized)
    diversity = Diversity(module.network, LAYER)
    diversity.update(optimized)
    print(f"{LAYER} of digits against {len(runner.dataset)} held-out digits, {args.steps} steps")
    print("channel  activation ratio  high-frequency energy  top-k labels")
    for row, channel in enumerate(args.channels):
        labels = [int(runner.dataset[i][1]) for i in results["indices"][row]]
        print(f"{channel:7}  {ratios[row].item():16.2f}  {energy[row].item():21.2f}  {labels}")
    print(f"diversity of the optimized images in {LAYER}: {diversity.compute().item():.3f}")

    tiles = []
    for row in range(len(args.channels)):
        tiles.append(to_display(optimized[row:row + 1], "std")[0].expand(3, -1, -1))
        for index, position in zip(results["indices"][row], results["positions"][row]):
            tiles.append(outlined(runner.dataset[index][0], position, results["map_shape"]))
    images = F.interpolate(torch.stack(tiles), scale_factor=args.scale, mode="nearest")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(images, nrow=args.k + 1, padding=2, pad_value=1.0), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
