"""The design's reference experiment on a real network: EfficientNet-Lite0's output unit 700, "paper towel".

Two settings, four seeds each:

- the design's: pixels from N(0.5, 0.01²) in [0, 1] pixel space (ImageNet normalization in front of the
  network), the multi-scale edge energy prior with weight 1 (a sum over pixels), Adam lr 0.1, 250 steps,
  loss = h(x) − f₇₀₀(x), displayed as 0.5 + 0.1·(x − mean)/std;
- the recommended method (examples/imagenet_methods.py): Fourier with decorrelated colours and the
  recommended transforms, Adam lr 0.1, 256 steps.

Prints the top-1 class of every image for Lite0 and for Lite1 (an independent network), and writes
``<out>/paper_towel.pt`` (``{setting: (4, 3, 224, 224) float}``) and ``<out>/paper_towel.json``.

    python examples/imagenet_paper_towel.py --out results/paper_towel     # GPU: seconds; CPU: ~10 minutes
"""

from __future__ import annotations

import argparse
import json
from functools import partial

import torch
from imagenet_methods import Method, recommended_transforms, run_method_units, setup

from inputopt.params import FourierImage, PixelImage
from inputopt.priors import MultiScaleEdgeEnergy
from inputopt.zoo.efficientnet import imagenet_classes

UNIT = 700


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    args, device, out, lite0, lite1, normalize = setup(parser, "results/paper_towel")
    names = imagenet_classes()
    settings = [
        Method("pixels + edge prior (design)", partial(PixelImage, mean=0.5, std=0.01), [], [MultiScaleEdgeEnergy(1.0)],
               lr=0.1, steps=250),
        Method("Fourier + T (recommended)", partial(FourierImage, decorrelate=True, sigmoid=(0, 1)),
               recommended_transforms(224), [], lr=0.1, steps=256),
    ]
    images, report = {}, {}
    for method in settings:
        rows = []
        for seed in range(args.seeds):
            x, _ = run_method_units(method, [UNIT], lite0, normalize, 224, method.steps, device, seed=seed)
            rows.append(x)
        x = torch.cat(rows)
        with torch.no_grad():
            p0, p1 = lite0(normalize(x)).softmax(1), lite1(normalize(x)).softmax(1)
        report[method.name] = [{"lite0": names[int(a.argmax())], "lite0_p700": round(float(a[UNIT]), 3),
                                "lite1": names[int(b.argmax())], "lite1_p700": round(float(b[UNIT]), 3)}
                               for a, b in zip(p0, p1)]
        images[method.name] = x.cpu()
        for i, r in enumerate(report[method.name]):
            print(f"{method.name} seed {i}: Lite0 {r['lite0']} (p700 {r['lite0_p700']}), "
                  f"Lite1 {r['lite1']} (p700 {r['lite1_p700']})", flush=True)
    torch.save(images, out / "paper_towel.pt")
    (out / "paper_towel.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
