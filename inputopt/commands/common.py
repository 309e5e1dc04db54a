"""What every command line shares."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning.pytorch.cli import LightningCLI

__all__ = ["FIT_TRAINER_DEFAULTS", "import_components", "lightning_cli"]

#: The trainer defaults of a fit (``inputopt fit`` and ``inputopt sweep``, which takes a fit's arguments).
FIT_TRAINER_DEFAULTS = {"max_steps": 250, "log_every_n_steps": 1}


def import_components() -> None:
    """Import every module of the names in :data:`inputopt.__all__`, so that a config can name any of its
    classes by its short name (``class_path: SaveImages``): the command lines resolve a short name among the
    classes already imported, and the package itself imports its modules only when first used.

    Example:
        >>> import sys
        >>> import_components()
        >>> "inputopt.callbacks" in sys.modules
        True
    """
    import inputopt

    for module in inputopt._EXPORTS:
        importlib.import_module(module)


def lightning_cli(model_class: type, args: Sequence[str] | None, *, cli_class: type[LightningCLI] | None = None,
                  run: bool = False, fit_defaults: bool = False, prog: str | None = None,
                  description: str | None = None, **kwargs: Any) -> LightningCLI:
    """The one ``LightningCLI`` factory of every subcommand: short class names in configs
    (:func:`import_components`), seed 0 by default, ``config.yaml`` overwritten in a run folder that is used
    again, and no warning about ``args`` (each command passes its own part of the command line).

    Args:
        model_class: the ``LightningModule`` (an :class:`~inputopt.module.InputOptimization` or a runner).
        args: the command's arguments (``None``: ``sys.argv[1:]``).
        cli_class: a ``LightningCLI`` subclass (default ``LightningCLI``).
        run: run the subcommand (``fit``) after parsing; else the caller runs ``cli.trainer``.
        fit_defaults: the defaults of a fit: :data:`FIT_TRAINER_DEFAULTS`, optimizers from the module.
        prog: the program name in ``--help``.
        description: the description in ``--help``.
        **kwargs: other ``LightningCLI`` arguments, which win over the ones above.

    Example:
        >>> from inputopt.runners.examples import DatasetExamples
        >>> cli = lightning_cli(DatasetExamples, ["--config", "configs/digits_examples.yaml",
        ...                     "--model.dataset.init_args.limit", "8", "--trainer.callbacks", "[]"],
        ...                     trainer_defaults={"logger": False})
        >>> type(cli.model).__name__, len(cli.model.dataset)
        ('DatasetExamples', 8)
    """
    from lightning.pytorch.cli import LightningCLI

    from inputopt._notices import quiet_commands

    import_components()  # short class names in the config
    quiet_commands()  # Lightning's tips and a warning about its internals
    options: dict[str, Any] = dict(args=None if args is None else list(args), run=run, seed_everything_default=0,
                                   save_config_kwargs={"overwrite": True})
    if fit_defaults:
        options.update(trainer_defaults=dict(FIT_TRAINER_DEFAULTS), auto_configure_optimizers=False)
    parser_kwargs = {key: value for key, value in (("prog", prog), ("description", description)) if value is not None}
    if parser_kwargs:
        options["parser_kwargs"] = parser_kwargs
    options.update(kwargs)
    with warnings.catch_warnings():
        # the command's own arguments, passed on as `args`: not the mix of two command lines Lightning warns about
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return (cli_class or LightningCLI)(model_class, **options)
