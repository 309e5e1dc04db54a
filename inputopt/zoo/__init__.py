"""Pretrained demo models that work offline.

:mod:`inputopt.zoo.digits` holds two small CNNs trained on scikit-learn's
bundled ``digits`` data set (8×8 images upsampled to 1×32×32); see
:func:`digits_cnn` and :func:`load_digits_split`. The training script is
``python -m inputopt.zoo.train_digits``.
"""

from inputopt.zoo.digits import (
    DIGITS_CLASSES,
    DIGITS_VARIANTS,
    DigitsCNN,
    digits_cnn,
    load_digits_split,
)

__all__ = [
    "DIGITS_CLASSES",
    "DIGITS_VARIANTS",
    "DigitsCNN",
    "digits_cnn",
    "load_digits_split",
]
