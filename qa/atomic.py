"""Build a folder beside its final place, then swap it in: readers never see half of one.

The one helper for every generated folder (the index, the prepared model)::

    problem = refusal(target, known_names)    # before any work: a file, or someone else's folder?
                                              # (or refusal(target, marker="DONE") for big folders)
    problem = unwritable(target)              # before any work: can the swap happen at all?
    with exclusive(target, progress):         # one builder at a time, across processes
        with building(target) as work:        # temp sibling; swapped in when the block succeeds
            write files into work

A build killed at any point (even SIGKILL) leaves the previous folder in place, or — if
it died between the two renames of the swap — in a sibling that the next ``building``
(or ``recover``) puts back. Temp folders carry the builder's process id, so leftovers
of dead builders are removed and a live builder's are left alone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = ["building", "exclusive", "fsync", "recover", "refusal", "unwritable"]


def _prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-"


def _owner_alive(name: str, prefix: str) -> bool:
    pid = name[len(prefix) :].split("-", 1)[0]
    if not pid.isdigit():
        return True  # not one of ours: leave it
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def recover(target: Path) -> None:
    """Undo what dead builders left beside ``target``: put back a previous folder whose swap
    was cut short, delete half-written and superseded temp folders."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return
    old_prefix, build_prefix = _prefix(target, "old"), _prefix(target, "building")
    for path in sorted(parent.iterdir(), key=lambda p: p.name):
        if path.name.startswith(old_prefix) and not _owner_alive(path.name, old_prefix):
            if not target.exists():
                os.rename(path, target)  # died mid-swap: the previous folder is the good one
            else:
                shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(build_prefix) and not _owner_alive(path.name, build_prefix):
            shutil.rmtree(path, ignore_errors=True)


def refusal(target: Path, known_names: Iterable[str] = (), marker: str | None = None) -> str | None:
    """Why ``target`` must not be replaced, or None: it is a file, or a non-empty folder
    holding anything but ``known_names`` and without our ``marker`` file (a mistyped path
    must not eat someone's data). The index passes its file names; a folder of many
    files (the prepared model) passes the marker it writes last."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        return f"{target} is a file, not a folder"
    if target.is_dir() and not (marker and (target / marker).is_file()):
        known = set(known_names)
        foreign = sorted(p.name for p in target.iterdir() if p.name not in known)
        if foreign:
            shown = ", ".join(foreign[:3]) + (" …" if len(foreign) > 3 else "")
            return f"{target} is a non-empty folder this project did not make (it holds {shown})"
    return None


def unwritable(target: Path) -> str | None:
    """Why a new ``target`` could not be swapped in, or None. Really tries (creates and
    removes a temp folder beside it), so read-only mounts fail here even for root."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=_prefix(target, "probe"), dir=target.parent)
        os.rmdir(probe)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return f"{target.parent} is on a read-only file system"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"{target.parent} is not writable"
        return f"cannot write in {target.parent} ({exc.strerror or exc})"
    return None


def fsync(path: Path) -> None:
    """Flush a file or a folder to disk (files before the swap, the parent after it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.parent / f"{_prefix(target, 'old')}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    fsync(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def building(target: Path) -> Iterator[Path]:
    """A fresh temp folder beside ``target``; when the block finishes it replaces ``target``
    in two renames. An exception (or Ctrl-C) deletes it and leaves ``target`` untouched.
    The caller fsyncs the files it writes."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    work = Path(tempfile.mkdtemp(prefix=f"{_prefix(target, 'building')}{os.getpid()}-",
                                 dir=target.parent))
    try:
        yield work
        _swap(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


@contextlib.contextmanager
def exclusive(target: Path, progress: Callable[[str], object] | None = None) -> Iterator[None]:
    """One builder of ``target`` at a time, across processes (a second ``qa index``, or a
    server's corpus watcher): the second waits, saying so, then finds the first's result.
    Two builders would otherwise both read the previous build and the last swap would
    silently drop the other's files. The lock is the kernel's ``flock`` on the folder
    that holds ``target`` (no lock file is left behind, and a killed builder never leaves
    it held), so builds of two targets in one folder also take turns. Not re-entrant."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # the build fails later with its own reason
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                progress(f"waiting for another build in {target.parent} to finish…")
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some network mounts): build anyway
            pass
        yield
    finally:
        os.close(fd)  # releases the lock
