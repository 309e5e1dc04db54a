"""A run's folder and checkpoints: a checkpoint when a run is interrupted, and the lock on the run folder."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from inputopt.engine import NonFiniteError


class CheckpointOnInterrupt(Callback):
    """Keep ``last.ckpt`` the latest state of a run when it stops: on an exception, Ctrl-C or SIGTERM, and at
    its end.

    By default it writes ``last.ckpt`` in the ``ModelCheckpoint``'s directory (else
    ``<log_dir>/checkpoints``), the file ``--ckpt_path last`` resumes from: the state at the moment of the
    interruption replaces the last periodic one. At the end of a run it writes the final state there too
    when a ``ModelCheckpoint(save_last=True)`` keeps one (that one keeps its last *periodic* state: after
    120 steps saved every 50, step 100). It saves only after at least one step of *this* fit: a failure
    before the first step (a bad unit, a refused precision, a bad ``--ckpt_path``, a mismatched resume)
    leaves an existing ``last.ckpt`` as it was. A non-finite stop saves the last finite state, or nothing
    when the optimizer's state itself went non-finite. (Lightning's ``OnExceptionCheckpoint`` would also
    make every later ``fit`` in that directory resume silently, even with another objective; this does not.)

    Args:
        dirpath: where to save (default: see above).
        filename: file name without extension.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.callbacks import ModelCheckpoint
        >>> trainer = Trainer(max_steps=1000, callbacks=[ModelCheckpoint(every_n_train_steps=50, save_last=True),
        ...                                              CheckpointOnInterrupt()])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str = "last") -> None:
        if not filename:
            raise ValueError("filename cannot be empty")
        self.dirpath = dirpath
        self.filename = filename
        self.saved: Path | None = None
        self._first_step: int | None = None

    def path(self, trainer: Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath) / f"{self.filename}.ckpt"
        checkpoint = trainer.checkpoint_callback
        directory = getattr(checkpoint, "dirpath", None) or os.path.join(trainer.log_dir or trainer.default_root_dir,
                                                                          "checkpoints")
        return Path(directory) / f"{self.filename}.ckpt"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._first_step = None  # the step this fit starts from, once it is known

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._first_step = trainer.global_step  # after a resume's checkpoint is restored

    def _stepped(self, trainer: Trainer) -> bool:
        return self._first_step is not None and trainer.global_step > self._first_step

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        if (self._stepped(trainer) and isinstance(checkpoint, ModelCheckpoint) and checkpoint.save_last
                and checkpoint.dirpath):
            last = Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
            trainer.save_checkpoint(last, weights_only=False)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not self._stepped(trainer):
            rank_zero_info(f"inputopt: the run stopped before its first step ({type(exception).__name__}); "
                           f"no checkpoint written")
            return
        path = self.path(trainer)
        try:
            trainer.save_checkpoint(path, weights_only=False)
        except NonFiniteError as error:
            rank_zero_info(f"inputopt: run stopped at step {trainer.global_step}; {error}, so {path} is not "
                           f"overwritten")
            return
        self.saved = path
        rank_zero_info(f"inputopt: run interrupted at step {trainer.global_step} ({type(exception).__name__}); "
                       f"saved {self.saved}, resume with --ckpt_path last")


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


class RunLock:
    """One run folder, one run: hold ``<folder>/run.lock`` (created exclusively, holding the pid) while a run
    writes there. ``inputopt fit`` holds its log folder this way for the whole fit.

    A second run into a held folder fails at once, before writing anything there. A lock left by a process
    that no longer exists (a run killed with SIGKILL) is taken over with a warning. The lock is removed
    when the ``with`` block ends, whether the run succeeded or not.

    Args:
        folder: the run folder (created if missing).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with RunLock(folder):
        ...     with RunLock(folder):
        ...         pass
        Traceback (most recent call last):
        ...
        inputopt.callbacks.checkpoints.RunLockedError: ...
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / "run.lock"

    def _take(self) -> bool:
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w") as file:
            file.write(f"{os.getpid()}\n")
        return True

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._take():
            return self
        text = self.path.read_text().strip() if self.path.exists() else ""
        pid = int(text) if text.isdigit() else None
        if pid is not None and _alive(pid):
            raise RunLockedError(
                f"another run (pid {pid}) is writing into {self.path.parent} ({self.path} exists); wait for it, "
                f"or run into another folder (e.g. another --trainer.logger.init_args.version)")
        warnings.warn(f"taking over the stale lock {self.path} of process {text or '?'}, which no longer runs",
                      stacklevel=2)
        self.path.unlink(missing_ok=True)
        if not self._take():  # another process took it over in the meantime
            raise RunLockedError(f"another run is writing into {self.path.parent} ({self.path} exists)")
        return self

    def __exit__(self, *exc_info) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
