"""Data sets that work offline, for dataset runners (``inputopt attack``): samples are ``(image, label)``.

:class:`Digits` (the zoo's digits), :class:`ImageFolder` (your own images), and real photographs
(:mod:`inputopt.data.photos`): :class:`Photos` (labelled 224 px photos) and :class:`PhotoCrops` (many
224 px crops of them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from torch.utils.data import TensorDataset
from torchvision import datasets, transforms

from inputopt.data.photos import PhotoCrops, Photos, photo

__all__ = ["Digits", "ImageFolder", "PhotoCrops", "Photos", "UnreadableImageError", "photo"]


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, not an image). Dataset runners that stream a
    data set (:class:`~inputopt.runners.examples.DatasetExamples`) skip and count such samples."""


class Digits(TensorDataset):
    """The digits zoo's data split (scikit-learn's 8×8 digits as 1×32×32 images in [0, 1]); ``"test"`` is
    the held-out set the zoo models never saw (450 images).

    Args:
        split: ``"train"`` or ``"test"``.
        limit: keep only the first ``limit`` samples (``None``: all).

    Example:
        >>> data = Digits("test", limit=10)
        >>> len(data), data[0][0].shape
        (10, torch.Size([1, 32, 32]))
    """

    def __init__(self, split: str = "test", limit: int | None = None) -> None:
        from inputopt.zoo import load_digits_split

        images, labels = load_digits_split(split)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(f"limit must be an int >= 1 or None, got {limit!r}")
            images, labels = images[:limit], labels[:limit]
        super().__init__(images, labels)


class ImageFolder(datasets.ImageFolder):
    """``torchvision.datasets.ImageFolder`` (one sub-folder per class) that yields tensors of ``image_shape``.

    Images are read with PIL, converted to RGB (3 channels) or grayscale (1 channel), resized (shorter
    side) and centre-cropped to ``(H, W)``, and scaled to [0, 1]. The labels are the sub-folders' indices in
    sorted order (``class_to_idx``); give ``class_to_idx`` to use the network's own indices instead.

    Args:
        root: the folder.
        image_shape: ``(C, H, W)``, ``C`` 1 or 3.
        class_to_idx: sub-folder name → class index of the network (default: sorted order).

    Example:
        >>> ImageFolder("my_images", image_shape=(3, 224, 224))  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike, image_shape: Sequence[int] = (3, 224, 224),
                 class_to_idx: dict[str, int] | None = None) -> None:
        if len(image_shape) != 3 or image_shape[0] not in (1, 3) or not all(
                isinstance(s, int) and s > 0 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) with C 1 or 3, got {tuple(image_shape)}")
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolder: no folder {str(root)!r}")
        channels, height, width = image_shape
        steps = [transforms.Grayscale(1)] if channels == 1 else [transforms.Lambda(lambda im: im.convert("RGB"))]
        steps += [transforms.Resize(min(height, width)), transforms.CenterCrop((height, width)), transforms.ToTensor()]
        self._class_to_idx = class_to_idx
        super().__init__(str(root), transform=transforms.Compose(steps))

    def __getitem__(self, index: int) -> tuple:
        try:
            return super().__getitem__(index)
        except (OSError, SyntaxError, ValueError) as error:  # what PIL raises for a corrupt or truncated file
            raise UnreadableImageError(f"ImageFolder: cannot read image {self.samples[index][0]!r} (item {index}; corrupt, "
                             f"truncated or not an image): {error}") from error

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes, mapping = super().find_classes(directory)
        if self._class_to_idx is not None:
            missing = sorted(set(classes) - set(self._class_to_idx))
            if missing:
                raise ValueError(f"class_to_idx has no index for the sub-folder(s) {missing}")
            mapping = {c: self._class_to_idx[c] for c in classes}
        return classes, mapping
