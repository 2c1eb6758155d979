"""Atomic file and folder writes, file checksums and the cache location."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

# The prepared MNIST in the cache folder: uint8 x_train, y_train, x_test, y_test (Keras' layout),
# with a JSON record of its SHA-256 beside it (`verified_file`).
MNIST_FILE = "mnist.npz"


def cache_dir() -> Path:
    """`$TRIPLETLAB_CACHE`, else `$XDG_CACHE_HOME/tripletlab`, else `~/.cache/tripletlab`."""
    if os.environ.get("TRIPLETLAB_CACHE"):
        return Path(os.environ["TRIPLETLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tripletlab"


def verified_file(path: Path) -> bool:
    """Whether `path` exists and matches the `file_sha256` recorded in the JSON file beside it
    (same name, `.json`)."""
    record = Path(path).with_suffix(".json")
    if not (Path(path).is_file() and record.is_file()):
        return False
    try:
        recorded = json.loads(record.read_text())
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(recorded, dict):
        return False
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() == recorded.get("file_sha256")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename, so readers never see half."""
    with atomic_writer(path) as out:
        out.write(data)


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file to fill that replaces `path` when the block ends without an error (a
    temporary sibling, synced, then renamed); on an error `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        fsync_folder(path.parent)  # the rename too reaches the disk before what follows
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask, as it was when this module was imported: reading it means setting
    it, and a file another thread made in between would get mode 0666."""
    return _UMASK


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_json(path: Path, payload: Any) -> None:
    """Write `payload` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (memory stays flat whatever its size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` reach the disk."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


# How long a swap waits for another's (which holds the lock for two renames).
SWAP_WAIT_SECONDS = 30.0


@contextmanager
def _swap_lock(parent: Path) -> Iterator[None]:
    """Hold the swaps of `parent`'s folders (flock on the folder itself, across threads and
    processes): a reader's `restore_interrupted` cannot run between a writer's two renames.
    Where the file system has no such lock (NFS refuses an exclusive flock on a folder,
    Lustre without its flock option), swaps go on without it, as before it existed.

    Raises:
        TimeoutError: another process held the lock for `SWAP_WAIT_SECONDS` (stopped, say).
    """
    try:
        handle = os.open(parent, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + SWAP_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another process has held {parent} for over "
                                       f"{SWAP_WAIT_SECONDS:.0f} s while replacing a folder "
                                       "in it; is it stopped?") from None  # fmt: skip
                time.sleep(0.01)
            except OSError:  # no flock here (EBADF, ENOLCK, ENOSYS, EOPNOTSUPP)
                break
        yield
    finally:
        os.close(handle)  # releases the lock


def restore_interrupted(directory: Path) -> bool:
    """Put back the previous `directory` if a swap by `atomic_folder` was cut between its two
    renames (the old folder moved aside, the new one not yet in place), and remove what a
    swap cut later left aside. Returns whether it put a folder back."""
    directory = Path(directory)
    if not directory.parent.is_dir():
        return False
    pattern = f".{glob.escape(directory.name)}.old.*"
    if not any(directory.parent.glob(pattern)):
        return False
    restored = False
    with _swap_lock(directory.parent):
        for aside in directory.parent.glob(pattern):
            if not directory.exists() and (aside / directory.name).is_dir():
                os.replace(aside / directory.name, directory)
                restored = True
            # Else the folder is there: a swap cut after its second rename left the old one.
            shutil.rmtree(aside, ignore_errors=True)
    return restored


@contextmanager
def atomic_folder(directory: Path) -> Iterator[Path]:
    """Write a folder as a whole: yields a temporary sibling to fill; on success its files are
    synced and it replaces `directory`, on error it is removed and `directory` is left as it
    was. The old folder is moved aside until the new one is in place (and moved back if that
    fails); a kill between the two renames is undone by `restore_interrupted`, which the next
    write (and the index reader) call first. Swaps in one parent folder take turns."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(directory)
    temp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        yield temp
        for folder, _, files in os.walk(temp):
            for name in files:
                with open(os.path.join(folder, name), "rb") as handle:
                    os.fsync(handle.fileno())
            fsync_folder(Path(folder))
        temp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; give the usual mode
        with _swap_lock(directory.parent):
            if not directory.exists():
                os.replace(temp, directory)
                fsync_folder(directory.parent)
                return
            aside = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.old."))
            os.replace(directory, aside / directory.name)
            try:
                os.replace(temp, directory)
            except BaseException:
                os.replace(aside / directory.name, directory)
                raise
            # No longer one to put back, even if removing it is cut short (Ctrl-C): a later
            # restore would otherwise bring this old folder back after the user deleted it.
            with contextlib.suppress(FileNotFoundError):  # removed by a reader (no flock)
                os.replace(aside / directory.name, aside / "superseded")
            fsync_folder(directory.parent)
        shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def shown_name(name: str) -> str:
    """A file name as text that UTF-8 (JSON, YAML) can carry: the bytes of a name that are
    not UTF-8, which the OS interface decodes to surrogates, shown as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
