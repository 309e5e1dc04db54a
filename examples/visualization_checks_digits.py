"""The visualization checks on the digits model and on a manipulated copy of it: the measurements behind the
thresholds, and the figure of docs/trust.md.

- ``digits, channels``: the 32 channels of ``features.4``, by the Fourier method of ``configs/digits_fourier.yaml``
  without its prior (decay 1.5, clamp [0, 1], jitter 2 / scale 0.9-1.1 / jitter 1, Adam lr 0.05, 100 steps);
- ``digits, classes``: the ten classes by the same method;
- ``trap, channels``: the same on :func:`~inputopt.metrics.visualization_checks.checkerboard_trap` (channel 3 of
  ``features.4`` also fires on a pixel checkerboard);
- ``pixels``: the 32 channels by plain pixels (clamp [0, 1], jitter 2, Adam lr 0.05, 100 steps), no prior;
- ``real digits``: held-out digits themselves, as the "visualizations" of the channels they drive hardest.

Then, for channel 3's picture on each network, its similarity to its top digits in every earlier module, by
three summaries of the maps, and the share of its score carried by ``features.4``'s input (``similarity.md``).

Natural images: the 450 held-out digits; transfer network ``digits_b``, plausibility at its ``classifier.2``.
Prints, per case, each check's range and how many units pass, and writes the tables and
``results/figures/trust_digits.png`` (``--figure docs/images/trust_digits.png`` for the docs' own): channel 3's top
natural examples, its picture on the digits model (passes), on the trap (fails).

    OMP_NUM_THREADS=1 python examples/visualization_checks_digits.py --out results/trust   # ~1 minute on one thread
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch

from inputopt.capture import evaluate
from inputopt.data import Digits
from inputopt.engine import optimize
from inputopt.functional.random import RowRandom
from inputopt.loss import LossPath
from inputopt.metrics.topk import unit_scores
from inputopt.metrics.visualization_checks import CHECKS, checkerboard_trap, visualization_checks, visualization_checks_table
from inputopt.objectives import ChannelSum, UnitActivation
from inputopt.params import FourierImage, PixelImage
from inputopt.results import save_grid
from inputopt.transforms import Jitter, RandomScale, Transforms
from inputopt.zoo import digits_cnn


def visualize(network, layer, units, pixels=False, steps=100, seed=0):
    objective = ChannelSum(layer, channel=units) if layer else UnitActivation(None, unit=units)
    if pixels:
        param, transforms = PixelImage(mean=0.5, std=0.01, clamp=(0, 1)), [Jitter(2)]
    else:
        param = FourierImage(decay_power=1.5, mean=0.5, std=0.01, clamp=(0, 1))
        transforms = [Jitter(2), RandomScale(0.9, 1.1), Jitter(1)]
    param = param.initialize((1, 32, 32), units, seed)
    path = LossPath(network, objective, [], Transforms(transforms))
    optimize(param, path, steps, partial(torch.optim.Adam, lr=0.05), path.default_targets(param()),
             RowRandom(seed).stream("start").seeds(units))
    with torch.no_grad():
        return param().detach()


def similarity_study(base, trap, natural, pictures) -> str:
    """Why similarity in earlier layers cannot see the trap: channel 3's picture on each network, its relative
    similarity to its top 8 held-out digits (the path check's scale: 1 as the top examples, 0 as random digits)
    in every module before ``features.4``, for three summaries of a layer's maps (the mean over positions, the
    path check's; the maximum; the whole map), against random digits; and the share its score carried by
    ``features.4``'s input."""
    from inputopt.metrics.visualization_checks import _carried, _cosine

    layers = ["features.0", "features.1", "features.2", "features.3"]
    forms = {"mean": lambda x: x.mean((2, 3)), "max": lambda x: x.amax((2, 3)), "map": lambda x: x.flatten(1)}
    random = torch.randperm(len(natural), generator=torch.Generator().manual_seed(0))[:64]
    lines = ["| layer | summary | digits model | manipulated |", "|---|---|---|---|"]
    cells = {}
    for name, network, picture in (("digits model", base, pictures[0]), ("manipulated", trap, pictures[1])):
        acts = evaluate(network, torch.cat([natural, picture[None]]), layers + ["features.4"])
        top = unit_scores(acts["features.4"][:-1], [3])[0][:, 0].topk(8).indices
        baseline = random[~torch.isin(random, top)]
        for layer in layers:
            for form, summarize in forms.items():
                feats = summarize(acts[layer].float())
                feats = feats - feats[:-1].mean(0, keepdim=True)
                to_top = _cosine(feats[baseline], feats[top]).mean(1)
                among = _cosine(feats[top], feats[top])
                own = (among.sum(1) - among.diagonal()) / (len(top) - 1)
                reference = (to_top[None] < own[:, None]).double().mean(1).median()
                score = (to_top < _cosine(feats[-1:], feats[top]).mean()).double().mean()
                cells.setdefault((layer, form), []).append(f"{(score / reference).item():.2f}")
        carried, scores = _carried(network, "features.4", picture[None], [3], None)
        cells.setdefault(("input of features.4", "carried share"), []).append(f"{(carried / scores).item():.2f}")
    lines += [f"| {layer} | {form} | {' | '.join(v)} |" for (layer, form), v in cells.items()]
    return "\n".join(lines)


def summary(name, results) -> str:
    cells = []
    for check in CHECKS:
        rows = [r for row in results for r in row.results if r.name == check]
        if not rows:
            continue
        values = [next(iter(r.values.values())) for r in rows]
        numbers = [v for v in values if isinstance(v, float)]
        span = f" {min(numbers):.2f}-{max(numbers):.2f}" if numbers else ""
        if check == "path":  # its two parts: the similarity in earlier layers, the share carried by the input
            parts = {k: [r.values[k] for r in rows if r.values[k] == r.values[k]] for k in ("relative", "carried")}
            label = {"relative": "similarity", "carried": "carried"}
            span += " (" + ", ".join(f"{label[k]} {min(v):.2f}-{max(v):.2f}" for k, v in parts.items() if v) + ")"
        cells.append(f"{check}: {sum(r.passed for r in rows)}/{len(rows)}{span}")
    return f"| {name} | {sum(row.passed for row in results)}/{len(results)} | " + "; ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/trust")
    parser.add_argument("--figure", default="results/figures/trust_digits.png",
                        help="where the figure goes (the docs' own: --figure docs/images/trust_digits.png)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base, transfer = digits_cnn("a"), digits_cnn("b")
    trap = checkerboard_trap(base, "features.4", channel=3)
    natural = Digits("test")
    digits = natural.tensors[0]
    channels, classes = list(range(32)), list(range(10))
    options = dict(transfer_network=transfer, plausibility_layer="classifier.2")
    best = unit_scores(evaluate(base, digits, ["features.4"])["features.4"], channels)[0].argmax(0)
    cases = {
        "digits, channels": (base, "features.4", channels, visualize(base, "features.4", channels)),
        "digits, classes": (base, None, classes, visualize(base, None, classes)),
        "trap, channels": (trap, "features.4", channels, visualize(trap, "features.4", channels)),
        "pixels, channels": (base, "features.4", channels, visualize(base, "features.4", channels, pixels=True)),
        "real digits, channels": (base, "features.4", channels, digits[best]),
    }
    lines = ["| case | units passing | per check: passing, range |", "|---|---|---|"]
    results = {}
    for name, (network, layer, units, images) in cases.items():
        extra = {}
        if name == "digits, channels":  # the seeds check, with two more seeds
            extra["seed_images"] = torch.stack([visualize(base, "features.4", channels, seed=s) for s in (1, 2)])
        results[name] = visualization_checks(network, layer, units, images, natural, **options, **extra)
        (out / f"{name.replace(', ', '_').replace(' ', '_')}.md").write_text(
            visualization_checks_table(results[name]) + "\n")
        lines.append(summary(name, results[name]))
        print(name)
        print(visualization_checks_table(results[name]), flush=True)
    print("\n".join(lines))
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    study = similarity_study(base, trap, digits, (cases["digits, channels"][3][3], cases["trap, channels"][3][3]))
    print(study)
    (out / "similarity.md").write_text(study + "\n")
    # the figure: channel 3's top natural examples | its picture (digits model) | its picture (trap)
    top = unit_scores(evaluate(base, digits, ["features.4"])["features.4"], [3])[0][:, 0].topk(4).indices
    row = torch.cat([digits[top], cases["digits, channels"][3][3:4], cases["trap, channels"][3][3:4]])
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    save_grid(row, args.figure, "clamp", nrow=6, scale=4)
    print(f"figure: {args.figure} (top examples x4 | digits model | trap); channel 3 on the digits model: "
          f"{'pass' if results['digits, channels'][3].passed else 'FAIL'}, on the trap: "
          f"{'pass' if results['trap, channels'][3].passed else 'FAIL'}")


if __name__ == "__main__":
    main()
