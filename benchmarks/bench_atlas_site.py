"""Site generation of ``inputopt atlas`` for a large atlas: the pages of 2,000 units from synthetic files.

Run from the repository root (a few seconds of set-up, then the timed builds):

    python benchmarks/bench_atlas_site.py --units 2000 --layers 4 --k 8 --reps 3
    python benchmarks/bench_atlas_site.py --units 2000 --layers 4 --k 8 --reps 3 --no-bottom --percentiles   # top only

The script writes, into a temporary folder, the files an atlas run leaves (``atlas.yaml``; per layer its
``layer.json``, one 32×32 PNG per unit, ``examples.json`` with ``k`` top examples per unit, ``k`` bottom ones
and one per percentile (as the atlas' defaults: ``--no-bottom`` and ``--percentiles`` with no value leave them
out), and their crop PNGs,
``metrics.json`` and a fit config), the units split evenly over ``--layers`` layers. Then it times
:func:`inputopt.atlas.build_site` ``--reps`` times: the first build writes every page (``index.html``,
one page per layer and per unit); the later ones rebuild over an existing site (deleted before each
"fresh" repetition, kept for the "again" ones). It prints the median and the minimum of each, with the
pages written and their total size. The images are never read by the build (only listed), so their
content does not matter.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torchvision.utils import save_image

from _machine import cpu_name, inputopt_revision
from inputopt.atlas import build_site
from inputopt.atlas.config import crop_name


def synthetic_atlas(root: Path, units: int, layers: int, k: int, bottom: bool = True,
                    percentiles: tuple[float, ...] = (99.0, 90.0, 50.0)) -> None:
    """The files of an atlas of ``units`` units over ``layers`` conv layers, as ``inputopt atlas`` lays them out."""
    png = root / "tile.png"
    save_image(torch.rand(1, 32, 32), png)
    data = png.read_bytes()
    generator = torch.Generator().manual_seed(0)
    record = {"network": "synthetic", "image_shape": [1, 32, 32], "visualization": {"seeds": [0]},
              "examples": {"k": k, "bottom": bottom, "percentiles": list(percentiles)}, "metrics": {"transfer_networks": [], "high_frequency_cutoff": 0.25},
              "layers": {}}
    per_layer = [units // layers + (i < units % layers) for i in range(layers)]
    for i, count in enumerate(per_layer):
        name = f"block{i}.conv"
        folder = root / "layers" / name
        record["layers"][name] = {"name": name, "crop_size": 8, "context": 16}
        (folder / "seed-0" / "images").mkdir(parents=True)
        (folder / "examples" / "crops").mkdir(parents=True)
        info = {"name": name, "slug": name, "kind": "channel", "shape": [count, 16, 16], "units": list(range(count)),
                "crop_size": 8, "context": 16, "seeds": [0], "network": "synthetic"}
        (folder / "layer.json").write_text(json.dumps(info))
        for unit in range(count):
            (folder / "seed-0" / "images" / f"{name}-{unit}.png").write_bytes(data)
            names = [crop_name(unit, "top", rank) for rank in range(k)]
            names += [crop_name(unit, "bottom", rank) for rank in range(k)] if bottom else []
            names += [crop_name(unit, "percentiles", rank, q) for rank, q in enumerate(percentiles)]
            for crop in names:
                (folder / "examples" / "crops" / crop).write_bytes(data)

        def group(n: int, descending: bool) -> dict:
            values = torch.rand(count, n, generator=generator).sort(1, descending=descending).values
            return {"values": values.tolist(),
                    "indices": torch.randint(0, 10_000, (count, n), generator=generator).tolist(),
                    "positions": [[[3, 4]] * n for _ in range(count)]}

        examples = {"layer": name, "units": list(range(count)), "k": k, "map_shape": [16, 16], **group(k, True)}
        if bottom:
            examples["bottom"] = group(k, False)
        if percentiles:
            examples["percentiles"] = {"q": list(percentiles), "sampled": 4096, **group(len(percentiles), True)}
        (folder / "examples" / "examples.json").write_text(json.dumps(examples))
        metrics = {str(u): {"activation_ratio": float(v), "high_frequency_energy": float(h)}
                   for u, v, h in zip(range(count), torch.rand(count, generator=generator) * 20,
                                      torch.rand(count, generator=generator))}
        (folder / "metrics.json").write_text(json.dumps({"units": metrics, "high_frequency_cutoff": 0.25}))
        (folder / "fit-seed-0.yaml").write_text(yaml.safe_dump({"model": {"network": "synthetic"}}))
    (root / "atlas.yaml").write_text(yaml.safe_dump(record, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-bottom", dest="bottom", action="store_false", help="no bottom-k examples")
    parser.add_argument("--percentiles", type=float, nargs="*", default=[99.0, 90.0, 50.0],
                        help="the percentile examples (none: --percentiles alone)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="atlas_bench_"))
    try:
        synthetic_atlas(root, args.units, args.layers, args.k, args.bottom, tuple(args.percentiles))
        fresh, again = [], []
        pages = []
        for _ in range(args.reps):
            shutil.rmtree(root / "site", ignore_errors=True)
            (root / "index.html").unlink(missing_ok=True)
            start = time.perf_counter()
            pages = build_site(root)
            fresh.append(time.perf_counter() - start)
            start = time.perf_counter()
            build_site(root)
            again.append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in pages)
        print(f"CPU: {cpu_name()}; inputopt{inputopt_revision()}")
        groups = f"k={args.k}" + (f", bottom-{args.k}" if args.bottom else "") + (
            f", percentiles {', '.join(f'{q:g}' for q in args.percentiles)}" if args.percentiles else "")
        print(f"{args.units} units over {args.layers} layers, {groups}: {len(pages)} pages, {size / 1e6:.1f} MB of HTML")
        print(f"  site from scratch:   median {statistics.median(fresh):.2f} s, min {min(fresh):.2f} s ({args.reps} reps)")
        print(f"  site rebuilt again:  median {statistics.median(again):.2f} s, min {min(again):.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
