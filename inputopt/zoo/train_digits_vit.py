"""Train the offline demo :class:`~inputopt.zoo.vit.DigitsViT` (``digits_vit``).

The same data and split as the digits CNNs (:func:`~inputopt.zoo.digits.load_digits_split`: 1,347
training and 450 held-out images at 1×32×32) and the same augmentation (random shifts of up to ±2
pixels); AdamW with a one-cycle schedule, label smoothing. Deterministic given the seed; a few minutes
on one CPU core. The held-out accuracy is printed at the end.

Usage::

    python -m inputopt.zoo.train_digits_vit --seed 0 --out inputopt/zoo/weights/digits_vit.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from inputopt.zoo.digits import load_digits_split
from inputopt.zoo.train_digits import accuracy, fit_epochs
from inputopt.zoo.vit import DigitsViT, vit_weights_path


def train(seed: int = 0, epochs: int = 80, batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 0.05,
          max_shift: int = 2, label_smoothing: float = 0.1) -> DigitsViT:
    """Train a :class:`DigitsViT` on the train split, deterministically from ``seed``; returns it in eval mode."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = load_digits_split("train")
    model = DigitsViT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(images) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.1)
    return fit_epochs(model, optimizer, scheduler, images, labels, epochs, batch_size, max_shift, label_smoothing,
                      generator, log_every=10)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--out", type=Path, default=None, help="default: the shipped weights path")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else vit_weights_path()
    start = time.perf_counter()
    model = train(args.seed, epochs=args.epochs, lr=args.lr)
    elapsed = time.perf_counter() - start
    test_images, test_labels = load_digits_split("test")
    test_acc = accuracy(model, test_images, test_labels)
    print(f"train accuracy {accuracy(model, *load_digits_split('train')):.4f}")
    print(f"held-out test accuracy {test_acc:.4f} ({round(test_acc * len(test_labels))}/{len(test_labels)}), "
          f"trained in {elapsed:.1f}s")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, out)
    print(f"saved state_dict to {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
