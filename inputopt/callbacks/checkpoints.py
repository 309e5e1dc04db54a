"""A run's folder and checkpoints: a checkpoint when a run is interrupted, and the lock on the run folder."""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import torch
from collections.abc import Iterator
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from inputopt.engine import NonFiniteError
from inputopt.results import WriteError, atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, writing every checkpoint whole or not at all: into a temporary file
    beside it, synced, then renamed over it (:func:`~inputopt.results.atomic_write`). Lightning's own writes
    its temporary file in the system's temporary folder and then *moves* it, a copy across file systems that
    a full disk leaves truncated. A failed write leaves the previous checkpoint as it was and raises one
    ``OSError`` naming the file. Remote paths (``s3://...``) go through Lightning's.

    :func:`use_atomic_checkpoints` gives it to a Trainer; :class:`~inputopt.InputOptimization` and the
    shared-input runner do so at setup.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(logger=False, plugins=[AtomicCheckpointIO()])
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()  # serialized first, as Lightning does: only the file write can meet a full disk
        torch.save(checkpoint, buffer)
        atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def use_atomic_checkpoints(trainer: Trainer) -> None:
    """Write the checkpoints of ``trainer`` with :class:`AtomicCheckpointIO`, unless it has a checkpoint IO of
    its own (a plugin the user gave).

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(logger=False)
        >>> use_atomic_checkpoints(trainer)
        >>> type(trainer.strategy.checkpoint_io).__name__
        'AtomicCheckpointIO'
    """
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


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
        last = self._model_checkpoint_last(trainer)
        if last is not None and not trainer.checkpoint_callback.last_model_path:
            # the folder's last.ckpt (a previous run's, or this run's before a resume) is the one its
            # ModelCheckpoint replaces: never a last-v1.ckpt beside it
            trainer.checkpoint_callback.last_model_path = str(last)

    @staticmethod
    def _model_checkpoint_last(trainer: Trainer) -> Path | None:
        """The ``last.ckpt`` of the trainer's ``ModelCheckpoint(save_last=True)``, if it has one."""
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint) and checkpoint.save_last and checkpoint.dirpath:
            return Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
        return None

    def _stepped(self, trainer: Trainer) -> bool:
        return self._first_step is not None and trainer.global_step > self._first_step

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        last = self._model_checkpoint_last(trainer)
        if self._stepped(trainer) and last is not None:
            checkpoint = trainer.checkpoint_callback
            checkpoint.last_model_path = str(last)
            trainer.save_checkpoint(last, weights_only=False)
            # the final state is saved: the ModelCheckpoint's own end-of-run save would version it (last-v1.ckpt)
            checkpoint._last_checkpoint_saved = str(last)

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
        except WriteError as error:  # a full disk: the run's own error is the one to report
            rank_zero_info(f"inputopt: run stopped at step {trainer.global_step}; {error}")
            return
        self.saved = path
        rank_zero_info(f"inputopt: run interrupted at step {trainer.global_step} ({type(exception).__name__}); "
                       f"saved {self.saved}, resume with --ckpt_path last")


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


try:  # an advisory lock the kernel drops when its process dies, however it dies
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

#: The locks this process holds: lock file -> [file descriptor, how many times taken, folders it made].
_HELD: dict[str, list] = {}


