"""The ``inputopt`` command: ``inputopt fit --config configs/<name>.yaml`` (LightningCLI, in
:mod:`inputopt.commands.fit`), ``inputopt layers NETWORK`` and the other :data:`SUBCOMMANDS`.

This module imports no Lightning: each subcommand's module is imported when it is called, so that
``inputopt layers`` starts in the time it takes to build the network."""

from __future__ import annotations

import os
import signal
import sys
import warnings

__all__ = ["SUBCOMMANDS", "close_process_group", "main"]


#: The subcommands: name -> ("module:function", one-line help). Imported only when called, so that
#: ``inputopt layers`` does not pay for the others (Lightning included), and no module imports this one.
SUBCOMMANDS = {
    "fit": ("inputopt.commands.fit:fit_main", "optimize the input of a network: feature visualization or an attack on a "
                                         "few images"),
    "attack": ("inputopt.commands.runners:attack_main", "evaluate an attack over a data set (robust accuracy, norms, ...)"),
    "examples": ("inputopt.commands.runners:examples_main", "find the top-k natural images of every unit of a layer"),
    "invert": ("inputopt.commands.runners:invert_main", "feature inversion: for every image of a data set, an input "
                                                        "whose activations at a layer match the image's"),
    "sweep": ("inputopt.commands.sweep:sweep_main", "visualize many units, chunk by chunk, resumable, on any devices"),
    "universal": ("inputopt.commands.universal:universal_main", "one input for a whole data set: a universal "
                                                                 "perturbation or an adversarial patch, on any devices"),
    "layers": ("inputopt.commands.layers:layers_main", "list a network's layers: dotted names, types, output shapes"),
    "atlas": ("inputopt.atlas.run:atlas_main", "a static web site of every unit of some layers: visualizations, "
                                               "dataset examples, metrics"),
}

USAGE = """usage: inputopt <command> [options]

commands:
{commands}
Run `inputopt <command> --help` for the options of a command.
"""


#: The errors a user fixes by changing an argument, a config or a file: the command prints them as one line.
USER_ERRORS = (ValueError, TypeError, OSError, OverflowError,  # OSError: missing, read-only, full disk
               FloatingPointError)  # FloatingPointError: NonFiniteError, a run that went NaN


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``inputopt`` command: ``inputopt <command> ...``, one of :data:`SUBCOMMANDS`.

    As the command (``argv`` None: the console script, ``python -m inputopt.cli``), an error the user can fix
    (a bad value, a missing file, a locked run folder, a run that went non-finite) is printed as one line,
    ``inputopt <command>: error: <message>``, with exit code 1 (2 for a bad option or config file); ``--debug``
    (anywhere on the command line) or
    the environment variable ``INPUTOPT_DEBUG=1`` keeps the whole traceback. Called from Python with a list
    of arguments, it raises the exception.
    """
    if argv is not None:
        return _main(list(argv))
    argv = sys.argv[1:]
    debug = "--debug" in argv or os.environ.get("INPUTOPT_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        _main(argv)
    except USER_ERRORS + _library_errors() as error:
        if debug:
            raise
        command = f"inputopt {argv[0]}" if argv else "inputopt"
        message = " ".join(str(error).split()) or type(error).__name__  # one line, whatever the error says
        if isinstance(error, OSError) and error.filename is not None and error.strerror:
            message = f"{error.strerror}: {error.filename!r}"  # no [Errno 30]: what happened, and to which file
        if isinstance(error, OverflowError):
            message = f"a number is too large: {message}"
        print(f"{command}: error: {message}\n(--help shows the options; --debug or INPUTOPT_DEBUG=1 the traceback)",
              file=sys.stderr)
        raise SystemExit(getattr(error, "exit_code", 1)) from None


def _library_errors() -> tuple[type[BaseException], ...]:
    """The library's own error classes that are not among :data:`USER_ERRORS`, where already imported (the
    command that raised one imported it)."""
    found = []
    for module, name in (("inputopt.callbacks.checkpoints", "RunLockedError"),
                         ("inputopt.networks", "WeightsUnavailableError"),
                         ("lightning.fabric.utilities.exceptions", "MisconfigurationException")):
        error = getattr(sys.modules.get(module), name, None)
        if isinstance(error, type):
            found.append(error)
    return tuple(found)


def _main(argv: list[str]) -> None:
    import importlib

    # the user's own modules in the current folder can be imported (once allowed: allow_packages), but after the
    # installed packages: a torch.py or lightning.py there does not shadow the real one
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    if not argv or argv[0] in ("-h", "--help"):
        rows = {name: help_ for name, (_, help_) in SUBCOMMANDS.items()}
        width = max(map(len, rows)) + 2
        commands = "".join(f"  {name:<{width}}{help_}\n" for name, help_ in rows.items())
        print(USAGE.format(commands=commands), end="")
        return
    if argv[0] not in SUBCOMMANDS:
        print(f"inputopt: unknown command {argv[0]!r}; the commands are {', '.join(SUBCOMMANDS)} "
              f"(`inputopt --help`)", file=sys.stderr)
        raise SystemExit(2)
    with warnings.catch_warnings():
        # the command line, passed on as `args`: not the mix of two command lines that Lightning warns about
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        module, function = SUBCOMMANDS[argv[0]][0].split(":")
        from inputopt._resolve import command_scope

        try:
            with command_scope():  # the packages a config allows are its command's only
                getattr(importlib.import_module(module), function)(argv[1:])
        except SystemExit as stop:
            # Lightning stops a run on SIGTERM (after its checkpoint) with a SystemExit that has no code, which
            # exits 0: an interrupted run exits as a process killed by SIGTERM does, 128 + 15
            if stop.code is None and type(stop).__name__ == "SIGTERMException":
                print("inputopt: the run was stopped by SIGTERM", file=sys.stderr)
                raise SystemExit(128 + signal.SIGTERM) from stop
            raise
        finally:
            close_process_group()


def close_process_group() -> None:
    """Close the process group a multi-device run opened (Lightning leaves it open), so that the process exits
    cleanly: without it, gloo's worker threads can outlive the interpreter, and the process aborts at exit
    ("terminate called without an active exception", exit code -6) after a run that went well. A no-op when
    no process group is open.

    Example:
        >>> close_process_group()  # nothing open: nothing to do
    """
    distributed = sys.modules.get("torch.distributed")  # imported by any run that could have opened one
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


if __name__ == "__main__":
    main()
