"""What every command line shares."""

from __future__ import annotations

import importlib
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

if TYPE_CHECKING:
    from lightning.pytorch.cli import LightningCLI

__all__ = ["FIT_TRAINER_DEFAULTS", "MAX_CONFIG_BYTES", "MAX_CONFIG_NODES", "CommandLineError", "check_process_count",
           "guarded_yaml_load", "import_components", "lightning_cli", "prepare_command", "read_config"]

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
    import sys

    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from inputopt._notices import quiet_commands

    import_components()  # short class names in the config
    quiet_commands()  # Lightning's tips and a warning about its internals
    prepare_command(sys.argv[1:] if args is None else args)
    options: dict[str, Any] = dict(args=None if args is None else list(args), run=run, seed_everything_default=0,
                                   save_config_kwargs={"overwrite": True},
                                   parser_class=_one_line_errors(LightningArgumentParser))
    if fit_defaults:
        options.update(trainer_defaults=dict(FIT_TRAINER_DEFAULTS), auto_configure_optimizers=False)
    parser_kwargs = {key: value for key, value in (("prog", prog), ("description", description)) if value is not None}
    if parser_kwargs:
        options["parser_kwargs"] = parser_kwargs
    options.update(kwargs)
    with warnings.catch_warnings():
        # the command's own arguments, passed on as `args`: not the mix of two command lines Lightning warns about
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        base = cli_class or LightningCLI
        return type(base.__name__, (_GuardedCLI, base), {"__doc__": base.__doc__})(model_class, **options)



#: The largest config file a command reads (a config is a few kB; a larger file is a mistake or an attack).
MAX_CONFIG_BYTES = 4 * 2**20

#: The most values a YAML document may hold once its aliases are expanded ("billion laughs" holds 10**9).
MAX_CONFIG_NODES = 100_000


class CommandLineError(ValueError):
    """A bad option, value or config file on the command line: the ``inputopt`` command prints it as one line
    (exit code 2, as argparse); the usage is behind ``--help``."""

    exit_code = 2


def guarded_yaml_load(stream: str, source: str = "a YAML value") -> Any:
    r"""jsonargparse's YAML loading, guarded: text over :data:`MAX_CONFIG_BYTES`, or that expands beyond
    :data:`MAX_CONFIG_NODES` values through aliases, is refused before it is built. Every config and
    every value that the commands parse goes through it (it is jsonargparse's ``yaml`` loader).

    Example:
        >>> guarded_yaml_load("a: [1, 2]")
        {'a': [1, 2]}
        >>> bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        ...     f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
        >>> guarded_yaml_load(bomb)
        Traceback (most recent call last):
        ...
        inputopt.commands.common.CommandLineError: a YAML value: the YAML expands to more than 100000 values ...
    """
    from jsonargparse._loaders_dumpers import yaml_load

    from inputopt.results import check_yaml_expansion

    if len(stream) > MAX_CONFIG_BYTES:
        raise CommandLineError(f"{source} is {len(stream)} characters long, more than a config holds "
                               f"({MAX_CONFIG_BYTES} at most): refused")
    try:
        check_yaml_expansion(stream, source, MAX_CONFIG_NODES)
    except ValueError as error:
        raise CommandLineError(str(error)) from None
    return yaml_load(stream)


def read_config(path: str | os.PathLike, option: str = "--config") -> dict[str, Any]:
    """Read a config file given as ``option``, guarded and with one-line errors: missing, larger than
    :data:`MAX_CONFIG_BYTES`, empty, binary, not YAML, an alias bomb, or not a mapping of options.

    Example:
        >>> "model" in read_config("configs/digits.yaml")
        True
        >>> read_config("no_such.yaml")
        Traceback (most recent call last):
        ...
        FileNotFoundError: --config 'no_such.yaml': no such file
    """
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{option} {str(path)!r}: no such file" if not path.exists() else
                                f"{option} {str(path)!r} is not a file")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise CommandLineError(f"{option} {str(path)!r} is {size} bytes, more than a config holds "
                               f"({MAX_CONFIG_BYTES} at most): refused")
    data = path.read_bytes()
    if not data.strip():
        raise CommandLineError(f"{option} {str(path)!r} is an empty file: give a YAML config")
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "NUL byte")
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandLineError(f"{option} {str(path)!r} is a binary file, not a YAML config") from None
    try:
        config = guarded_yaml_load(text, f"{option} {str(path)!r}")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise CommandLineError(f"{option} {str(path)!r} is not valid YAML{where} ({problem}; truncated?)") from None
    if not isinstance(config, dict):
        raise CommandLineError(f"{option} {str(path)!r} must hold a mapping of options (model:, trainer:, ...), "
                               f"got a {type(config).__name__}")
    return config


