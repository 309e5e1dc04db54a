"""The figures of docs/shared_input.md, on EfficientNet-Lite0 and real photos (inputopt.data.photos).

    python examples/shared_input.py patch --steps 150      # adversarial patch: "toaster", 20 % of the image
    python examples/shared_input.py universal --steps 200  # universal perturbation, 8/255 in L-inf
    python examples/shared_input.py invert --steps 150     # feature inversion of one photo at three layers

The patch and the perturbation are trained on photo crops of six photographs and measured on the crops of two
others (chelsea and coffee: photographs they never saw). Writes patch_lite0*.png, universal_lite0*.png and
inversion_lite0.png into results/figures (--out docs/images: the docs' own figures), and prints the numbers quoted
in the docs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from lightning.pytorch import Trainer
from PIL import Image, ImageDraw
from torch.utils.data import Subset

from _quiet import quiet_lightning
from inputopt.data import PhotoCrops, photo
from inputopt.data.photos import SOURCES
from inputopt.objectives import FeatureMatch, Margin, NegativeCrossEntropy
from inputopt.optim import SignGradient
from inputopt.params import PixelImage
from inputopt.priors import TotalVariation
from inputopt.problem import Problem
from inputopt.runners.inversion import FeatureInversion
from inputopt.runners.shared import SharedInputOptimization
from inputopt.transforms.insert import AddPerturbation, PastePatch

IMAGES = Path("results/figures")  # --out docs/images for the docs' own figures
TOASTER = 859


def to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(x.clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy())


def labelled_row(images: torch.Tensor, labels: list[str], size: int = 160) -> Image.Image:
    """Images side by side, each with its label written under it."""
    tiles = [to_pil(x).resize((size, size)) for x in images]
    canvas = Image.new("RGB", (size * len(tiles) + 4 * (len(tiles) - 1), size + 22), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        canvas.paste(tile, (i * (size + 4), 0))
        draw.text((i * (size + 4) + 3, size + 5), label[:26], fill="black")
    return canvas


def photo_splits(held_out: int) -> tuple[Subset, Subset]:
    """Crops of six photographs to train on, and ``held_out`` crops of two others (chelsea, coffee) to measure on."""
    crops = PhotoCrops(scales=(1.0, 0.7, 0.5))
    held = {list(SOURCES).index(name) for name in ("chelsea", "coffee")}
    train = Subset(crops, [i for i, c in enumerate(crops.crops) if c[0] not in held])
    test = [i for i, c in enumerate(crops.crops) if c[0] in held]
    return train, Subset(crops, test[::max(1, len(test) // held_out)][:held_out])


def fit_and_show(module: SharedInputOptimization, name: str, what: str, steps: int, val_every: int | None,
                 shared_image: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Fit ``module`` with its held-out rate before, every ``val_every`` steps and at the end; print the curve;
    save ``shared_image`` as docs/images/{name}.png and six held-out crops, clean above and with the shared input
    below, each with Lite0's prediction, as docs/images/{name}_examples.png."""
    trainer = Trainer(max_steps=steps, check_val_every_n_epoch=None, val_check_interval=val_every or max(1, steps // 2),
                      num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_model_summary=False,
                      enable_progress_bar=False)
    start = time.time()
    trainer.validate(module, verbose=False)
    trainer.fit(module)
    if module.history[-1][0] != module.global_step:
        trainer.validate(module, verbose=False)
    train, test = module.dataset, module.val_dataset
    print(f"{name}: {len(train)} training crops, {len(test)} held-out crops, batch {module.batch_size}, {steps} steps "
          f"in {time.time() - start:.0f} s")
    print(f"held-out {what}, by step:", ", ".join(f"{s}: {r:.3f}" for s, r in module.history))
    names = module.class_names
    picks = list(range(0, len(test), max(1, len(test) // 6)))[:6]
    images = torch.stack([test[i][0] for i in picks])
    out = module.evaluate(images, picks)
    IMAGES.mkdir(parents=True, exist_ok=True)
    to_pil(shared_image(module.shared()[0])).resize((200, 200), Image.NEAREST).save(IMAGES / f"{name}.png")
    rows = [labelled_row(images, [names[c] for c in out["clean"].tolist()]),
            labelled_row(out["images"], [names[c] for c in out["adversarial"].tolist()])]
    figure = Image.new("RGB", (rows[0].width, rows[0].height * 2 + 6), "white")
    figure.paste(rows[0], (0, 0))
    figure.paste(rows[1], (0, rows[0].height + 6))
    figure.save(IMAGES / f"{name}_examples.png")
    print("examples (clean -> with it):", [f"{names[a]} -> {names[b]}" for a, b in
                                           zip(out["clean"].tolist(), out["adversarial"].tolist())])


def patch(steps: int, batch_size: int, held_out: int, val_every: int | None = None) -> None:
    train, test = photo_splits(held_out)
    module = SharedInputOptimization(Problem("efficientnet_lite0", NegativeCrossEntropy(target=TOASTER)),
                                     PastePatch(area=0.2, shape="square", scale=(0.9, 1.1), degrees=20), train, test,
                                     optimizer=partial(torch.optim.Adam, lr=0.05), batch_size=batch_size,
                                     val_batch_size=held_out)
    fit_and_show(module, "patch_lite0", "targeted success (toaster)", steps, val_every, lambda x: x)


def universal(steps: int, batch_size: int, held_out: int, val_every: int | None = None, eps: float = 8 / 255) -> None:
    train, test = photo_splits(held_out)
    problem = Problem("efficientnet_lite0", Margin(), param=PixelImage(std=0, eps=eps, norm="Linf"))
    module = SharedInputOptimization(problem, AddPerturbation(clamp=(0.0, 1.0)), train, test,
                                     optimizer=partial(SignGradient, lr=eps / 10), batch_size=batch_size,
                                     val_batch_size=held_out)
    # shown as 0.5 + δ / (2 max|δ|): grey is unchanged
    fit_and_show(module, "universal_lite0", f"fooling rate (eps {eps:.4f})", steps, val_every,
                 lambda d: 0.5 + d / (2 * d.abs().max().clamp_min(1e-12)))


def invert(steps: int, size: int, tv: float) -> None:
    image = photo("chelsea", size)
    layers = {"early": "blocks.1", "middle": "blocks.3", "late": "blocks.5"}
    results = [image]
    for name, layer in layers.items():
        start = time.time()
        problem = Problem("efficientnet_lite0", FeatureMatch(layer), [TotalVariation(weight=tv)] if tv else [])
        runner = FeatureInversion(problem, [(image, 0)], steps=steps,
                                  optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 0.05}}, batch_size=1)
        Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(runner, verbose=False)
        results.append(runner.inversions[0])
        score = runner.trainer.callback_metrics["feature_match"].item()
        print(f"inversion of {layer} ({name}): {steps} steps in {time.time() - start:.0f} s, relative squared "
              f"feature distance {-score:.3f}")
    labels = ["photo"] + [f"{layer} ({name})" for name, layer in layers.items()]
    IMAGES.mkdir(parents=True, exist_ok=True)
    labelled_row(torch.stack(results), labels).save(IMAGES / "inversion_lite0.png")


if __name__ == "__main__":
    quiet_lightning()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["patch", "universal", "invert"])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--held_out", type=int, default=54, help="held-out crops (of chelsea and coffee)")
    parser.add_argument("--val_every", type=int, default=None,
                        help="steps between two measures of the held-out success (default: half the steps)")
    parser.add_argument("--eps", type=float, default=8 / 255, help="L-inf budget of the universal perturbation")
    parser.add_argument("--size", type=int, default=224, help="photo size for the inversion")
    parser.add_argument("--tv", type=float, default=0.0, help="total-variation weight of the inversion")
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the figures go (the docs' own: docs/images)")
    args = parser.parse_args()
    IMAGES = args.out
    torch.manual_seed(0)
    if args.what == "patch":
        patch(args.steps, args.batch_size, args.held_out, args.val_every)
    elif args.what == "universal":
        universal(args.steps, args.batch_size, args.held_out, args.val_every, args.eps)
    else:
        invert(args.steps, args.size, args.tv)
