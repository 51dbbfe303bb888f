"""One run per results folder: an exclusive lock held for the whole run.

`results/.<name>.lock` (beside the folder, so that `--overwrite` moving the folder aside cannot drop it) is locked
with `fcntl.flock` and records who holds it (pid, host, start time, command line). The kernel releases the lock
when its process ends in any way (exit, Ctrl-C, kill -9, a crash), so a lock is never stale on the machine that took
it: a later run finds the file unlocked and takes it over. The record stays behind only as a note, and only when
the run wrote its folder: a run refused before that (bad input) removes its lock file, and the results parent if
the lock created it and it is still empty, so that nothing is left behind.

On a file system without working `flock` (some network mounts) the lock cannot be taken and the run is refused with
that reason; `RANKBITS_NO_LOCK=1` skips the lock there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from trainables.errors import ConfigError


def lock_path(root: Path) -> Path:
    """The lock file of the results folder `root` (results/<name> -> results/.<name>.lock)."""
    return root.parent / f".{root.name}.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return (
            f"process {info['pid']} on {info['host']} since {info['started']} "
            f"({' '.join(info['argv'])[:160]})"
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def folder_lock(root: Path) -> Iterator[Path]:
    """Hold the results folder `root` for this process until the block ends. Yields the lock file's path.

    Raises ConfigError (exit 2) naming the holding process when another run holds it."""
    if os.environ.get("RANKBITS_NO_LOCK") == "1":
        yield lock_path(root)
        return
    path = lock_path(root)
    made_parent = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"results folder {str(root)!r} is in use by {_holder(path)}; wait for it to finish, stop it, "
                "or choose another --name"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot lock {str(path)!r} ({exc.strerror}); on a file system without flock set "
                "RANKBITS_NO_LOCK=1 and make sure no other run uses this --name"
            ) from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
        }
        locked = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        yield path
    finally:
        if locked and not root.exists():  # refused before writing anything: leave nothing behind
            _remove_quietly(path, path.parent if made_parent else None)
        os.close(fd)  # closing the descriptor releases the lock


def _remove_quietly(lock_file: Path, parent: Path | None) -> None:
    """Remove `lock_file` (held by this process) and `parent` if it is now empty."""
    with contextlib.suppress(OSError):
        lock_file.unlink()
    if parent is not None:
        with contextlib.suppress(OSError):
            parent.rmdir()  # fails, and is kept, when anything else is in it