def _option_values(args: Sequence[str], option: str) -> list[str]:
    args = [str(a) for a in args]
    values = [args[i + 1] for i, a in enumerate(args[:-1]) if a == option]
    return values + [a.split("=", 1)[1] for a in args if a.startswith(option + "=")]


def prepare_command(args: Sequence[str]) -> list[str]:
    """What every command does before it parses its arguments ``args``: every ``--config`` file is read once,
    guarded (:func:`read_config`); the packages its top-level ``allow_packages:`` names (and
    ``--allow_packages``) are allowed (:func:`inputopt._resolve.allow_packages`); jsonargparse loads YAML with
    :func:`guarded_yaml_load` and imports a ``class_path`` only from the allowed packages. Returns the
    packages allowed.

    Example:
        >>> prepare_command(["--config", "configs/digits.yaml"])[:2]
        ['inputopt', 'torch']
    """
    from jsonargparse import set_loader
    from jsonargparse._common import parsing_settings

    from inputopt import _resolve

    import yaml

    set_loader("yaml", guarded_yaml_load, exceptions=(yaml.YAMLError,))
    for value in _option_values(args, "--config") + _option_values(args, "-c"):
        looks_like_text = "\n" in value or value.lstrip().startswith("{")
        if looks_like_text and not Path(value).expanduser().is_file():
            config = guarded_yaml_load(value, "--config")  # a config given as text
        else:
            config = read_config(value)
        if isinstance(config, dict):
            _resolve.allow_packages(config.get("allow_packages"))
    for value in _option_values(args, "--allow_packages"):
        packages = guarded_yaml_load(value, "--allow_packages")
        _resolve.allow_packages(packages if isinstance(packages, (list, str)) else str(packages))
    allowed = list(_resolve.allowed_packages())
    # jsonargparse imports the class_path of a config itself: the same allowlist, and nothing else (its
    # import-path policy, from 4.52: set here whole, so that one command's packages do not carry over)
    if "import_path_verdicts" not in parsing_settings:
        raise ImportError("inputopt's commands need jsonargparse >= 4.52 (its import-path policy keeps a config "
                          "from importing other packages): pip install -U 'jsonargparse[signatures]>=4.52'")
    parsing_settings["import_path_verdicts"] = {"*": False, **{package: True for package in allowed}}
    parsing_settings["import_paths_enforced"] = True
    return allowed


def _simple_typehint(typehint: Any) -> bool:
    """Whether an option's type holds only plain values (str, numbers, a tensor, lists of them): such an option
    never reads a file's text as its value (jsonargparse would, for a value that is a file's path)."""
    import enum
    from typing import Literal

    import torch

    origin = get_origin(typehint)
    if origin is Union or type(typehint).__name__ == "UnionType":
        return all(_simple_typehint(t) for t in get_args(typehint))
    if origin is Literal:
        return True
    if origin in (list, tuple, Sequence) or str(origin) in ("collections.abc.Sequence",):
        return all(_simple_typehint(t) for t in get_args(typehint) if t is not Ellipsis)
    return typehint in (str, int, float, bool, type(None), torch.Tensor, os.PathLike, Path) or \
        (isinstance(typehint, type) and issubclass(typehint, enum.Enum))


def paths_are_paths(parser) -> None:
    """Every option of ``parser`` whose type holds only plain values takes a path as the path itself, never
    the text of the file it names (``--model.init photo.png`` whose text is ``null`` is that file, not
    ``None``). Options of components (``--model.objective objective.yaml``) still read a config file."""
    from jsonargparse._typehints import ActionTypeHint

    for action in parser._actions:
        if isinstance(action, ActionTypeHint) and _simple_typehint(action._typehint):
            action._enable_path = False


