"""Small offline demo classifiers for scikit-learn's bundled ``digits`` data set.

The data set (1,797 grey-scale 8×8 images of handwritten digits, values 0..16)
ships with scikit-learn, so everything here works without network access. The
images are rescaled to ``[0, 1]`` and bilinearly upsampled to 1×32×32, which is
the input format of :class:`DigitsCNN`.

Example:
    >>> from inputopt.zoo.digits import digits_cnn, load_digits_split
    >>> model = digits_cnn("a")  # pretrained, eval mode
    >>> images, labels = load_digits_split("test")
    >>> images.shape
    torch.Size([450, 1, 32, 32])
    >>> accuracy = (model(images).argmax(1) == labels).float().mean()
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DIGITS_CLASSES",
    "DIGITS_VARIANTS",
    "DigitsCNN",
    "digits_cnn",
    "load_digits_split",
    "weights_path",
]

#: Class names of the digits data set, index ``i`` is the digit ``i``.
DIGITS_CLASSES: list[str] = [str(i) for i in range(10)]

#: Shipped pretrained variants and the ``width`` each was trained with.
DIGITS_VARIANTS: dict[str, int] = {"a": 16, "b": 8}

#: Side length of the upsampled images.
IMAGE_SIZE = 32

_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class DigitsCNN(nn.Module):
    """A small VGG-style CNN for 1×32×32 digit images in ``[0, 1]``.

    Layers are plain and have stable names (see ``named_modules()``):

    Layer name            Layer                            Output shape (per sample)
    ``features.0``        Conv2d(1, w, 3, padding=1)       (w, 32, 32)
    ``features.1``        BatchNorm2d(w)                   (w, 32, 32)
    ``features.2``        ReLU                             (w, 32, 32)
    ``features.3``        MaxPool2d(2)                     (w, 16, 16)
    ``features.4``        Conv2d(w, 2w, 3, padding=1)      (2w, 16, 16)
    ``features.5``        ReLU                             (2w, 16, 16)
    ``features.6``        MaxPool2d(2)                     (2w, 8, 8)
    ``features.7``        Conv2d(2w, 4w, 3, padding=1)     (4w, 8, 8)
    ``features.8``        ReLU                             (4w, 8, 8)
    ``features.9``        MaxPool2d(2)                     (4w, 4, 4)
    ``classifier.0``      Dropout(p)                       (64w,)
    ``classifier.1``      Linear(64w, 64)                  (64,)
    ``classifier.2``      ReLU                             (64,)
    ``classifier.3``      Linear(64, 10)                   (10,) logits

    The feature maps are flattened between ``features`` and ``classifier``
    (as in torchvision's VGG). ReLUs are not in-place, so forward hooks see
    the unmodified output of every layer.

    Args:
        width: Number of channels ``w`` of the first convolution; the later
            ones use ``2w`` and ``4w``.
        num_classes: Number of output logits.
        dropout: Dropout probability before the first linear layer.

    Example:
        >>> model = DigitsCNN(width=8).eval()
        >>> model(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 10])
        >>> isinstance(dict(model.named_modules())["features.4"], nn.Conv2d)
        True
    """

    def __init__(self, width: int = 16, num_classes: int = 10, dropout: float = 0.25) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}")
        self.width = width
        self.num_classes = num_classes
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, kernel_size=3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(4 * w * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Compute class logits.

        Args:
            x: Images of shape ``(B, 1, 32, 32)`` with values in ``[0, 1]``.

        Returns:
            Logits of shape ``(B, num_classes)``.
        """
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def _require_sklearn():
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "The digits demo data needs scikit-learn, which is not installed. "
            "Install it with `pip install scikit-learn` or with the dev extra "
            "(`pip install inputopt[dev]`)."
        ) from err
    return load_digits, train_test_split


def preprocess_digits(raw: Tensor) -> Tensor:
    """Turn raw digits pixels (values 0..16) into 1×32×32 images in ``[0, 1]``.

    Args:
        raw: Tensor of shape ``(N, 64)`` or ``(N, 8, 8)`` with values 0..16.

    Returns:
        Float32 tensor of shape ``(N, 1, 32, 32)`` in ``[0, 1]``: divided by 16,
        then bilinearly upsampled (``align_corners=False``).
    """
    x = raw.to(torch.float32).reshape(-1, 1, 8, 8) / 16.0
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0)


def load_digits_split(split: str = "test") -> tuple[Tensor, Tensor]:
    """Load a fixed, reproducible split of scikit-learn's digits data set.

    The split is ``sklearn.model_selection.train_test_split`` with
    ``test_size=0.25``, ``stratify=labels`` and ``random_state=0``: 1,347
    training and 450 test images.

    Args:
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(images, labels)``: images of shape ``(N, 1, 32, 32)``, float32 in
        ``[0, 1]``; labels of shape ``(N,)``, int64 in ``0..9``.

    Raises:
        ValueError: If ``split`` is not ``"train"`` or ``"test"``.
        ImportError: If scikit-learn is not installed.

    Example:
        >>> images, labels = load_digits_split("train")
        >>> images.shape, labels.shape
        (torch.Size([1347, 1, 32, 32]), torch.Size([1347]))
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    load_digits, train_test_split = _require_sklearn()
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, stratify=data.target, random_state=0
    )
    raw, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
    images = preprocess_digits(torch.as_tensor(raw))
    return images, torch.as_tensor(labels, dtype=torch.int64)


def weights_path(variant: str) -> Path:
    """Path of the shipped state_dict of a pretrained variant.

    Args:
        variant: One of :data:`DIGITS_VARIANTS` (``"a"`` or ``"b"``).

    Returns:
        ``.../inputopt/zoo/weights/digits_{variant}.pt``.

    Raises:
        ValueError: If ``variant`` is unknown.
    """
    if variant not in DIGITS_VARIANTS:
        valid = ", ".join(repr(v) for v in DIGITS_VARIANTS)
        raise ValueError(f"unknown digits variant {variant!r}; valid variants: {valid}")
    return _WEIGHTS_DIR / f"digits_{variant}.pt"


def digits_cnn(variant: str = "a", pretrained: bool = True) -> DigitsCNN:
    """Build a :class:`DigitsCNN` variant, optionally with its shipped weights.

    Variant ``"a"`` is the main demo model; ``"b"`` is trained independently
    (other seed, other width) and is useful to check that a visualization or
    an adversarial example transfers to a second network.

    Args:
        variant: ``"a"`` or ``"b"``.
        pretrained: Load the state_dict shipped in ``inputopt/zoo/weights``.

    Returns:
        The model in eval mode (gradients are left enabled; freeze it with
        ``model.requires_grad_(False)`` if needed).

    Raises:
        ValueError: If ``variant`` is unknown.
        FileNotFoundError: If ``pretrained`` and the weights file is missing.

    Example:
        >>> model = digits_cnn("a")
        >>> model.training
        False
    """
    path = weights_path(variant)
    model = DigitsCNN(width=DIGITS_VARIANTS[variant])
    if pretrained:
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained weights for digits variant {variant!r} not found at {path}; "
                f"train them with `python -m inputopt.zoo.train_digits --variant {variant}`"
            )
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state_dict)
    return model.eval()
