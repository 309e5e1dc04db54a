"""Dataset examples at the scale of a real data set: throughput against a plain loop, peak memory against the
number of images, 1 against 2 processes.

Run from the repository root. First make the data set (JPEGs, never committed; a path outside the repository):

    python benchmarks/bench_dataset_examples.py make --root /tmp/bench-images --count 50000

It writes ``--count`` 224×224 JPEGs (quality 90) into an ``ImageFolder`` with one sub-folder per photo of
``inputopt.data.photos`` (8 classes): random resized crops (scale 0.08-1), horizontal flips and colour
jitter (brightness, contrast, saturation 0.4, hue 0.1) of the photos, seeded, so every run makes the same
images. Then measure:

    python benchmarks/bench_dataset_examples.py run --root /tmp/bench-images --counts 5000 20000 --processes 1 2 --reps 2

Each measurement runs in its own Python process (its peak memory is its own), on the first ``count`` images
of the folder (``torch.utils.data.Subset``), ``inputopt.data.ImageFolder(root, (3, 224, 224))`` read by a
``DataLoader`` with ``--batch-size`` and ``--workers``, EfficientNet-Lite0 (pretrained) up to ``blocks.3``,
on the CPU with ``OMP_NUM_THREADS=1`` per process:

* **plain**: ``for images, labels in loader: evaluate(net, images, ["blocks.3"], normalize)``
  under ``torch.no_grad()`` (the forward stops after the layer, as inputopt's does), nothing kept;
* **examples**: ``DatasetExamples(Problem(..., ChannelSum("blocks.3", channel="all")), ..., k=8)``, its
  receptive field loaded from the file below, and ``Trainer(accelerator="cpu", devices=P).test(runner)``
  (``strategy="ddp"``, gloo, for 2), timed as the plain loop is, from the start of the pass (the test epoch:
  the loader's first batch) to its end on rank 0 (``runner.pass_seconds``: all images of all processes, as the
  processes end together); ``test_s`` is the whole ``trainer.test`` (the
  Trainer's and the processes' start-up, the pass, the merge).

The receptive field of ``blocks.3`` (``inputopt.functional.receptive_field``) is computed once, timed, and
saved for the measurements (a one-off cost per layer and image size, independent of the number of images).
The cases of a count run ``--reps`` times, interleaved (plain, examples ×P, then the reverse order, ...), as
the load of a shared machine moves. It prints, per run, the images/s and the peak resident memory
(``ru_maxrss`` of the process, rank 0), then per count the medians and the ratio to the plain loop.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make(root: Path, count: int, seed: int = 0) -> None:
    """``count`` JPEGs of random crops, flips and colour jitter of the shipped photos, in one folder per photo."""
    import torch
    from torchvision import transforms
    from torchvision.transforms.functional import to_pil_image

    from inputopt.data.photos import photo, photo_names

    names = photo_names()
    sources = {name: photo(name, size=448) for name in names}
    augment = transforms.Compose([transforms.RandomResizedCrop(224, scale=(0.08, 1.0), antialias=True),
                                  transforms.RandomHorizontalFlip(),
                                  transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)])
    torch.manual_seed(seed)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for index in range(count):
        name = names[index % len(names)]
        path = root / name / f"{index:06}.jpg"
        if not path.is_file():
            to_pil_image(augment(sources[name])).save(path, quality=90)
        if (index + 1) % 5000 == 0:
            print(f"  {index + 1} images, {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{count} images in {root} ({time.perf_counter() - start:.0f} s)")


def field(path: str) -> None:
    """The receptive field of Lite0's blocks.3 at 224 px, timed, saved to ``path`` for the measurements."""
    import torch

    from inputopt.functional.receptive_field import receptive_field
    from inputopt.networks import NetworkSpec

    torch.set_num_threads(1)
    spec = NetworkSpec("efficientnet_lite0")
    net, normalize = spec.build(0), spec.normalization()
    start = time.perf_counter()
    found = receptive_field(net, "blocks.3", (3, 224, 224), normalize)
    seconds = time.perf_counter() - start
    torch.save({"boxes": found.boxes, "image_size": found.image_size}, path)
    print("RESULT " + json.dumps({"receptive_field_s": round(seconds, 2), "size": found.size}), flush=True)