def check_process_count(accelerator: str, devices: int) -> None:
    """Refuse more processes than the machine has CPU cores (``accelerator`` ``cpu``) at once: Lightning would
    launch them one by one until memory runs out (GPUs are counted by Lightning itself).

    Example:
        >>> check_process_count("cpu", 10**6)
        Traceback (most recent call last):
        ...
        inputopt.commands.common.CommandLineError: --trainer.devices 1000000: more processes than this machine's ...
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if accelerator == "cpu" and devices > cores:
        raise CommandLineError(f"--trainer.devices {devices}: more processes than this machine's {cores} CPU "
                               f"core(s) on accelerator 'cpu'; give at most {cores}")


class _GuardedCLI:
    """Mixed into every command's ``LightningCLI``: the ``allow_packages`` option, paths taken as paths, and no
    more processes than the machine has cores."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--allow_packages", type=Union[list[str], None], default=None,
                            help="your own packages whose classes and networks a config may name (besides "
                                 "inputopt, torch, torchvision, timm, lightning, torchmetrics); also "
                                 "INPUTOPT_ALLOW=pkg,other")
        super().add_arguments_to_parser(parser)

    def parse_arguments(self, parser, args) -> None:
        # every option is on the parsers now (a subcommand's own, --ckpt_path, come after add_arguments_to_parser)
        for each in [parser, *getattr(self, "_subcommand_parsers", {}).values()]:
            paths_are_paths(each)
        super().parse_arguments(parser, args)

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        from lightning.pytorch.accelerators import CPUAccelerator

        check_process_count("cpu" if isinstance(trainer.accelerator, CPUAccelerator) else "other", trainer.num_devices)
        if str(trainer.precision) in ("64-true", "64"):  # torch would fail at the first forward: float input
            raise CommandLineError(f"--trainer.precision {trainer.precision!r} is not supported: the images and the "
                                   f"networks stay float32; use '32-true', '16-mixed' or 'bf16-mixed'")
        return trainer


def _items(lines: list[str]) -> list[str]:
    """The ``- reason`` items of a jsonargparse union error, each with its indented continuation lines."""
    items: list[str] = []
    for line in lines:
        text = line.strip()
        if text.startswith("- "):
            items.append(text[2:])
        elif items and text and not text.startswith(("Given value", "Subtypes:", "Errors:")):
            items[-1] += " " + text
    return items


def _accepted(expected: str) -> str:
    """``Expected a <class 'int'>`` -> ``an int``; a ``Literal[...]`` -> ``one of ...``."""
    expected = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", expected).strip().rstrip(".")
    literal = re.fullmatch(r"(?:typing\.)?Literal\[(.*)\]", expected)
    if literal:
        return literal.group(1)
    names = {"int": "an int", "float": "a number", "bool": "true or false", "str": "a string",
             "Sequence": "a list", "list": "a list", "dict": "a mapping", "PositiveInt": "an int > 0",
             "NonNegativeInt": "an int >= 0", "PositiveFloat": "a number > 0", "Tensor": "a tensor"}
    return names.get(expected.rpartition(".")[2], expected)


def one_line(message: str) -> str:
    r"""jsonargparse's error (several lines, the nested reasons of a union type) as one line naming the option,
    the value and what is accepted.

    Example:
        >>> one_line('Parser key "trainer.max_steps":\n  Expected a <class \'int\'>. Got value: abc')
        "--trainer.max_steps: expected an int, got 'abc'"
    """
    message = str(message).strip()
    keys = re.findall(r'Parser key "([^"]+)"', message)
    option = ("--" + keys[0] + "".join(f".init_args.{key}" for key in keys[1:])) if keys else ""
    tail = message[message.rfind('Parser key "'):].split(":", 1)[1] if keys else message
    given = re.search(r"(?:Given|Got) value: (.*)", tail)
    given = given.group(1).split(". Got value:")[0].strip() if given else None
    lines = [line for line in tail.splitlines() if line.strip()]
    items = _items(lines) if any(line.strip().startswith("- ") for line in lines) else [" ".join(lines).strip()]
    expected = [m.group(1) for item in items for m in [re.match(r"Expected an? (.+?)(?:\. Got value: .*)?$", item)]
                if m and not m.group(1).startswith("path but") and "dot import path" not in m.group(1)
                and "NoneType" not in m.group(1)]
    others = [item for item in items if not item.startswith("Expected")
              and not item.startswith("Does not validate")] or items
    if expected and given is not None:
        text = f"expected {' or '.join(dict.fromkeys(_accepted(e) for e in expected))}, got {given!r}"
    else:
        text = " ".join(" ".join(item.split()) for item in others)
        text = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", text)
    if len(text) > 400:
        text = text[:397] + "..."
    return f"{option}: {text}" if option else text


def _one_line_errors(parser_class: type) -> type:
    """``parser_class`` whose errors raise :class:`CommandLineError` (one line) instead of printing the usage
    and exiting; the usage stays behind ``--help``."""

    class OneLineErrors(parser_class):
        def error(self, message: str, ex: Exception | None = None):
            if not self.exit_on_error:  # jsonargparse trying the types of a union: its own exception
                return super().error(message, ex)
            self._logger.error(message)
            raise CommandLineError(one_line(message)) from ex

    OneLineErrors.__name__ = OneLineErrors.__qualname__ = parser_class.__name__
    return OneLineErrors
