"""Real photographs that work offline: the photos that scikit-image and scikit-learn ship inside their packages.

- :func:`photo` (``photo("chelsea")``): one photo, a ``(3, 224, 224)`` tensor in [0, 1];
- :class:`Photos`: the :data:`PHOTOS`, each with the ImageNet class that EfficientNet-Lite0 *and* -Lite1
  give it (their top-1 agrees; ``tests/data/test_photos.py`` checks it), for attacks and sanity checks;
- :class:`PhotoCrops`: many square crops of the same photographs at 224 px, for dataset examples and
  dataset runs (a natural-image distribution of a few hundred images).

scikit-image and scikit-learn are not runtime dependencies of inputopt: they come with the ``photos``
extra (``pip install 'inputopt[photos]'``, part of ``dev``).

Example:
    >>> from inputopt.data import photo
    >>> x = photo("coffee")
    >>> x.shape, 0 <= x.min().item() <= x.max().item() <= 1
    (torch.Size([3, 224, 224]), True)
"""

from __future__ import annotations

import functools
import importlib
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["PHOTOS", "SOURCES", "PhotoCrops", "Photos", "photo", "photo_names"]

INSTALL_HINT = "pip install 'inputopt[photos]' (from a checkout: pip install -e '.[photos]')"


class PhotoSpec(NamedTuple):
    """One photo of :data:`PHOTOS`: a square crop ``(top, left, size)`` of a source image, and its class."""

    source: str
    top: int
    left: int
    size: int
    label: str


#: The source images: name -> (package, how to read it). All RGB photographs except ``camera`` (grey,
#: repeated to 3 channels).
SOURCES = {
    "astronaut": ("skimage", "astronaut"),     # Eileen Collins, NASA portrait, 512x512
    "camera": ("skimage", "camera"),           # the cameraman on a tripod, grey, 512x512
    "chelsea": ("skimage", "chelsea"),         # a cat, 300x451
    "china": ("sklearn", "china.jpg"),         # a Chinese temple, 427x640
    "coffee": ("skimage", "coffee"),           # a cup of coffee, 400x600
    "flower": ("sklearn", "flower.jpg"),       # a dahlia with a bee, 427x640
    "motorcycle": ("skimage", "stereo_motorcycle"),  # left view, 500x741
    "rocket": ("skimage", "rocket"),           # a rocket on its launch pad, 427x640
}

#: The labelled photos: crops of :data:`SOURCES` on which EfficientNet-Lite0 and -Lite1 agree at top-1
#: (the measured probabilities are in docs/networks.md). ``flower`` is in no photo: no crop of it got
#: the same top-1 class from both networks.
PHOTOS = {
    "astronaut": PhotoSpec("astronaut", 282, 282, 230, "football helmet"),  # the helmet she holds
    "camera": PhotoSpec("camera", 128, 128, 256, "tripod"),
    "chelsea": PhotoSpec("chelsea", 0, 151, 300, "Egyptian cat"),
    "china": PhotoSpec("china", 107, 0, 320, "palace"),
    "coffee": PhotoSpec("coffee", 0, 100, 400, "espresso"),
    "motorcycle": PhotoSpec("motorcycle", 125, 491, 250, "moped"),
    "rocket": PhotoSpec("rocket", 107, 213, 213, "missile"),
    "launch_tower": PhotoSpec("rocket", 0, 0, 213, "crane"),  # the rocket's service tower
}


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"the photos come from scikit-image and scikit-learn; {module!r} is not installed: "
                          f"{INSTALL_HINT}") from error


@functools.lru_cache(maxsize=None)
def source_image(name: str) -> Tensor:
    """A source image of :data:`SOURCES` at its full size: ``(3, H, W)`` float in [0, 1] (read once, cached)."""
    if name not in SOURCES:
        raise ValueError(f"unknown source image {name!r}; valid: {', '.join(SOURCES)}")
    package, item = SOURCES[name]
    if package == "skimage":
        array = getattr(_require("skimage.data"), item)()
        if item == "stereo_motorcycle":
            array = array[0]
    else:
        array = _require("sklearn.datasets").load_sample_image(item)
    image = torch.tensor(array.copy()).float().div(255)
    image = image.expand(3, -1, -1) if image.dim() == 2 else image.permute(2, 0, 1)[:3]
    return image.contiguous()


