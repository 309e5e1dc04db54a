"""The gallery: pixel + edge prior, Fourier + transforms, MACO, diversity and dataset examples side by side.

Each figure has one row per unit and one column group per method, every group titled with its metrics
(``inputopt.metrics``), which are also printed:

1. pixel + edge prior: ``PixelImage`` and the multi-scale edge energy prior;
2. Fourier + transforms: ``FourierImage``, each step scoring a jittered, scaled and rotated copy;
3. MACO + transforms: ``MacoImage`` (the shipped natural-image magnitude, optimized phases), same transforms;
4. diversity: several copies of each unit, pixel + edge prior, plus the ``Diversity`` objective among
   the copies of one unit (Gram-matrix cosine in a hidden layer);
5. dataset examples: the unit's top-k natural images (``DatasetExamples``), best first.

Metrics (means over the group's images): ``ratio``, the activation ratio (the unit's score on the image
over its best natural image's; the dataset examples' own ratio is at most 1); ``hf``, the high-frequency
energy fraction (above 0.25 cycles per pixel); ``div``, the diversity (mean pairwise cosine distance of
the features) among the copies or examples of one unit, averaged over the units; on digits also
``b``, the transfer accuracy: how many images the independent network digits_b classifies as their class.

Figures:

- ``docs/images/gallery_digits.png``: the ten class logits of the shipped digits model (digits_a), the
  settings of configs/digits.yaml, configs/digits_fourier.yaml, configs/digits_maco.yaml and (diversity)
  configs/digits_diversity.yaml's term in ``features.4``; dataset examples from the 450 held-out digits.
- ``docs/images/gallery_resnet18_random.png``: channels of ``layer3`` of a ResNet-18 with random weights
  (mechanics only: no download, no meaning), 3x64x64 images; dataset examples from 64x64 crops of the
  six photographs that ship with scikit-image and scikit-learn.

Needs matplotlib (in the ``dev`` extra); imports params_gallery.py from this folder.

    python examples/gallery.py                  # both figures, about 1.5 minutes on one CPU thread
    python examples/gallery.py --only digits    # about half a minute
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from lightning.pytorch import Trainer  # noqa: E402
from _quiet import quiet_lightning  # noqa: E402
from params_gallery import IMAGENET_MEAN, IMAGENET_STD, digits_methods, run, vgg16_methods  # noqa: E402

from inputopt import ChannelSum, MultiScaleEdgeEnergy, Problem, UnitActivation  # noqa: E402
from inputopt.data import Digits  # noqa: E402
from inputopt.runners.examples import DatasetExamples  # noqa: E402
from inputopt.functional.color import natural_photographs  # noqa: E402
from inputopt.networks import NetworkSpec  # noqa: E402
from inputopt.metrics import (  # noqa: E402
    activation_ratio, diversity, high_frequency_energy, transfer_accuracy, unit_scores)
from inputopt.objectives import Diversity  # noqa: E402
from inputopt.zoo import digits_cnn  # noqa: E402

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


@dataclass
class Setting:
    """One network's gallery: what to visualize, how, and against which natural images."""

    network: str
    layer: str | None                 # the units' layer (None: the logits)
    units: list[int]
    objective: type                   # UnitActivation or ChannelSum, called as objective(layer, units)
    methods: Callable[[], dict]       # fresh {name: (param, transforms)}; the first one is diversity's
    edge_weight: float
    diversity_layer: str
    diversity_weight: float
    copies: int
    dataset: torch.utils.data.Dataset
    k: int
    steps: int
    lr: float
    image_shape: tuple[int, int, int]
    norm: dict                        # mean/std of the network's inputs, or nothing
    judge: torch.nn.Module | None = None   # an independent classifier for the transfer accuracy


