"""Putting finished work in place in one step, so readers never see half of it; locks so
two processes never write the same thing; and the checks that refuse an output folder
before long work starts (docs/reliability.md)."""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from mdrbench.errors import Busy, UserError


def _old_name(target: Path, pid: int) -> Path:
    return target.with_name(f".{target.name}.old-{pid}")


def swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished `tmp` to `target`; an old `target` is moved aside first and
    deleted only once the new one is in place. A kill between the two renames leaves the
    old copy at `.<name>.old-<pid>`, which `recover_swap` puts back."""
    old = None
    if target.exists():
        old = _old_name(target, os.getpid())
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A new folder `.<name>.tmp-<pid>-<random>` beside `target` to write into; when the
    block ends without an error it is put in place (`swap_into_place`), on any error or
    interrupt it is deleted. Readers of `target` see the old copy or the new, never a half
    of either; the pid in the name lets a later run remove it after a kill."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()  # not mkdtemp: its 0o700 would become the target's mode
    try:
        yield tmp
        swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_file(path: Path, write) -> None:
    """`write(tmp)` then rename over `path` (fsynced first): `path` is old or new, never
    half; `tmp` is `temp_name(path)`, so `remove_stale` clears what a kill left."""
    tmp = temp_name(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_swap(target: Path) -> Path | None:
    """Undo a `swap_into_place` killed between its two renames: when `target` is missing
    and a `.<name>.old-<pid>` of a process that is gone holds the previous copy, rename it
    back. Returns the restored path, or None."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return None
    for old in sorted(target.parent.glob(f".{target.name}.old-*")):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                os.replace(old, target)
            except OSError:
                continue
            return target
    return None


def temp_name(path: Path) -> Path:
    """`.<name>.tmp-<host>-<pid>` beside `path`: where a file is written before it is
    renamed to `path`. Host and pid let `remove_stale` tell a file a killed process left
    (on this machine) from one being written now, on a folder machines share."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


_TEMP = re.compile(r"\..+\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)")


def remove_stale(folder: Path) -> list[Path]:
    """Remove what killed mdrbench processes left in `folder`: temporary files
    (`temp_name`) of processes of this machine that are gone, and lock files no process
    holds (`Lock`; the kernel dropped the lock with its holder). Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    host = socket.gethostname()
    for p in folder.glob(".*"):
        m = _TEMP.fullmatch(p.name)
        if m and p.is_file() and m["host"] in (None, host) and not pid_alive(int(m["pid"])):
            with suppress(OSError):
                p.unlink()
                removed.append(p)
        elif p.name.endswith(".lock") and p.is_file() and _drop_unheld(p):
            removed.append(p)
    return removed


def _open_locked(path: Path, exclusive: bool) -> int | None:
    """A descriptor of `path` holding a non-blocking flock (the caller closes it); None
    when the file cannot be opened (gone); BlockingIOError when a process holds it."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR if exclusive else os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _drop_unheld(path: Path) -> bool:
    """Unlink lock file `path` if no process holds it (taking it first, as `Lock.release`
    unlinks it: a process waiting on it re-checks the inode and retries)."""
    try:
        fd = _open_locked(path, exclusive=True)
    except OSError:
        return False
    if fd is None:
        return False
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
        if same:
            path.unlink()
        return same
    except OSError:
        return False
    finally:
        os.close(fd)


def lock_held(path: Path) -> bool:
    """Whether a process holds the `Lock` at `path` now (without taking it)."""
    try:
        fd = _open_locked(path, exclusive=False)
    except BlockingIOError:
        return True
    except OSError:
        return False
    if fd is not None:
        os.close(fd)
    return False


def temp_dir(parent: Path, name: str) -> Path:
    """A new temporary folder `<name>-<host>-<pid>-<random>` in `parent` (mkdtemp), after
    removing those a killed process of this machine left there (its pid is gone)."""
    prefix = f"{name}-{socket.gethostname()}-"
    for p in Path(parent).glob(f"{prefix}*"):
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


class Lock:
    """An exclusive lock on `path` (flock; the file exists while the lock is held).

    The kernel drops it when the process dies, so a killed run never leaves a lock that
    blocks (its file is reused). `what` names the work in the error another process gets
    while it is held; with `wait`, the caller blocks until the holder releases it instead.
    Re-entrant within one process (hence it serialises processes, not threads)."""

    _held: dict[str, int] = {}  # lock files this process holds -> fd

    def __init__(self, path: Path, what: str, wait: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key = str(self.path.resolve())
        self.fd = None
        if self.key in Lock._held:  # this process holds it already (an outer call)
            return
        for _ in range(10):
            fd = self._try(what, wait)
            try:  # the holder may have released (and unlinked) it in between: retry
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise UserError(f"could not lock {self.path} while {what}: try again.")
        self.fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        Lock._held[self.key] = fd

    def _try(self, what: str, wait: bool = False) -> int:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(5):  # a moment's grace: `remove_stale` may hold it briefly
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                return fd
            except OSError as exc:
                busy = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
                if not busy or attempt == 4:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                    os.close(fd)
                    if not busy:
                        raise
                    by = f" (pid {holder})" if holder.isdigit() else ""
                    raise Busy(
                        f"another mdrbench process{by} is {what} right now: wait for it to "
                        "finish, or write somewhere else."
                    ) from None
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def release(self) -> None:
        if self.fd is not None:
            Lock._held.pop(self.key, None)
            self.path.unlink(missing_ok=True)  # before unlocking: a waiter re-checks the inode
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


@contextmanager
def new_dirs_removed_on_error(path: Path | None) -> Iterator[None]:
    """Should the block fail (a refusal, an error, an interrupt), remove the folders of
    `path` it created (`writable_dir`), deepest first, as long as they are empty: a refused
    command leaves no empty `--out` behind. Folders that existed before are never touched."""
    missing: list[Path] = []
    p = Path(path).expanduser().absolute() if path is not None else None
    while p is not None and not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    try:
        yield
    except BaseException:
        for m in missing:
            try:
                m.rmdir()
            except OSError:  # not empty (or not ours to remove): keep it and its parents
                break
        raise


def check_writable(path: Path, option: str = "--out") -> None:
    """Refuse (UserError naming `option`) a folder that cannot be written, or created, by
    probing it, or the nearest folder above it that exists, with a temporary file:
    nothing is created."""
    path = Path(path).expanduser().absolute()
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        what = path if probe == path else f"{path}: {probe}"
        raise UserError(f"{option} {what} is a file, not a folder: pass a folder.")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".mdrbench-probe-"):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UserError(
            f"cannot write into {option} {path} ({probe}: {why}): pass a folder you can "
            "write to."
        ) from None


def writable_dir(path: Path, option: str = "--out") -> Path:
    """Create folder `path` (and parents) once `check_writable` passes, before any long
    work; a UserError naming `option` otherwise."""
    check_writable(path, option)
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UserError(
            f"cannot write into {option} {path} ({why}): pass a folder you can write to."
        ) from None
    return path
