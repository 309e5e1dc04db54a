"""Pixels, Fourier spectra, Fourier spectra with transforms, and MACO, side by side: a picture for the docs.

Each figure has one row per method, optimized with the same objective, optimizer and number of steps,
and one column per unit:

1. pixel: ``PixelImage``, the images' pixels are the trainable tensor;
2. Fourier: ``FourierImage``, the images' 1/f^p-scaled spectra are;
3. Fourier + transforms: the same, each step scoring a randomly jittered, scaled and rotated copy;
4. MACO + transforms: ``MacoImage``, only the phases of the spectra are (their magnitude is the shipped
   natural-image default), with the transforms of row 3.

Figures (rows top to bottom in the order above):

- ``docs/images/params_digits.png``: the ten class logits of the shipped digits model, with the edge
  prior, 100 steps; pixels as in configs/digits.yaml, Fourier as in configs/digits_fourier.yaml.
  Printed: how many images the independent model digits_b classifies as their class.
- ``docs/images/params_vgg16_random.png``: channels 0, 2, 3 and 4 of ``features.10`` (conv3_1) of a VGG16
  with random weights (no download), 3x128x128 images, 64 steps. Printed: the objective per image.
  (Channel 1 of this random network barely responds to a spectrum within 64 steps and stays grey.)

    python examples/params_gallery.py                 # both figures, a few minutes on one CPU thread
    python examples/params_gallery.py --only digits   # seconds
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from _quiet import quiet_lightning
from inputopt import (
    ChannelSum,
    FourierImage,
    InputOptimization,
    Jitter,
    MacoImage,
    MultiScaleEdgeEnergy,
    NetworkSpec,
    Pad,
    PixelImage,
    Problem,
    RandomRotate,
    RandomScale,
    UnitActivation,
)
from inputopt.results import save_grid
from inputopt.zoo import digits_cnn

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def run(steps: int, lr: float, network: str | NetworkSpec, objective, image_shape=None, **problem) -> InputOptimization:
    module = InputOptimization(Problem(network, objective, **problem), image_shape=image_shape,
                               optimizer=partial(torch.optim.Adam, lr=lr))
    Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(module)
    return module


def digits_methods() -> dict:
    """(param, transforms) per method: the main job's pixels, configs/digits_fourier.yaml's spectra,
    configs/digits_maco.yaml's phases."""
    fourier = partial(FourierImage, decay_power=1.5, mean=0.5, std=0.01, clamp=(0, 1))
    return {
        "pixel": (PixelImage(mean=0.5, std=0.01), []),
        "Fourier": (fourier(), []),
        "Fourier + transforms": (fourier(), [Jitter(2), RandomScale(0.95, 1.05), RandomRotate(5)]),
        "MACO + transforms": (MacoImage(), [Jitter(2), RandomScale(0.95, 1.05), RandomRotate(5)]),
    }


def vgg16_methods() -> dict:
    fourier = partial(FourierImage, decorrelate=True, sigmoid=(0, 1))
    return {
        "pixel": (PixelImage(mean=0.5, clamp=(0, 1)), []),
        "Fourier": (fourier(), []),
        "Fourier + transforms": (fourier(), [Pad(8, value=0.5), Jitter(8), RandomScale(0.9, 1.1), RandomRotate(10)]),
        "MACO + transforms": (MacoImage(), [Pad(8, value=0.5), Jitter(8), RandomScale(0.9, 1.1), RandomRotate(10)]),
    }


def digits_figure(out: Path, steps: int) -> None:
    judge = digits_cnn("b")
    rows = []
    print(f"digits: class logits 0-9 of digits (model a), edge prior 0.3, Adam lr 0.05, {steps} steps")
    for name, (param, transforms) in digits_methods().items():
        start = time.perf_counter()
        module = run(steps, 0.05, network="digits", objective=UnitActivation(None, unit=list(range(10))),
                     priors=[MultiScaleEdgeEnergy(0.3)], param=param, transforms=transforms,
                     image_shape=(1, 32, 32))
        x = module.images()
        with torch.no_grad():
            correct = int((judge(x).argmax(1) == torch.arange(10)).sum())
        rows.append(x)
        print(f"  {name:21} digits_b: {correct:2}/10 as their class, pixel range [{x.min():.2f}, {x.max():.2f}], "
              f"{time.perf_counter() - start:.1f} s")
    path = save_grid(torch.cat(rows), out / "params_digits.png", display="clamp", nrow=10, scale=4)
    print(f"  wrote {path} (rows: {', '.join(digits_methods())}; columns: digits 0-9)")


def vgg16_figure(out: Path, steps: int, channels: list[int]) -> None:
    rows = []
    print(f"vgg16 (random weights): channels {channels} of features.10, 3x128x128, Adam lr 0.05, {steps} steps")
    for name, (param, transforms) in vgg16_methods().items():
        start = time.perf_counter()
        module = run(steps, 0.05, network=NetworkSpec("vgg16", mean=IMAGENET_MEAN, std=IMAGENET_STD),
                     objective=ChannelSum("features.10", channel=channels), param=param, transforms=transforms,
                     image_shape=(3, 128, 128))
        x = module.images()
        with torch.no_grad():  # the objective on the images themselves, without transforms
            score = module.objective(module.activations(x))
        rows.append(x)
        print(f"  {name:21} objective per image: {[round(s) for s in score.tolist()]}, "
              f"{time.perf_counter() - start:.1f} s")
    path = save_grid(torch.cat(rows), out / "params_vgg16_random.png", display="clamp", nrow=len(channels))
    print(f"  wrote {path} (rows: {', '.join(vgg16_methods())}; columns: channels {channels})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["digits", "vgg16"], default=None, help="make one figure only")
    parser.add_argument("--out", type=Path, default=Path("results/figures"), help="the docs' own: docs/images")
    parser.add_argument("--digits-steps", type=int, default=100)
    parser.add_argument("--vgg16-steps", type=int, default=64)
    parser.add_argument("--channels", type=int, nargs="+", default=[0, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_lightning()
    start = time.perf_counter()
    if args.only in (None, "digits"):
        digits_figure(args.out, args.digits_steps)
    if args.only in (None, "vgg16"):
        vgg16_figure(args.out, args.vgg16_steps, args.channels)
    print(f"wall time: {time.perf_counter() - start:.1f} s on {torch.get_num_threads()} thread(s)")


if __name__ == "__main__":
    main()
