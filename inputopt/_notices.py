"""Lightning's notices that are not the user's business in a run of this library, and the filters that drop them.

- Lightning's "💡 Tip" lines (try litlogger, litmodels): advertisements printed when a Trainer is made. The
  ``inputopt`` commands drop them (:func:`quiet_commands`); a Trainer a user makes in Python is the user's.
- A ``FutureWarning`` from torch about ``LeafSpec``, raised inside Lightning's ``CombinedLoader`` when it wraps
  the data loader of a fit or an evaluation: nothing a user can change. The library's modules drop it for the
  loaders they make (:func:`quiet_data_loaders`), and so do the commands.

Both filters are narrow (one message each) and installed once; every other warning and log line is kept.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_commands", "quiet_data_loaders"]

#: Lightning's logger of rank-zero notices (``rank_zero_info``), which prints the tips.
RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


class _TipFilter(logging.Filter):
    """Drops Lightning's "💡 Tip: ..." advertisements (litlogger, litmodels)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip:")


def quiet_data_loaders() -> None:
    """Ignore torch's ``LeafSpec`` deprecation warning, which Lightning's ``CombinedLoader`` raises on every fit and
    evaluation (``lightning/pytorch/utilities/_pytree.py``): a matter between Lightning and torch.

    Example:
        >>> quiet_data_loaders()
        >>> import warnings
        >>> any("LeafSpec" in str(f[1].pattern) for f in warnings.filters if f[1] is not None)
        True
    """
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)


def quiet_commands() -> None:
    """What the ``inputopt`` commands do before making a Trainer: drop Lightning's tips and the ``LeafSpec``
    warning. Idempotent.

    Example:
        >>> quiet_commands()
        >>> quiet_commands()  # once is enough; twice adds nothing
        >>> sum(isinstance(f, _TipFilter) for f in logging.getLogger(RANK_ZERO_LOGGER).filters)
        1
    """
    logger = logging.getLogger(RANK_ZERO_LOGGER)
    if not any(isinstance(f, _TipFilter) for f in logger.filters):
        logger.addFilter(_TipFilter())
    quiet_data_loaders()
