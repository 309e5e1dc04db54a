"""Image parameterizations: what the optimizer changes, and how images are made from it."""

from inputopt.params.base import ImageParam
from inputopt.params.fourier import FourierImage
from inputopt.params.maco import MacoImage
from inputopt.params.pixel import PixelImage

__all__ = ["FourierImage", "ImageParam", "MacoImage", "PixelImage", "SaveImportance"]
