"""Data sets that work offline, for dataset runners (``inputopt attack``): samples are ``(image, label)``.

:class:`Digits` (the zoo's digits), :class:`ImageFolder` (your own images), :class:`WebDataset` (tar shards,
streamed; the ``webdataset`` extra), and real photographs
(:mod:`inputopt.data.photos`): :class:`Photos` (labelled 224 px photos) and :class:`PhotoCrops` (many
224 px crops of them).
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import IterableDataset, TensorDataset
from torchvision import datasets, transforms

from inputopt.data.photos import PhotoCrops, Photos, photo

__all__ = ["Digits", "ImageFolder", "PhotoCrops", "Photos", "UnreadableImageError", "WebDataset", "image_transform",
           "photo"]


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


def _check_image_shape(image_shape: Sequence[int]) -> None:
    if len(image_shape) != 3 or image_shape[0] not in (1, 3) or not all(
            isinstance(s, int) and s > 0 for s in image_shape):
        raise ValueError(f"image_shape must be (C, H, W) with C 1 or 3, got {tuple(image_shape)}")


def _to_rgb(image):
    return image.convert("RGB")


def image_transform(image_shape: Sequence[int]) -> Callable:
    """PIL image -> ``image_shape`` tensor in [0, 1]: RGB (3 channels) or grayscale (1 channel), resized (shorter
    side) and centre-cropped to ``(H, W)``.

    Example:
        >>> from PIL import Image
        >>> image_transform((3, 32, 48))(Image.new("L", (100, 50))).shape
        torch.Size([3, 32, 48])
    """
    _check_image_shape(image_shape)
    channels, height, width = image_shape
    steps = [transforms.Grayscale(1)] if channels == 1 else [transforms.Lambda(_to_rgb)]
    steps += [transforms.Resize(min(height, width)), transforms.CenterCrop((height, width)), transforms.ToTensor()]
    return transforms.Compose(steps)


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
        _check_image_shape(image_shape)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolder: no folder {str(root)!r}")
        self._class_to_idx = class_to_idx
        super().__init__(str(root), transform=image_transform(image_shape))

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


class WebDataset(IterableDataset):
    """Tar shards in the WebDataset layout (``0001.jpg``, ``0001.cls``, ...), streamed: samples ``(image, label)``
    with the image resized and centre-cropped as by :class:`ImageFolder`, in the order of the shards. Reads
    with the ``webdataset`` package (``pip install -e '.[webdataset]'``). Every sample is decoded only by the
    process (and loader worker) that takes it; an image that cannot be decoded raises
    :class:`UnreadableImageError`, which :class:`~inputopt.runners.examples.DatasetExamples` skips and counts.

    Args:
        urls: the shards: a path, a brace pattern (``"shards/train-{0000..0099}.tar"``) or a list.
        image_shape: ``(C, H, W)``, ``C`` 1 or 3.
        image_keys: the extensions an image may have in a sample (the first present is read).
        label_key: the extension of the label (an integer as text); ``None``: samples are images only.

    Example:
        >>> WebDataset("shards/val-{0000..0049}.tar", image_shape=(3, 224, 224))  # doctest: +SKIP
    """

    def __init__(self, urls: str | Sequence[str], image_shape: Sequence[int] = (3, 224, 224),
                 image_keys: Sequence[str] = ("jpg", "jpeg", "png", "webp"), label_key: str | None = "cls") -> None:
        try:
            import webdataset  # noqa: F401
        except ImportError as error:
            raise ImportError("WebDataset needs the webdataset package: pip install -e '.[webdataset]'") from error
        _check_image_shape(image_shape)
        self.urls = urls if isinstance(urls, str) else list(urls)
        self.image_shape = list(image_shape)
        self.image_keys, self.label_key = list(image_keys), label_key
        self._transform = image_transform(image_shape)

    def __iter__(self) -> Iterator[Callable[[], tuple]]:
        import webdataset as wds

        # every sample of every shard, in order, on every process: the dataset runner picks each one's share
        raw = wds.WebDataset(self.urls, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
        for sample in raw:
            yield functools.partial(self._decode, sample)

    def _decode(self, sample: dict) -> tuple | torch.Tensor:
        from PIL import Image

        key = next((k for k in self.image_keys if k in sample), None)
        name = sample.get("__key__", "?")
        if key is None:
            raise UnreadableImageError(f"WebDataset: sample {name!r} has no image ({self.image_keys})")
        try:
            with Image.open(io.BytesIO(sample[key])) as image:
                tensor = self._transform(image)
        except (OSError, SyntaxError, ValueError) as error:  # what PIL raises for a corrupt or truncated file
            raise UnreadableImageError(f"WebDataset: cannot read the image of sample {name!r}: {error}") from error
        if self.label_key is None:
            return tensor
        return tensor, int(sample[self.label_key].decode().strip())
