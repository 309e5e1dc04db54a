"""Train the offline demo :class:`~inputopt.zoo.digits.DigitsCNN` models.

A plain PyTorch loop (Adam, a fixed number of epochs, random shifts of up to
±2 pixels as augmentation) on the ``"train"`` split of
:func:`~inputopt.zoo.digits.load_digits_split`; the held-out accuracy on the
``"test"`` split is printed at the end. Training is deterministic given the
seed and takes a few seconds on a CPU.

Usage::

    python -m inputopt.zoo.train_digits --variant a --seed 0 --out inputopt/zoo/weights/digits_a.pt
    python -m inputopt.zoo.train_digits --variant b --seed 1 --out inputopt/zoo/weights/digits_b.pt
"""

from __future__ import annotations

import argparse
import time
from typing import Any
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inputopt.zoo.digits import DIGITS_VARIANTS, DigitsCNN, load_digits_split, weights_path


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Shift every image by its own random integer offset, filling with zeros.

    Args:
        x: Images of shape ``(B, C, H, W)``.
        max_shift: Largest shift in pixels along each axis.
        generator: Random generator for the offsets.

    Returns:
        Shifted images, same shape as ``x``.
    """
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    return torch.stack(
        [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())]
    )


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Fraction of ``images`` that ``model`` (put in eval mode) classifies correctly."""
    model.eval()
    return (model(images).argmax(dim=1) == labels).float().mean().item()


def train(
    width: int,
    seed: int,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    max_shift: int = 2,
    label_smoothing: float = 0.2,
) -> DigitsCNN:
    """Train a :class:`DigitsCNN` on the train split, deterministically from ``seed``.

    Args:
        width: Width of the network.
        seed: Seed of the weight init, shuffling, dropout and augmentation.
        epochs: Number of passes over the training split.
        batch_size: Mini-batch size.
        lr: Adam learning rate (cosine-annealed to zero).
        weight_decay: Adam L2 weight decay.
        max_shift: Largest random shift in pixels (augmentation); 0 disables it.
        label_smoothing: Label smoothing of the cross-entropy. It keeps the
            logits from saturating, so that the input gradients of the
            cross-entropy do not vanish on confidently classified images
            (which the adversarial demos rely on).

    Returns:
        The trained model in eval mode.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = load_digits_split("train")
    model = DigitsCNN(width=width)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(images) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
    )
    return fit_epochs(model, optimizer, scheduler, images, labels, epochs, batch_size, max_shift, label_smoothing,
                      generator)


def fit_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, images: Tensor, labels: Tensor,
               epochs: int, batch_size: int, max_shift: int, label_smoothing: float, generator: torch.Generator,
               log_every: int = 1) -> nn.Module:
    """The training loop of the demo networks (the digits CNNs and ViT): shuffled mini-batches of randomly
    shifted images, cross-entropy with label smoothing, a scheduler step per batch; returns the model in eval
    mode."""
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(images), batch_size):
            idx = order[start : start + batch_size]
            x = random_shift(images[idx], max_shift, generator)
            loss = F.cross_entropy(model(x), labels[idx], label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % log_every == 0 or epoch + 1 == epochs:
            print(f"epoch {epoch + 1:3d}/{epochs}  train loss {total / len(images):.4f}", flush=True)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=sorted(DIGITS_VARIANTS), default="a")
    parser.add_argument("--width", type=int, default=None, help="default: the variant's width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-shift", type=int, default=2)
    parser.add_argument("--label-smoothing", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=None, help="default: the shipped weights path")
    args = parser.parse_args(argv)

    width = args.width if args.width is not None else DIGITS_VARIANTS[args.variant]
    out = args.out if args.out is not None else weights_path(args.variant)
    start = time.perf_counter()
    model = train(
        width,
        args.seed,
        epochs=args.epochs,
        lr=args.lr,
        max_shift=args.max_shift,
        label_smoothing=args.label_smoothing,
    )
    elapsed = time.perf_counter() - start

    test_images, test_labels = load_digits_split("test")
    train_images, train_labels = load_digits_split("train")
    n_test = len(test_labels)
    test_acc = accuracy(model, test_images, test_labels)
    print(f"train accuracy {accuracy(model, train_images, train_labels):.4f}")
    print(
        f"held-out test accuracy {test_acc:.4f} "
        f"({round(test_acc * n_test)}/{n_test}), trained in {elapsed:.1f}s"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state_dict, out)
    print(f"saved state_dict to {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
