"""The docs' ImageNet figures, drawn from the images that imagenet_methods.py and imagenet_paper_towel.py saved.

- ``docs/images/gallery_imagenet.png``: every method (rows) on the ten classes (columns), each row titled
  with its metrics from ``results.json``;
- ``docs/images/imagenet_classes.png``: the recommended method's ten images, titled with the class and what
  EfficientNet-Lite1 (independent) predicts (the README's first picture);
- ``docs/images/imagenet_paper_towel.png``: unit 700 "paper towel", the design's setting and the
  recommended method, four seeds each, titled with Lite1's prediction.

    python examples/imagenet_methods.py --out results/methods224          # on a GPU, or patiently on a CPU
    python examples/imagenet_paper_towel.py --out results/towel224
    python examples/imagenet_figures.py --methods results/methods224 --towel results/towel224 --docs docs/images
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from imagenet_methods import CLASSES, IMAGENET_MEAN, IMAGENET_STD, lite  # noqa: E402
from imagenet_paper_towel import imagenet_classes  # noqa: E402

from inputopt.networks import Normalize  # noqa: E402


def show(ax, image: torch.Tensor, title: str, size: float = 7) -> None:
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(title, fontsize=size)
    ax.axis("off")


def gallery(images: dict, results: dict, out: Path) -> None:
    names = list(images)
    fig, axes = plt.subplots(len(names), 10, figsize=(15, 1.75 * len(names)))
    for r, name in enumerate(names):
        v = results[name]
        for c, (unit, label) in enumerate(CLASSES.items()):
            show(axes[r, c], images[name][c].float() / 255, label if r == 0 else "")
        axes[r, 0].text(-0.05, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
        axes[r, 4].text(1.0, -0.04, f"Lite1 top-1 {v['L1 top-1']}/10, top-5 {v['L1 top-5']}/10 · ratio {v['ratio']:.1f}"
                        f" · hf {v['hf']:.3f} · plaus {v['plaus']:.3f} · {v['ms/step']:.0f} ms/step",
                        transform=axes[r, 4].transAxes, ha="center", va="top", fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.995, top=0.97, bottom=0.01, wspace=0.03, hspace=0.22)
    fig.savefig(out, dpi=72)
    plt.close(fig)


@torch.no_grad()
def classes(images: torch.Tensor, out: Path, lite1, normalize, names) -> None:
    x = images.float() / 255
    p = lite1(normalize(x)).softmax(1)
    fig, axes = plt.subplots(2, 5, figsize=(12.5, 5.6))
    for ax, image, (unit, label), probs in zip(axes.flat, x, CLASSES.items(), p):
        top = int(probs.argmax())
        show(ax, image, f"{label}\nLite1: {names[top]} ({probs[top]:.2f})", 9)
    fig.subplots_adjust(left=0.005, right=0.995, top=0.92, bottom=0.005, wspace=0.03, hspace=0.2)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def paper_towel(images: dict, report: dict, out: Path) -> None:
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.9))
    for r, (name, x) in enumerate(images.items()):
        if name.startswith("pixels"):  # the design's display: 0.5 + 0.1·(x − mean)/std
            x = 0.5 + 0.1 * (x - x.mean((1, 2, 3), keepdim=True)) / x.std((1, 2, 3), keepdim=True)
        for c in range(x.shape[0]):
            info = report[name][c]
            show(axes[r, c], x[c], f"Lite1: {info['lite1']} (p700 {info['lite1_p700']:.2f})", 8)
        axes[r, 0].text(-0.04, 0.5, name, transform=axes[r, 0].transAxes, rotation=90, ha="right", va="center",
                        fontsize=9)
    fig.subplots_adjust(left=0.04, right=0.995, top=0.95, bottom=0.005, wspace=0.03, hspace=0.12)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="results/methods224")
    parser.add_argument("--towel", default="results/towel224")
    parser.add_argument("--docs", default="results/figures", help="where the figures go (the docs' own: docs/images)")
    args = parser.parse_args()
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    images = torch.load(Path(args.methods) / "images.pt")
    results = json.loads((Path(args.methods) / "results.json").read_text())["results"]
    gallery(images, results, docs / "gallery_imagenet.png")
    lite1 = lite("efficientnet_lite1")
    classes(images["Fourier + T"], docs / "imagenet_classes.png", lite1, Normalize(IMAGENET_MEAN, IMAGENET_STD),
            imagenet_classes())
    towel = Path(args.towel)
    paper_towel(torch.load(towel / "paper_towel.pt"), json.loads((towel / "paper_towel.json").read_text()),
                docs / "imagenet_paper_towel.png")
    print(f"wrote {docs}/gallery_imagenet.png, imagenet_classes.png, imagenet_paper_towel.png")


if __name__ == "__main__":
    main()