class RunLock:
    """One run folder, one run: hold ``<folder>/run.lock`` while a run writes there. ``inputopt fit`` holds its
    log folder this way for the whole fit; ``inputopt sweep``, ``attack`` and ``examples``, and the callbacks
    that write results (:class:`~inputopt.callbacks.images.SaveImages` and the runners' savers) hold the
    folders they write into.

    The lock is ``fcntl.flock`` on the file (atomic, and dropped by the kernel when the process dies, even by
    SIGKILL); the file holds the pid, for the message another run gets. A second run into a held folder fails
    at once, before writing anything there. A lock file left by a process that no longer runs is taken over
    with a warning; one whose process still runs (a lock written without ``flock``) is refused. Taking a lock
    this process already holds nests (a fit's folder and its ``SaveImages`` folder may be one), and the lock
    goes when the outermost holder lets go: the file is removed whether the run succeeded or not.

    A run on several processes takes it once: in the process of rank 0, the one that launches the others
    (Lightning's ``ddp`` launcher starts ranks 1, 2, ... with their rank in the environment, and these share
    the run of rank 0: their :meth:`acquire` holds nothing), or in the process that spawned them
    (``ddp_spawn``: a process of the run's process group finds the lock held by its parent, and shares it).

    Use it as a context manager, or :meth:`acquire` and :meth:`release` (idempotent) from a callback.

    Args:
        folder: the run folder (created if missing).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with RunLock(folder):
        ...     with RunLock(folder):  # the same process: nested
        ...         pass
        >>> lock = RunLock(folder).acquire()
        >>> lock.held, lock.release(), lock.held
        (True, None, False)
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / "run.lock"
        self.held = False

    def _key(self) -> str:
        return os.path.realpath(self.path)

    def _refuse(self, text: str) -> RunLockedError:
        who = f"pid {text}" if text.isdigit() else "another process"
        return RunLockedError(
            f"another run ({who}) is writing into {self.path.parent} ({self.path} is held); wait for it, or run into "
            f"another folder (e.g. another --trainer.logger.init_args.version, or another --sweep_dir)")

    def acquire(self) -> RunLock:
        """Take the lock (or nest in this process's hold on it); raises :class:`RunLockedError` when another
        process holds it. Returns ``self``."""
        if self.held:
            return self
        if _process_rank() != 0:  # a process launched by rank 0 for the same run: rank 0 holds the folder
            self.held = True
            return self
        folder = self.path.parent
        created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
        folder.mkdir(parents=True, exist_ok=True)
        key = self._key()
        try:
            if key in _HELD:
                _HELD[key][1] += 1
            else:
                _HELD[key] = [self._flock() if fcntl is not None else self._exclusive(), 1, created]
        except _HeldByLauncher:
            self.held = True
            return self
        except BaseException:
            _remove_empty(created)  # a refused run leaves no folder behind
            raise
        self.held = True
        return self

    def _flock(self) -> int:
        for _ in range(100):
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by a live process
                text = os.pread(handle, 64, 0).decode(errors="replace").strip()
                os.close(handle)
                if text == str(os.getppid()) and _in_process_group():
                    raise _HeldByLauncher from None  # ddp_spawn: the process that spawned this run holds it
                raise self._refuse(text) from None
            try:  # the file may have been removed (and made again) by its holder between open and flock
                same = os.path.samestat(os.fstat(handle), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(handle)
                continue
            text = os.pread(handle, 64, 0).decode(errors="replace").strip()
            if text.isdigit() and int(text) != os.getpid() and _alive(int(text)):  # a lock taken without flock
                os.close(handle)
                raise self._refuse(text)
            if text:
                warnings.warn(f"taking over the stale lock {self.path} of process {text}, which no longer runs",
                              stacklevel=3)
            os.ftruncate(handle, 0)
            os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
            return handle
        raise self._refuse("")

    def _exclusive(self) -> int:  # pragma: no cover - not POSIX: an exclusive create, never a lock in the making
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = self.path.read_text().strip() if self.path.exists() else ""
            if not text.isdigit() or _alive(int(text)):  # an unreadable pid: its writer has not written it yet
                raise self._refuse(text) from None
            warnings.warn(f"taking over the stale lock {self.path} of process {text}, which no longer runs",
                          stacklevel=3)
            self.path.unlink(missing_ok=True)
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                raise self._refuse("") from None
        os.write(handle, f"{os.getpid()}\n".encode())
        return handle

    def release(self) -> None:
        """Let go of the lock (the file is removed when the outermost holder of this process lets go)."""
        if not self.held:
            return
        self.held = False
        key = self._key()
        entry = _HELD.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[key]
            self.path.unlink(missing_ok=True)  # while still holding it: a waiter then sees another file
            os.close(entry[0])
            _remove_empty(entry[2])  # the folders it made, when the run wrote nothing there

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


class _HeldByLauncher(Exception):
    """The lock is held by the process that spawned this one for the same multi-process run."""


def _in_process_group() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _process_rank() -> int:
    """This process's rank in a multi-process run: set by the Trainer, else from the environment the launcher
    gave it (``RANK``, ``LOCAL_RANK``, ...); 0 for a process of its own."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): results are kept, and so are the folders above them
            break


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def run_folders(trainer: Trainer, log_dir: bool = True) -> list[Path]:
    """Every folder a run of ``trainer`` writes into: its log directory (with ``log_dir``) and the folder of
    every callback that has a ``dirpath`` (``SaveImages``, ``ModelCheckpoint``, the runners' savers; ``None``
    is the log directory, as those callbacks read it), each once.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.callbacks.images import SaveImages
        >>> trainer = Trainer(logger=False, default_root_dir="out", callbacks=[SaveImages("shared")])
        >>> [str(p) for p in run_folders(trainer)]
        ['out', 'shared']
    """
    default = Path(trainer.log_dir or trainer.default_root_dir)
    folders = [default] if log_dir else []
    for callback in trainer.callbacks:
        if hasattr(callback, "dirpath"):
            dirpath = getattr(callback, "dirpath")
            folders.append(Path(dirpath) if dirpath else default)
    return list({os.path.realpath(f): f for f in folders}.values())


@contextlib.contextmanager
def hold_run_folders(trainer: Trainer, log_dir: bool = True) -> Iterator[list[RunLock]]:
    """Hold a :class:`RunLock` on every folder of :func:`run_folders` while the block runs: a second run into
    any of them fails before writing anything (two runs with their own logger versions but one
    ``SaveImages(dirpath=shared)`` included)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(RunLock(folder)) for folder in run_folders(trainer, log_dir)]
