"""The digits ViT against the digits CNN: accuracy, class visualizations and their transfer, patch-grid artefacts,
dataset examples. The figures of docs/transformers.md.

1. Held-out accuracy of ``digits`` (CNN), ``digits_b`` (CNN, the independent judge) and ``digits_vit``.
2. Class visualizations of the ten logits of each source model (100 steps, Adam lr 0.05, the main job's
   settings, configs/digits.yaml and configs/digits_fourier.yaml) with five methods, for ``--seeds``; printed:
   how many of the ten images ``digits_b`` (and the other source model) classifies as their class, and the
   patch-grid ratio: the mean absolute difference between neighbouring pixels across the 4-pixel patch
   borders of the ViT over the same inside the patches (1: no grid; > 1: the patch grid shows), and the
   periodic fraction: the share of the image's variance that repeats in every 4x4 patch, and the mean logit
   of each image's own class in the source model.
3. Dataset examples of a few units (top 8 of the 450 held-out digits): the layer's features 0..5, and how
   many of each unit's 8 examples share their most common label (purity).

Figures, under results/figures (``--out docs/images``: the docs' own): ``transformers_digits_vit.png`` (rows: the CNN with pixels + edge prior and with Fourier +
transforms + edge prior, then the ViT with the same; seed 0), ``transformers_digits_vit_std.png``
(the ViT rows, contrast-normalized per image), ``transformers_examples.png`` (dataset examples of
6 features of the ViT's last block, 4x4-pixel patches cropped with their neighbours: 12 pixels).

    python examples/digits_vit.py --seeds 0 1 2        # a few minutes on one CPU thread
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from _quiet import quiet_lightning
from inputopt import (ChannelSum, DatasetExamples, FourierImage, InputOptimization, Jitter, MultiScaleEdgeEnergy,
                      PixelImage, Problem, RandomRotate, RandomScale, UnitActivation)
from inputopt.data import Digits
from inputopt.networks import build_network
from inputopt.problem import Problem
from inputopt.results import save_grid
from inputopt.zoo.digits import load_digits_split

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


def methods() -> dict:
    """(param, transforms, edge prior weight) per method."""
    fourier = partial(FourierImage, decay_power=1.5, mean=0.5, std=0.01, clamp=(0, 1))
    pixels = partial(PixelImage, mean=0.5, std=0.01)
    moves = partial(lambda: [Jitter(2), RandomScale(0.95, 1.05), RandomRotate(5)])
    return {
        "pixels": (pixels, [], 0.0),
        "pixels + edge prior": (pixels, [], 0.3),
        "pixels + edge prior + transforms": (pixels, moves, 0.3),
        "Fourier + transforms": (fourier, moves, 0.0),
        "Fourier + transforms + edge prior": (fourier, moves, 0.3),
    }


def visualize(network: str, make_param, make_transforms, weight: float, seed: int, steps: int) -> torch.Tensor:
    transforms = make_transforms() if callable(make_transforms) else make_transforms
    module = InputOptimization(Problem(network, UnitActivation(None, unit=list(range(10))),
                                       [MultiScaleEdgeEnergy(weight)] if weight else [], param=make_param(),
                                       transforms=transforms, seed=seed), image_shape=(1, 32, 32),
                               optimizer=partial(torch.optim.Adam, lr=0.05))
    Trainer(max_steps=steps, **QUIET).fit(module)
    return module.images()


def periodic_fraction(x: torch.Tensor, patch: int = 4) -> float:
    """The share of an image's variance repeated in every patch: the mean ``patch x patch`` tile over the grid,
    tiled back, over the whole (both without the image mean); the mean over images. A picture made of one
    pattern stamped on every patch scores 1; the held-out digits score 0.0003."""
    centred = x - x.mean((-2, -1), keepdim=True)
    tiles = centred.unflatten(-2, (-1, patch)).unflatten(-1, (-1, patch))  # (..., gh, p, gw, p)
    mean_tile = tiles.mean((-4, -2), keepdim=True).expand_as(tiles).flatten(-4, -3).flatten(-2, -1)
    return float((mean_tile.pow(2).sum((-2, -1)) / centred.pow(2).sum((-2, -1)).clamp_min(1e-12)).mean())


def grid_ratio(x: torch.Tensor, patch: int = 4) -> float:
    """Mean |difference| of horizontally and vertically neighbouring pixels across patch borders over inside them."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs()
    border = torch.zeros(x.shape[-1] - 1, dtype=torch.bool)
    border[patch - 1::patch] = True
    across = torch.cat([dx[..., border].flatten(), dy[..., border, :].flatten()]).mean()
    inside = torch.cat([dx[..., ~border].flatten(), dy[..., ~border, :].flatten()]).mean()
    return float(across / inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("results/figures"),
                        help="where the figures go (the docs' own: --out docs/images)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    quiet_lightning()
    start = time.perf_counter()
    models = {name: build_network(name) for name in ("digits", "digits_b", "digits_vit")}
    images, labels = load_digits_split("test")
    with torch.no_grad():
        for name, model in models.items():
            accuracy = (model(images).argmax(1) == labels).float().mean().item()
            print(f"{name:10} held-out accuracy {accuracy:.4f} ({round(accuracy * len(labels))}/{len(labels)})")
    print(f"held-out digits: grid ratio {grid_ratio(images):.2f}, periodic {periodic_fraction(images):.3f}")

    print(f"\nclass visualizations, {args.steps} steps, seeds {args.seeds}: recognized as their class by "
          f"digits_b / by the other source model; patch-grid ratio (mean over seeds)")
    rows = []
    for source, other in (("digits", "digits_vit"), ("digits_vit", "digits")):
        for method, (param, transforms, weight) in methods().items():
            judged, crossed, ratios, periodic, logits = 0, 0, [], [], []
            for seed in args.seeds:
                x = visualize(source, param, transforms, weight, seed, args.steps)
                with torch.no_grad():
                    judged += int((models["digits_b"](x).argmax(1) == torch.arange(10)).sum())
                    crossed += int((models[other](x).argmax(1) == torch.arange(10)).sum())
                    logits.append(models[source](x).diag().mean().item())
                ratios.append(grid_ratio(x))
                periodic.append(periodic_fraction(x))
                if seed == args.seeds[0] and method in ("pixels + edge prior", "Fourier + transforms + edge prior"):
                    rows.append(x)
            n = 10 * len(args.seeds)
            print(f"  {source:10} {method:34} digits_b {judged:2}/{n}  {other} {crossed:2}/{n}  "
                  f"grid ratio {sum(ratios) / len(ratios):.2f}  periodic {sum(periodic) / len(periodic):.3f}  "
                  f"own logit {sum(logits) / len(logits):.1f}")
    path = save_grid(torch.cat(rows), args.out / "transformers_digits_vit.png", display="clamp", nrow=10, scale=4)
    print(f"  wrote {path} (rows: digits pixels + edge prior, digits Fourier + transforms + edge prior, then "
          f"digits_vit the same; columns: digits 0-9; seed {args.seeds[0]})")
    path = save_grid(torch.cat(rows[2:]), args.out / "transformers_digits_vit_std.png", display="std", nrow=10, scale=4)
    print(f"  wrote {path} (the digits_vit rows, each image shown as 0.5 + 0.1 (x - mean) / std)")

    print("\ndataset examples (450 held-out digits, top 8), units 0-5: purity = examples sharing the most common label")
    trainer = Trainer(**QUIET)
    for network, layer, crop in (("digits", "features.4", 8), ("digits_vit", "blocks.3", 12)):
        runner = DatasetExamples(Problem(network, ChannelSum(layer, channel=list(range(6)))), Digits(split="test"), k=8,
                                 crop_size=crop)
        trainer.test(runner, verbose=False)
        purity = [max((labels[row] == c).sum().item() for c in range(10)) for row in
                  (torch.tensor(r) for r in runner.results["indices"])]
        print(f"  {network:10} {layer:10} map {runner.map_shape}: purity per unit {purity} (of 8)")
        if network == "digits_vit":
            path = save_grid(runner.example_images().flatten(0, 1), args.out / "transformers_examples.png",
                             display="clamp", nrow=8, scale=4)
            print(f"  wrote {path} (rows: features 0-5 of blocks.3, best first, {crop}x{crop} crops around the patch)")
    print(f"\nwall time {time.perf_counter() - start:.0f} s on {torch.get_num_threads()} thread(s)")


if __name__ == "__main__":
    main()
