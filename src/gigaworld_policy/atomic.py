"""Atomic writes: a reader sees the old version or the new one, never a half-written one."""

from __future__ import annotations

import contextlib
import os
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
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should look like any other folder
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


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Replace the file at `path` with `text` in one rename."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, target)


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM (what `kill`, job schedulers and container runtimes send) raise SystemExit(143) like Ctrl-C
    raises KeyboardInterrupt, so `finally` blocks run and unfinished atomic writes remove their temporary folders.
    Python's default for SIGTERM ends the process without running them. Call it from the main thread."""
    signal.signal(signal.SIGTERM, _raise_system_exit)


def _raise_system_exit(signum: int, frame) -> None:
    raise SystemExit(128 + signum)
