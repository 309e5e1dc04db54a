"""Optimized images next to dataset examples on a real network: channels of EfficientNet-Lite0's ``blocks.3``.

For each channel: its feature visualization with the recommended method of configs/imagenet_classes.yaml
(``FourierImage`` with colour decorrelation and a sigmoid, the robustness transforms Pad, Jitter, RandomScale,
RandomRotate, Jitter, Adam lr 0.1) on the ``ChannelSum`` objective, at ``--size`` px (default 128, smaller
than the network's 224 to fit a 2-core CPU), then its top-k crops of the packaged photographs
(``DatasetExamples`` over ``PhotoCrops``, the same size), ranked by the channel's maximum over positions.
Prints each channel's activation ratio (the visualization's maximum over the best crop's).

    python examples/imagenet_examples_figure.py          # writes results/figures/imagenet_examples.png
    python examples/imagenet_examples_figure.py --out docs/images/imagenet_examples.png   # the docs' figure
    python examples/imagenet_examples_figure.py --layer blocks.2 --channels 0 1 2 --steps 64 --out /tmp/ex.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
from functools import partial

import torch
from lightning.pytorch import Trainer, seed_everything
from torchvision.utils import make_grid, save_image

from _quiet import quiet_lightning
from inputopt import ChannelSum, InputOptimization, Problem
from inputopt.data.photos import PhotoCrops
from inputopt.metrics import activation_ratio, unit_scores
from inputopt.params import FourierImage
from inputopt.problem import Problem
from inputopt.runners.examples import DatasetExamples
from inputopt.transforms import Jitter, Pad, RandomRotate, RandomScale

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="blocks.3")
    parser.add_argument("--channels", type=int, nargs="+", default=[0, 10, 20, 30, 40])
    parser.add_argument("--k", type=int, default=5, help="dataset examples per channel")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.35])
    parser.add_argument("--out", default="results/figures/imagenet_examples.png")
    args = parser.parse_args()
    quiet_lightning()
    seed_everything(0, verbose=False)
    pad = args.size // 14  # 16 px at 224, as in the config
    problem = Problem(
        "efficientnet_lite0", ChannelSum(args.layer, channel=args.channels),
        param=FourierImage(decay_power=1.0, decorrelate=True, mean=0.0, std=0.01, sigmoid=(0, 1)),
        transforms=[Pad(width=pad, value=0.5), Jitter(pixels=pad), RandomScale(low=0.8, high=1.2),
                    RandomRotate(degrees=10), Jitter(pixels=pad // 2)])
    module = InputOptimization(problem, image_shape=(3, args.size, args.size),
                               optimizer=partial(torch.optim.Adam, lr=0.1))
    Trainer(max_steps=args.steps, **QUIET).fit(module)
    optimized = module.images()

    crops = PhotoCrops(size=args.size, scales=tuple(args.scales))
    runner = DatasetExamples(Problem("efficientnet_lite0", ChannelSum(args.layer, channel=args.channels)), crops, k=args.k,
                             batch_size=32)
    Trainer(**QUIET).test(runner, verbose=False)
    results = runner.results
    with torch.no_grad():
        acts = module.activations(optimized, [args.layer])[args.layer]
    scores = unit_scores(acts, args.channels)[0].diagonal()
    best = torch.tensor([row[0] for row in results["values"]])
    ratios = activation_ratio(scores, best)
    print(f"EfficientNet-Lite0 {args.layer}, {args.size} px, {args.steps} steps; {len(crops)} crops of "
          f"{len(crops.sources)} photographs (scales {args.scales})")
    print("channel  visualization max  best crop max  activation ratio")
    for row, channel in enumerate(args.channels):
        print(f"{channel:7}  {scores[row].item():17.2f}  {best[row].item():13.2f}  {ratios[row].item():16.2f}")

    tiles = []
    for row in range(len(args.channels)):
        tiles.append(optimized[row].clamp(0, 1))
        tiles.extend(crops[index][0] for index in results["indices"][row])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(torch.stack(tiles), nrow=args.k + 1, padding=4, pad_value=1.0), args.out)
    print(f"wrote {args.out} (rows: channels {args.channels}; first column the visualization, then the top "
          f"{args.k} crops)")


if __name__ == "__main__":
    main()
