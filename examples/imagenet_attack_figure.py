"""The reference attack on a real photo as a picture: clean photo, adversarial image, magnified perturbation.

The attack of configs/imagenet_adversarial.yaml, run from Python: EfficientNet-Lite0, scikit-image's cat
("chelsea", 224 px, in [0, 1]), the pixels optimized directly (``PixelImage``) with plain SGD lr 0.1 on the
negative cross-entropy of the network's own prediction, 15 steps, seed 0. Each panel is titled with Lite0's
predicted class and probability; the perturbation x̃ − x is shown as 0.5 + (x̃ − x)·m, with m chosen so that
its largest pixel reaches the edge of [0, 1] (m is in the title). Prints the predictions and ‖x − x̃‖.

    python examples/imagenet_attack_figure.py            # writes results/figures/imagenet_attack.png
    python examples/imagenet_attack_figure.py --out docs/images/imagenet_attack.png   # the docs' figure
    python examples/imagenet_attack_figure.py --photo coffee --out /tmp/coffee_attack.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
from functools import partial

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch import Trainer, seed_everything  # noqa: E402

from _quiet import quiet_lightning  # noqa: E402
from inputopt import InputOptimization  # noqa: E402
from inputopt.networks import class_names  # noqa: E402
from inputopt.objectives import NegativeCrossEntropy  # noqa: E402
from inputopt.params import PixelImage  # noqa: E402
from inputopt.problem import Problem  # noqa: E402

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default="chelsea")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--out", default="results/figures/imagenet_attack.png")
    args = parser.parse_args()
    quiet_lightning()
    seed_everything(0, verbose=False)

    module = InputOptimization(Problem("efficientnet_lite0", NegativeCrossEntropy(), param=PixelImage()),
                               init=f"photo:{args.photo}", optimizer=partial(torch.optim.SGD, lr=args.lr))
    with torch.no_grad():
        clean = module.images().detach().clone()
    Trainer(max_steps=args.steps, **QUIET).fit(module)
    with torch.no_grad():
        adversarial = module.images().detach().clone()
        probs = torch.softmax(module.network(torch.cat([clean, adversarial])), dim=1)
    names = class_names("efficientnet_lite0")
    p, label = probs.max(dim=1)
    delta = adversarial - clean
    l2, linf = delta.flatten().norm().item(), delta.abs().max().item()
    magnify = 0.5 / linf
    print(f"EfficientNet-Lite0, photo {args.photo!r}, SGD lr {args.lr}, {args.steps} steps")
    print(f"clean        {names[label[0]]!r} p = {p[0]:.2f}")
    print(f"adversarial  {names[label[1]]!r} p = {p[1]:.2f} (p of the clean class: {probs[1, label[0]]:.2f})")
    print(f"||x - x~||_2 = {l2:.2f}, ||x - x~||_inf = {linf:.3f}; adversarial pixels in "
          f"[{adversarial.min().item():.3f}, {adversarial.max().item():.3f}]")

    panels = [(clean[0], f"clean: {names[label[0]]} ({p[0]:.2f})"),
              (adversarial[0].clamp(0, 1), f"adversarial: {names[label[1]]} ({p[1]:.2f})"),
              ((0.5 + delta[0] * magnify).clamp(0, 1), f"perturbation ×{magnify:.1f}\n"
                                                       f"L2 {l2:.2f}, L∞ {linf:.3f}")]
    figure, axes = plt.subplots(1, 3, figsize=(10, 3.8))
    for axis, (image, title) in zip(axes, panels):
        axis.imshow(image.permute(1, 2, 0).numpy())
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    figure.suptitle(f"EfficientNet-Lite0, SGD lr {args.lr} on the pixels, {args.steps} steps", fontsize=11)
    figure.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