def _crop(image: Tensor, top: int, left: int, size: int, out: int) -> Tensor:
    """The square ``image[:, top:top+size, left:left+size]`` resized to ``out`` px (antialiased bilinear)."""
    patch = image[None, :, top:top + size, left:left + size]
    return F.interpolate(patch, size=(out, out), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def photo_names() -> list[str]:
    """The names of :data:`PHOTOS`, in order (the order of :class:`Photos`)."""
    return list(PHOTOS)


def photo(name: str, size: int = 224) -> Tensor:
    """The photo ``name`` of :data:`PHOTOS` as a ``(3, size, size)`` tensor in [0, 1].

    A fit takes one as its starting image with ``init="photo:chelsea"`` (``--model.init photo:chelsea``).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        ImportError: scikit-image or scikit-learn is missing (the message names the install command).

    Example:
        >>> photo("chelsea", size=32).shape
        torch.Size([3, 32, 32])
    """
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; valid: {', '.join(PHOTOS)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    spec = PHOTOS[name]
    return _crop(source_image(spec.source), spec.top, spec.left, spec.size, size)


class Photos(Dataset):
    """The labelled photos of :data:`PHOTOS`: ``(image, label)`` with images ``(3, size, size)`` in [0, 1]
    and the ImageNet class index that EfficientNet-Lite0 and -Lite1 both give them.

    Args:
        size: the side in pixels (224: the networks' input).
        names: the photos to keep (default: all, in the order of :data:`PHOTOS`).

    Example:
        >>> data = Photos(size=32)
        >>> len(data) >= 8, data.class_names[data.names.index("coffee")]
        (True, 'espresso')
    """

    def __init__(self, size: int = 224, names: list[str] | None = None) -> None:
        from inputopt.zoo.efficientnet import imagenet_classes

        self.names = list(PHOTOS) if names is None else list(names)
        unknown = [n for n in self.names if n not in PHOTOS]
        if unknown or not self.names:
            raise ValueError(f"unknown photo(s) {unknown or names!r}; valid: {', '.join(PHOTOS)}")
        classes = imagenet_classes()
        self.class_names = [PHOTOS[n].label for n in self.names]
        self.labels = torch.tensor([classes.index(label) for label in self.class_names])
        self.images = torch.stack([photo(n, size) for n in self.names])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]


class PhotoCrops(Dataset):
    """Many square crops of the photographs of :data:`SOURCES`, each resized to ``size`` px: ``(image, source)``
    with ``source`` the index of its photograph in :data:`SOURCES` (not an ImageNet class).

    For each photograph and each scale in ``scales`` (the crop's side as a fraction of the photograph's
    shorter side), crops on a regular grid that overlap by half, left to right and top to bottom; every
    crop is horizontally flipped too when ``flips``. The crops are computed when read (from the cached
    photographs), so a data set is cheap to make.

    Args:
        size: the side of every crop in pixels.
        scales: crop sides as fractions of each photograph's shorter side, in (0, 1].
        flips: add each crop's mirror image.
        sources: the photographs (default: all of :data:`SOURCES`).

    Example:
        >>> data = PhotoCrops(size=32, scales=(1.0, 0.5), sources=["coffee"])
        >>> len(data), data[0][0].shape
        (17, torch.Size([3, 32, 32]))
    """

    def __init__(self, size: int = 224, scales: tuple[float, ...] = (1.0, 0.7, 0.5, 0.35), flips: bool = False,
                 sources: list[str] | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an int >= 1, got {size!r}")
        if not scales or not all(isinstance(s, (int, float)) and 0 < s <= 1 for s in scales):
            raise ValueError(f"scales must be fractions in (0, 1], got {scales!r}")
        self.sources = list(SOURCES) if sources is None else list(sources)
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            raise ValueError(f"unknown source(s) {unknown or sources!r}; valid: {', '.join(SOURCES)}")
        self.size, self.flips = size, flips
        self.crops: list[tuple[int, int, int, int, bool]] = []  # (source index, top, left, side, flipped)
        for index, name in enumerate(self.sources):
            _, height, width = source_image(name).shape
            for scale in scales:
                side = max(1, round(min(height, width) * scale))
                for top in _grid(height, side):
                    for left in _grid(width, side):
                        for flipped in ((False, True) if flips else (False,)):
                            self.crops.append((SOURCES_INDEX[name], top, left, side, flipped))

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        source, top, left, side, flipped = self.crops[index]
        image = _crop(source_image(list(SOURCES)[source]), top, left, side, self.size)
        return (image.flip(-1) if flipped else image), source


SOURCES_INDEX = {name: i for i, name in enumerate(SOURCES)}


def _grid(length: int, side: int) -> list[int]:
    """Offsets of crops of ``side`` along ``length``, overlapping by half, the last one flush with the end."""
    if side >= length:
        return [0]
    count = -(-(length - side) // (side // 2 or 1)) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]
