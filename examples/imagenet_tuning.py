"""The sweep behind the defaults of examples/imagenet_methods.py: learning rates, transforms, decay, prior weights.

Every variant optimizes the same ten classes of EfficientNet-Lite0 (see imagenet_methods.py) and is scored
with the same metrics; the table it prints is what chose the methods' settings (docs/feature_visualization.md
quotes it). Made for a GPU (about 3 minutes on one H200 at 224 px); on a CPU use --size 128 and --only.

    python examples/imagenet_tuning.py --size 224 --out results/imagenet_tuning
    python examples/imagenet_tuning.py --size 128 --steps 64 --only "Fourier lr 0.1" --device cpu

Writes ``<out>/tuning.md`` and the images as uint8 tensors, ``<out>/images_<k>.pt`` (``{name: (10, 3, H, W)}``,
eight variants a file).
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from imagenet_methods import HEADER, Method, Scorer, row, run_method, setup, transforms

from inputopt.params import FourierImage, MacoImage, PixelImage
from inputopt.priors import MultiScaleEdgeEnergy
from inputopt.transforms import Jitter, Pad, RandomRotate, RandomScale


def variants(size: int) -> list[Method]:
    k = size / 224
    lucent = transforms(size)
    strong = [Pad(round(16 * k), value=0.5), Jitter(round(16 * k)), RandomScale(0.8, 1.2), RandomRotate(10),
              Jitter(round(8 * k))]
    zoom = [Jitter(round(8 * k)), RandomScale(1.0, 1.6), RandomRotate(10), Jitter(round(4 * k))]
    fourier = partial(FourierImage, decorrelate=True, sigmoid=(0, 1))
    pixels = partial(PixelImage, mean=0.5, std=0.01, clamp=(0, 1))

    def edge(w):
        return [MultiScaleEdgeEnergy(w, reduction="mean")]

    return [
        Method("Fourier lr 0.05", fourier, lucent, lr=0.05),
        Method("Fourier lr 0.1", fourier, lucent, lr=0.1),
        Method("Fourier lr 0.2", fourier, lucent, lr=0.2),
        Method("Fourier lr 0.05 512 steps", fourier, lucent, lr=0.05, steps=512),
        Method("Fourier decay 1.5 lr 0.1", partial(fourier, decay_power=1.5), lucent, lr=0.1),
        Method("Fourier strong T lr 0.1", fourier, strong, lr=0.1),
        Method("Fourier zoom T lr 0.1", fourier, zoom, lr=0.1),
        Method("Fourier RGB lr 0.1", partial(FourierImage, sigmoid=(0, 1)), lucent, lr=0.1),
        Method("Fourier + prior 30", fourier, lucent, edge(30), lr=0.1),
        Method("Fourier + prior 100", fourier, lucent, edge(100), lr=0.1),
        Method("Fourier + prior 300", fourier, lucent, edge(300), lr=0.1),
        Method("Fourier + prior 1000", fourier, lucent, edge(1000), lr=0.1),
        Method("Fourier strong T + prior 100", fourier, strong, edge(100), lr=0.1),
        Method("MACO lr 0.05", MacoImage, lucent, lr=0.05),
        Method("MACO lr 0.2", MacoImage, lucent, lr=0.2),
        Method("MACO lr 1.0", MacoImage, lucent, lr=1.0),
        Method("MACO zoom T lr 0.2", MacoImage, zoom, lr=0.2),
        Method("MACO zoom T lr 1.0", MacoImage, zoom, lr=1.0),
        Method("MACO strong T lr 0.2", MacoImage, strong, lr=0.2),
        Method("MACO RGB lr 0.2", partial(MacoImage, decorrelate=False), lucent, lr=0.2),
        Method("MACO + prior 100 lr 0.2", MacoImage, lucent, edge(100), lr=0.2),
        Method("MACO + prior 1000 lr 0.2", MacoImage, lucent, edge(1000), lr=0.2),
        Method("pixels lr 0.01", pixels, lr=0.01),
        Method("pixels lr 0.05", pixels, lr=0.05),
        Method("pixels + prior 100 lr 0.05", pixels, [], edge(100), lr=0.05),
        Method("pixels + prior 1000 lr 0.05", pixels, [], edge(1000), lr=0.05),
        Method("pixels + prior 10000 lr 0.05", pixels, [], edge(10000), lr=0.05),
        Method("pixels + T + prior 1000 lr 0.05", pixels, lucent, edge(1000), lr=0.05),
        Method("pixels + prior 150528 lr 0.1 (design)", partial(PixelImage, mean=0.5, std=0.01), [], edge(150528),
               lr=0.1, steps=250),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--only", nargs="*", default=None)
    args, device, out, lite0, lite1, normalize = setup(parser, "results/imagenet_tuning")
    scorer = Scorer(lite0, lite1, normalize, args.size, device)
    lines = [f"EfficientNet-Lite0, {args.size} px, Adam, device {device.type}; photo crops: hf {scorer.photo_hf:.3f}, "
             f"plaus {scorer.photo_plaus:.3f}", "", HEADER, "|" + "---|" * 10]
    print("\n".join(lines), flush=True)
    chunk: dict[str, torch.Tensor] = {}
    files = 0
    for method in variants(args.size):
        if args.only and method.name not in args.only:
            continue
        images, per_step = run_method(method, lite0, normalize, args.size, args.steps, device)
        values = scorer(images)
        values["ms/step"] = per_step * 1000
        lines.append(row(method, args.steps, values))
        print(lines[-1], flush=True)
        chunk[method.name] = (images.cpu() * 255).round().to(torch.uint8)
        if len(chunk) == 8:
            torch.save(chunk, out / f"images_{files}.pt")
            chunk, files = {}, files + 1
        (out / "tuning.md").write_text("\n".join(lines) + "\n")
    if chunk:
        torch.save(chunk, out / f"images_{files}.pt")


if __name__ == "__main__":
    main()