def metrics(module, images: torch.Tensor, units: list[int], setting: Setting, dataset_max: torch.Tensor,
            copies: int) -> dict[str, float]:
    """The group's metrics; ``images`` hold ``copies`` consecutive images per unit, in pixel space."""
    row_units = [u for u in units for _ in range(copies)]
    key = setting.layer or ""
    with torch.no_grad():
        acts = module.activations(images, [key, setting.diversity_layer])
        scores = unit_scores(acts[key], row_units)[0].diagonal()  # each image on its own unit
        index = torch.tensor([units.index(u) for u in row_units])
        values = {"ratio": activation_ratio(scores, dataset_max[index]).mean().item(),
                  "hf": high_frequency_energy(images).mean().item()}
        if copies > 1:
            features = acts[setting.diversity_layer].unflatten(0, (len(units), copies))
            values["div"] = torch.stack([diversity(f) for f in features]).mean().item()
        if setting.judge is not None:
            accuracy = transfer_accuracy(setting.judge(images), torch.tensor(row_units)).item()
            values["b"] = f"{round(accuracy * len(row_units))}/{len(row_units)}"
    return values


def dataset_examples(setting: Setting) -> DatasetExamples:
    # the visualized units' problem: their examples are ranked by each unit's maximum over positions
    problem = Problem(NetworkSpec(setting.network, **setting.norm), setting.objective(setting.layer, setting.units))
    runner = DatasetExamples(problem, setting.dataset, k=setting.k, batch_size=128)
    Trainer(**QUIET).test(runner, verbose=False)
    return runner


def gallery(setting: Setting, out: Path, title: str) -> None:
    """Optimize every method, score it, print the metrics and draw the figure."""
    runner = dataset_examples(setting)
    dataset_max = torch.tensor([runner.dataset_max()[u] for u in setting.units])
    prior = [MultiScaleEdgeEnergy(setting.edge_weight)]
    common = dict(network=setting.network, image_shape=setting.image_shape, **setting.norm)
    groups = {}  # name -> (images (U, n, C, H, W), metrics)
    for name, (param, transforms) in setting.methods().items():
        start = time.perf_counter()
        module = run(setting.steps, setting.lr, objective=setting.objective(setting.layer, setting.units),
                     priors=prior, param=param, transforms=transforms, **common)
        x = module.images().detach()
        groups[name] = (x.unsqueeze(1), metrics(module, x, setting.units, setting, dataset_max, 1))
        print(f"  {name:22} {time.perf_counter() - start:6.1f} s")
    # diversity: the pixel method's param, n copies of every unit, each copy from its own noise
    start = time.perf_counter()
    rows = [u for u in setting.units for _ in range(setting.copies)]
    objective = (setting.objective(setting.layer, rows)
                 + setting.diversity_weight * Diversity(setting.diversity_layer, group=rows))
    param, transforms = next(iter(setting.methods().values()))
    module = run(setting.steps, setting.lr, objective=objective, priors=prior, param=param, transforms=transforms,
                 **common)
    x = module.images().detach()
    groups["diversity"] = (x.unflatten(0, (len(setting.units), setting.copies)),
                           metrics(module, x, setting.units, setting, dataset_max, setting.copies))
    print(f"  {'diversity':22} {time.perf_counter() - start:6.1f} s")
    examples = runner.example_images(cropped=False)  # whole images: the metrics run the network on them
    groups[f"top-{setting.k} dataset examples"] = (
        examples, metrics(module, examples.flatten(0, 1), setting.units, setting, dataset_max, setting.k))

    print(f"  {'method':32} " + "  ".join(f"{m:>8}" for m in ("b", "ratio", "hf", "div")))
    for name, (_, values) in groups.items():
        cells = [values.get("b", "-"), *(f"{values[m]:.3f}" if m in values else "-" for m in ("ratio", "hf", "div"))]
        print(f"  {name:32} " + "  ".join(f"{c:>8}" for c in cells))
    draw(groups, setting, out, title)


