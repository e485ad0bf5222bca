"""Atomic writes: a reader sees the old version or the new one, never a half-written one."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `path`; on success it replaces `path` in one rename.

    If the body raises, `path` is untouched and the temporary folder is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(as_umask_allows(0o777))  # mkdtemp makes it private; the result should look like any other folder
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def as_umask_allows(mode: int) -> int:
    """`mode` less what the process's umask takes away: what open() and mkdir() would give a new file or folder."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def writer_temporary_directory(parent: Path, prefix: str) -> Path:
    """A new folder `parent/<prefix><pid>-<random>`, with the permissions of any new folder (it becomes the result):
    the pid in its name tells `remove_folders_of_dead_writers` whether the process writing it still runs."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
    folder.chmod(as_umask_allows(0o777))
    return folder


def remove_folders_of_dead_writers(parent: Path, prefix: str) -> list[Path]:
    """Remove the folders `parent/<prefix><pid>-*` whose process no longer runs (killed while writing: nothing ran
    its clean-up), and those of an older naming without a pid. Returns what was removed."""
    removed = []
    for path in sorted(parent.glob(f"{glob.escape(prefix)}*")) if parent.is_dir() else []:
        pid = path.name[len(prefix):].split("-")[0]
        if path.is_dir() and not (pid.isdigit() and _running(int(pid))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def file_written_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary name beside `path` (`.NAME.tmp.SUFFIX`: the suffix kept for writers that infer the format
    from it); when the body returns, the file there replaces `path` in one rename; if it raises, it is removed."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp{target.suffix}")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Replace the file at `path` with `text` in one rename."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, target)


def save_tensors(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, with the file readable as the umask allows like any other (safetensors writes it
    0600). Callers write into a temporary folder or name and move it into place."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    Path(path).chmod(as_umask_allows(0o666))


# `.NAME.tmp-*` and `.NAME.old-*` folders of atomic_directory, `.NAME.tmp` files of write_text_atomically
INTERRUPTED_WRITE = re.compile(r"\.(?P<target>.+)\.(?P<kind>tmp|tmp-\w+|old-\w+)")


def clear_interrupted_writes(folder: str | os.PathLike) -> list[str]:
    """Clear what atomic_directory and write_text_atomically left in `folder` when their process died before its
    `finally` ran (SIGKILL, the out-of-memory killer, a power cut): temporaries are removed, and a folder moved aside
    to `.NAME.old-*` goes back to NAME if the new one never took its place. Returns the names cleared. Only for a
    folder with one owner that is not writing now (e.g. a training run's output, at its start): a write under way
    has the same temporaries (`remove_folders_of_dead_writers` tells them apart by pid, where many write)."""
    folder = Path(folder)
    cleared = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = INTERRUPTED_WRITE.fullmatch(entry.name)
        if match is None:
            continue
        target, moved_aside = folder / match["target"], entry / match["target"]
        if match["kind"].startswith("old-") and moved_aside.exists() and not target.exists():
            os.replace(moved_aside, target)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        cleared.append(entry.name)
    return cleared


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM (what `kill`, job schedulers and container runtimes send) raise SystemExit(143) like Ctrl-C
    raises KeyboardInterrupt, so `finally` blocks run and unfinished atomic writes remove their temporary folders.
    Python's default for SIGTERM ends the process without running them. Call it from the main thread."""
    signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum: int, frame) -> None:
    raise SystemExit(128 + signum)
