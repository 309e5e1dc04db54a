"""Feature accentuation (Hamblin et al. 2024) against Fourier + transforms on EfficientNet-Lite0: one table, one figure.

Feature accentuation starts from a real image and raises a unit's activation, while a per-image term keeps the
image close to its start in an earlier layer's features. In inputopt it is a sum of two objectives started from
the image (``init=``)::

    objective = (1 / a0) * ChannelSum(layer, channel=u) + lam * FeatureMatch(match_layer)

``FeatureMatch``'s default targets are the starting images' own features, so its term is ``0`` at the start and
``−‖Φ(x) − Φ(x₀)‖² / ‖Φ(x₀)‖²`` after; ``a0``, the unit's score on the start, makes the unit's term 1 at the start,
so ``lam`` means the same for every unit. Each unit starts from its best photo crop.

For each unit (channels of ``--layer`` and the classes of the labelled photos), both methods:

- ``Fourier + T``: the recommended method (``FourierImage`` decorrelated, sigmoid, Adam lr 0.1, the recommended
  transforms of ``examples/imagenet_methods.py``), from noise;
- ``accentuation λ``: ``FourierImage`` (same settings) started from the unit's best crop, Adam ``--lr``,
  light transforms (jitter 4, scale 0.95-1.05), ``lam = λ``, FeatureMatch at ``--match-layer``; ``--at 16@blocks.3``
  adds a setting with FeatureMatch at another layer (the recommended one of ``docs/trust.md``).

Columns: ``ratio``, the unit's score (a channel's maximum over positions, a class's logit) over its best photo
crop's; ``plaus``, the cosine distance to the nearest photo crop but the unit's best crop (the start; its own distance is the ``start`` row)
in EfficientNet-Lite1's pooled features (``global_pool``); ``hf``; ``L1 top-1``, for classes, whether Lite1 puts
the image in the class; ``checks pass``: how many units pass every default visualization check
(:func:`~inputopt.metrics.visualization_checks.visualization_checks`, transfer to Lite1). Also prints each
method's seconds per unit and the checks' seconds.

    OMP_NUM_THREADS=1 python examples/imagenet_accentuation.py --size 224 --steps 128   # 2 CPU cores: ~15 min

Writes ``<out>/table.md``, ``<out>/results.json``, ``<out>/checks.md``, ``<out>/checks.json``, ``<out>/images.pt``
and ``<out>/accentuation.png`` (per unit: the start, accentuated, Fourier + T).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch

from inputopt.capture import evaluate
from inputopt.data import PhotoCrops, Photos
from inputopt.engine import optimize
from inputopt.functional.random import RowRandom
from inputopt.functional.plausibility import plausibility_distance
from inputopt.loss import LossPath
from inputopt.metrics.quality import high_frequency_energy
from inputopt.metrics.topk import unit_scores
from inputopt.metrics.visualization_checks import (
    visualization_checks,
    visualization_checks_json,
    visualization_checks_table,
)
from inputopt.networks import build_network, freeze
from inputopt.objectives import ChannelSum, UnitActivation
from inputopt.objectives.inversion import FeatureMatch
from inputopt.params import FourierImage
from inputopt.results import save_grid
from inputopt.transforms import Jitter, Pad, RandomRotate, RandomScale, Transforms

POOL = "global_pool"


def recommended_transforms(size: int) -> list:
    """The recommended transforms of ``examples/imagenet_methods.py``: at 224 pad 16, jitter 16, scale 0.8-1.2,
    rotate ±10 degrees, jitter 8."""
    k = size / 224
    return [Pad(round(16 * k), value=0.5), Jitter(max(1, round(16 * k))), RandomScale(0.8, 1.2), RandomRotate(10),
            Jitter(max(1, round(8 * k)))]


def objective_of(layer: str | None, unit: int):
    return ChannelSum(layer, channel=[unit]) if layer else UnitActivation(None, unit=[unit])


def fourier(network, layer, unit, size, steps, lr=0.1, seed=0):
    """The recommended method, from noise."""
    param = FourierImage(decorrelate=True, sigmoid=(0, 1)).initialize((3, size, size), keys=[unit], seed=seed)
    path = LossPath(network, objective_of(layer, unit), [], Transforms(recommended_transforms(size)))
    optimize(param, path, steps, partial(torch.optim.Adam, lr=lr), path.default_targets(param()),
             RowRandom(seed).stream("start").seeds([unit]))
    with torch.no_grad():
        return param().detach()


def accentuate(network, layer, unit, start, match_layer, lam, steps, lr, seed=0):
    """Feature accentuation of ``unit`` from ``start`` (1, 3, H, W)."""
    with torch.no_grad():
        a0 = unit_scores(evaluate(network, start, [layer or ""])[layer or ""], [unit])[0].item()
        if layer:  # the objective sums the map; the scale is the start's sum
            a0 = evaluate(network, start, [layer])[layer][0, unit].sum().item()
    objective = (1 / abs(a0)) * objective_of(layer, unit) + lam * FeatureMatch(match_layer)
    param = FourierImage(decorrelate=True, sigmoid=(0, 1)).initialize_from(start)
    path = LossPath(network, objective, [], Transforms([Jitter(4), RandomScale(0.95, 1.05)]))
    optimize(param, path, steps, partial(torch.optim.Adam, lr=lr), path.default_targets(param()),
             RowRandom(seed).stream("start").seeds([unit]))
    with torch.no_grad():
        return param().detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--layer", default="blocks.4")
    parser.add_argument("--channels", type=int, nargs="*", default=[3, 17, 42])
    parser.add_argument("--photos", nargs="*", default=["chelsea", "coffee", "rocket"],
                        help="the classes of these labelled photos are the class units")
    parser.add_argument("--match-layer", default="blocks.2")
    parser.add_argument("--lams", type=float, nargs="*", default=[2.0, 16.0])
    parser.add_argument("--at", nargs="*", default=[],
                        help="more accentuation settings, each λ@layer: FeatureMatch at another layer (16@blocks.3)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", default="results/accentuation")
    args = parser.parse_args()
    settings = {f"accentuation λ={lam:g}": (lam, args.match_layer) for lam in args.lams}
    for setting in args.at:
        lam, _, match = setting.partition("@")
        if not match:
            parser.error(f"--at takes λ@layer (e.g. 16@blocks.3), got {setting!r}")
        settings[f"accentuation λ={float(lam):g} at {match}"] = (float(lam), match)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    lite0, lite1 = freeze(build_network("efficientnet_lite0")), freeze(build_network("efficientnet_lite1"))
    crops = PhotoCrops(size=args.size, scales=(1.0, 0.7, 0.5))
    natural = torch.stack([crops[i][0] for i in range(len(crops))])
    sources = torch.tensor([crops[i][1] for i in range(len(crops))])
    photos = Photos(size=32, names=args.photos)
    units = [(args.layer, c) for c in args.channels] + [(None, int(label)) for label in photos.labels]

    t = time.perf_counter()
    with torch.no_grad():
        acts = {name: torch.cat([evaluate(lite0, c, [name or ""])[name or ""] for c in natural.split(32)])
                for name in {args.layer, None}}
        reference = torch.cat([evaluate(lite1, c, [POOL])[POOL] for c in natural.split(32)]).flatten(1)
        hf_crops = high_frequency_energy(natural).mean().item()
    print(f"natural: {len(natural)} photo crops of {args.size} px, forward {time.perf_counter() - t:.0f} s; hf "
          f"{hf_crops:.3f}", flush=True)

    methods = ["Fourier + T", *settings]
    images = {m: [] for m in methods}
    starts, seconds, rows, plaus_start = [], {m: 0.0 for m in methods}, {m: [] for m in methods}, []
    for layer, unit in units:
        scores = unit_scores(acts[layer], [unit])[0][:, 0]
        best = int(scores.argmax())
        start = natural[best:best + 1]
        starts.append(start)
        others = torch.arange(len(natural)) != best  # every crop but the start
        with torch.no_grad():
            start_plaus = plausibility_distance(evaluate(lite1, start, [POOL])[POOL].flatten(1), reference[others]).item()
        print(f"{layer or 'class'}-{unit}: best crop {best} (photo {int(sources[best])}), score {scores[best]:.3g}, "
              f"its plausibility {start_plaus:.3f}", flush=True)
        plaus_start.append(start_plaus)
        for method in methods:
            t = time.perf_counter()
            if method == "Fourier + T":
                x = fourier(lite0, layer, unit, args.size, args.steps)
            else:
                x = accentuate(lite0, layer, unit, start, settings[method][1], settings[method][0], args.steps,
                               args.lr)
            seconds[method] += time.perf_counter() - t
            images[method].append(x)
            with torch.no_grad():
                score = unit_scores(evaluate(lite0, x, [layer or ""])[layer or ""], [unit])[0].item()
                feats = evaluate(lite1, x, [POOL, ""])
            value = {"unit": f"{layer or 'class'}-{unit}", "ratio": score / scores[best].item(),
                     "plaus": plausibility_distance(feats[POOL].flatten(1), reference[others]).item(),
                     "hf": high_frequency_energy(x).item(),
                     "L1 top-1": None if layer else int(feats[""].argmax(1).item() == unit)}
            rows[method].append(value)
            print(method, value, f"{seconds[method]:.0f} s", flush=True)

    t = time.perf_counter()
    checked = {m: [] for m in methods}
    for layer in dict.fromkeys(layer for layer, _ in units):
        index = [i for i, (l, _) in enumerate(units) if l == layer]
        results = visualization_checks(
            lite0, layer, [units[i][1] for i in index] * len(methods),
            torch.cat([images[m][i] for m in methods for i in index]), natural,
            names=[f"{m}: {rows[m][i]['unit']}" for m in methods for i in index], transfer_network=lite1,
            plausibility_layer=POOL)
        for k, m in enumerate(methods):
            checked[m] += results[k * len(index):(k + 1) * len(index)]
    check_seconds = time.perf_counter() - t
    all_checked = [row for m in methods for row in checked[m]]
    (out / "checks.md").write_text(visualization_checks_table(all_checked) + "\n")
    (out / "checks.json").write_text(json.dumps(visualization_checks_json(all_checked), indent=2, default=float) + "\n")
    print(f"checks of {len(all_checked)} images: {check_seconds:.0f} s", flush=True)
    print(visualization_checks_table(all_checked), flush=True)

    lines = ["| method | unit | ratio | plaus | hf | L1 top-1 |", "|---|---|---|---|---|---|"]
    lines += [f"| start (best crop) | {rows[methods[0]][i]['unit']} | 1.00 | {p:.3f} | – | – |"
              for i, p in enumerate(plaus_start)]
    summary = ["| method | ratio (mean) | ratio ≥ 1 | plaus (mean) | plaus ≤ 0.3 | classes L1 top-1 | s/unit | checks "
               "pass |", "|---|---|---|---|---|---|---|---|"]
    results = {"start_plausibility": plaus_start, "check_seconds": check_seconds}
    for method in methods:
        for v in rows[method]:
            lines.append(f"| {method} | {v['unit']} | {v['ratio']:.2f} | {v['plaus']:.3f} | {v['hf']:.3f} | "
                         f"{'–' if v['L1 top-1'] is None else v['L1 top-1']} |")
        rs = [v["ratio"] for v in rows[method]]
        ps = [v["plaus"] for v in rows[method]]
        classes = [v["L1 top-1"] for v in rows[method] if v["L1 top-1"] is not None]
        summary.append(f"| {method} | {sum(rs) / len(rs):.2f} | {sum(r >= 1 for r in rs)}/{len(rs)} | "
                       f"{sum(ps) / len(ps):.3f} | {sum(p <= 0.3 for p in ps)}/{len(ps)} | {sum(classes)}/{len(classes)} "
                       f"| {seconds[method] / len(units):.0f} | {sum(r.passed for r in checked[method])}/{len(units)} |")
        results[method] = {"rows": rows[method], "seconds": seconds[method],
                           "checks": [{"name": row.name, "passed": row.passed} for row in checked[method]]}
    table = "\n".join(summary) + "\n\n" + "\n".join(lines)
    print(table)
    (out / "table.md").write_text(f"photo crops: {len(natural)}, hf {hf_crops:.3f}\n\n{table}\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    grid = torch.cat([torch.cat(starts)] + [torch.cat(images[m]) for m in methods])
    torch.save({"start": torch.cat(starts), **{m: torch.cat(images[m]) for m in methods}}, out / "images.pt")
    save_grid(grid, out / "accentuation.png", "clamp", nrow=len(units))


if __name__ == "__main__":
    main()