def draw(groups: dict, setting: Setting, out: Path, title: str) -> None:
    """One row per unit; each group's first column carries its name and metrics."""
    columns = sum(images.shape[1] for images, _ in groups.values())
    rows = len(setting.units)
    fig, axes = plt.subplots(rows, columns, figsize=(0.85 * columns, 0.85 * rows + 1.1), squeeze=False)
    column = 0
    for name, (images, values) in groups.items():
        lines = name.replace(" + ", "\n+ ").replace(" dataset", "\ndataset").split("\n")  # narrow columns
        lines += [f"b {values['b']}"] if "b" in values else []
        lines += [f"ratio {values['ratio']:.2f}", f"hf {values['hf']:.2f}"]
        lines += [f"div {values['div']:.2f}"] if "div" in values else []
        axes[0, column].set_title("\n".join(lines), loc="left", fontsize=7)
        for row in range(rows):
            for copy in range(images.shape[1]):
                image = images[row, copy].clamp(0, 1).permute(1, 2, 0).numpy()
                axes[row, column + copy].imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        column += images.shape[1]
    for row, unit in enumerate(setting.units):
        axes[row, 0].set_ylabel(str(unit), rotation=0, labelpad=10, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9, x=0.01, ha="left")
    fig.tight_layout(pad=0.3, w_pad=0.1, h_pad=0.1)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"  wrote {out}")


def renamed(methods: dict) -> dict:
    """params_gallery's pixel, Fourier + transforms and MACO + transforms rows, under the gallery's names."""
    return {"pixel + edge prior": methods["pixel"], "Fourier + transforms": methods["Fourier + transforms"],
            "MACO + transforms": methods["MACO + transforms"]}


def digits_setting(steps: int, diversity_weight: float) -> Setting:
    return Setting("digits", None, list(range(10)), UnitActivation, lambda: renamed(digits_methods()),
                   edge_weight=0.3, diversity_layer="features.4", diversity_weight=diversity_weight, copies=3,
                   dataset=Digits("test"), k=4,
                   steps=steps, lr=0.05, image_shape=(1, 32, 32), norm={}, judge=digits_cnn("b"))


def photo_crops(size: int) -> torch.Tensor:
    """``size`` x ``size`` crops, half overlapping, of the shipped photographs resized to a shorter side of 2·size."""
    crops = []
    for photo in natural_photographs():
        photo = F.interpolate(photo[None], scale_factor=2 * size / min(photo.shape[-2:]), mode="area")[0]
        tiles = photo.unfold(1, size, size // 2).unfold(2, size, size // 2)  # (3, ny, nx, size, size)
        crops.append(tiles.permute(1, 2, 0, 3, 4).flatten(0, 1))
    return torch.cat(crops)


def resnet_setting(steps: int, size: int, channels: list[int]) -> Setting:
    return Setting("resnet18", "layer3", channels, ChannelSum, lambda: renamed(vgg16_methods()), edge_weight=1.0,
                   diversity_layer="layer2", diversity_weight=100.0, copies=3, dataset=photo_crops(size), k=4,
                   steps=steps, lr=0.05, image_shape=(3, size, size),
                   norm=dict(mean=IMAGENET_MEAN, std=IMAGENET_STD))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["digits", "resnet18"], default=None, help="make one figure only")
    parser.add_argument("--out", type=Path, default=Path("results/figures"), help="the docs' own: docs/images")
    parser.add_argument("--digits-steps", type=int, default=100)
    parser.add_argument("--digits-diversity", type=float, default=14.0, help="the digits' Diversity weight")
    parser.add_argument("--resnet-steps", type=int, default=64)
    parser.add_argument("--size", type=int, default=64, help="the ResNet-18's image side")
    parser.add_argument("--channels", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_lightning()
    start = time.perf_counter()
    if args.only in (None, "digits"):
        print(f"digits: class logits 0-9 of digits_a, Adam lr 0.05, {args.digits_steps} steps")
        gallery(digits_setting(args.digits_steps, args.digits_diversity), args.out / "gallery_digits.png",
                f"digits_a, class logits 0-9, {args.digits_steps} steps, edge prior 0.3")
    if args.only in (None, "resnet18"):
        print(f"resnet18 (random weights): channels {args.channels} of layer3, 3x{args.size}x{args.size}, "
              f"Adam lr 0.05, {args.resnet_steps} steps")
        gallery(resnet_setting(args.resnet_steps, args.size, args.channels), args.out / "gallery_resnet18_random.png",
                f"ResNet-18, random weights, layer3 channels {args.channels}, {args.resnet_steps} steps")
    print(f"wall time: {time.perf_counter() - start:.1f} s on {torch.get_num_threads()} thread(s)")


if __name__ == "__main__":
    main()