def one(mode: str, root: str, count: int, processes: int, batch_size: int, workers: int, field_path: str) -> None:
    """One measurement, in this process: prints a JSON line (rank 0)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from inputopt.capture import evaluate
    from inputopt.data import ImageFolder
    from inputopt.networks import NetworkSpec

    torch.set_num_threads(1)
    data = Subset(ImageFolder(root, (3, 224, 224)), range(count))
    if len(data) < count:
        raise SystemExit(f"{root} has {len(data)} images, fewer than {count}: make more first")
    record = {"mode": mode, "count": count, "processes": processes, "batch_size": batch_size, "workers": workers}
    if mode == "plain":
        spec = NetworkSpec("efficientnet_lite0")
        net, normalize = spec.build(0), spec.normalization()
        loader = DataLoader(data, batch_size=batch_size, num_workers=workers)
        start = time.perf_counter()
        seen = 0
        with torch.no_grad():
            for images, _ in loader:
                evaluate(net, images, ["blocks.3"], normalize)
                seen += len(images)
        seconds = time.perf_counter() - start
    else:
        from lightning.pytorch import Trainer

        from inputopt.objectives import ChannelSum
        from inputopt.problem import Problem
        from inputopt.runners.examples import DatasetExamples

        runner = DatasetExamples(Problem("efficientnet_lite0", ChannelSum("blocks.3", channel="all")), data, k=8,
                                 batch_size=batch_size, num_workers=workers)
        from inputopt.functional.receptive_field import ReceptiveField

        saved = torch.load(field_path, weights_only=True)  # computed once, timed on its own (``field``)
        runner._field = ReceptiveField(saved["boxes"], tuple(saved["image_size"]))
        start = time.perf_counter()
        trainer = Trainer(accelerator="cpu", devices=processes, strategy="ddp" if processes > 1 else "auto",
                          logger=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.test(runner, verbose=False)
        record["test_s"] = round(time.perf_counter() - start, 2)  # Trainer, DDP start-up, pass, merge
        seconds = runner.pass_seconds  # the first batch to the last, as the plain loop is timed
        seen = count
        if not trainer.is_global_zero:
            return
        record["skipped"] = runner.results["skipped"]
    record.update(seconds=round(seconds, 2), images_per_s=round(seen / seconds, 2),
                  peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    print("RESULT " + json.dumps(record), flush=True)


def run(args: argparse.Namespace) -> None:
    from _machine import cpu_name, inputopt_revision

    print(f"# {cpu_name()}, inputopt {inputopt_revision()}, batch {args.batch_size}, {args.workers} loader "
          f"worker(s) per process, OMP_NUM_THREADS=1")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")

    def measure(*arguments: str) -> dict:
        command = [sys.executable, __file__, *arguments]
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        record = json.loads(lines[0][7:])
        print(json.dumps(record), flush=True)
        return record

    field_path = str(Path(args.root) / "blocks3-field.pt")
    measure("field", "--path", field_path)
    rows = []
    for count in args.counts:
        # the plain loop and inputopt interleaved (A B, B A, ...): the machine's load moves in between
        cases = [("plain", 1)] + [("examples", p) for p in args.processes]
        for rep in range(args.reps):
            for mode, processes in (cases if rep % 2 == 0 else cases[::-1]):
                rows.append(measure("one", "--mode", mode, "--root", args.root, "--count", str(count),
                                    "--processes", str(processes), "--batch-size", str(args.batch_size),
                                    "--workers", str(args.workers), "--field", field_path))
    print(f"\n{'count':>7} {'mode':>9} {'proc':>4} {'images/s (median)':>18} {'x plain':>8} {'peak MiB (max)':>15}")
    for count in args.counts:
        plain = statistics.median(r["images_per_s"] for r in rows if r["count"] == count and r["mode"] == "plain")
        for mode, processes in [("plain", 1)] + [("examples", p) for p in args.processes]:
            mine = [r for r in rows if (r["count"], r["mode"], r["processes"]) == (count, mode, processes)]
            rate = statistics.median(r["images_per_s"] for r in mine)
            print(f"{count:7} {mode:>9} {processes:4} {rate:18.2f} {rate / plain:8.2f} "
                  f"{max(r['peak_rss_mib'] for r in mine):15.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_make = sub.add_parser("make", help="generate the JPEG ImageFolder")
    p_make.add_argument("--root", required=True)
    p_make.add_argument("--count", type=int, default=50000)
    p_run = sub.add_parser("run", help="measure")
    p_run.add_argument("--root", required=True)
    p_run.add_argument("--counts", type=int, nargs="+", default=[5000])
    p_run.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p_run.add_argument("--batch-size", type=int, default=64)
    p_run.add_argument("--workers", type=int, default=1)
    p_run.add_argument("--reps", type=int, default=2)
    p_field = sub.add_parser("field")
    p_field.add_argument("--path", required=True)
    p_one = sub.add_parser("one")
    p_one.add_argument("--mode", choices=["plain", "examples"], required=True)
    p_one.add_argument("--root", required=True)
    p_one.add_argument("--count", type=int, required=True)
    p_one.add_argument("--processes", type=int, default=1)
    p_one.add_argument("--batch-size", type=int, default=64)
    p_one.add_argument("--workers", type=int, default=1)
    p_one.add_argument("--field", required=True)
    args = parser.parse_args()
    if args.command == "make":
        make(Path(args.root), args.count)
    elif args.command == "run":
        run(args)
    elif args.command == "field":
        field(args.path)
    else:
        one(args.mode, args.root, args.count, args.processes, args.batch_size, args.workers, args.field)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
