"""Writing files so that nothing half-written ever stands under a final name: one place for the whole package.

Every writer goes to a hidden temporary name next to its target (``.partial-<stem>-<pid>-<random><ext>``, keeping the
extension because image writers choose the format by it), is optionally verified, and is renamed into place
(``os.replace``, atomic on one file system). If anything fails, including ``KeyboardInterrupt``, the temporary entry
is removed and the target is untouched; entries left by a killed process are removed later by
:func:`remove_stale_partials`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PARTIAL_PREFIX",
    "STALE_PARTIAL_SECONDS",
    "atomic_folder",
    "file_sha256",
    "partial_path",
    "remove_stale_partials",
    "write_csv_atomic",
    "write_file_atomic",
    "write_text_atomic",
]

PARTIAL_PREFIX = ".partial-"
"""Name prefix of temporary files and folders written before their rename into place."""
STALE_PARTIAL_SECONDS = 3600.0
"""Temporary entries older than this are left over from an interrupted run (never from a running one)."""




def partial_path(folder: Path, name: str) -> Path:
    """A fresh hidden temporary name in ``folder`` for ``name``: unique per process and call, tagged for clean-up.

    It keeps ``name``'s extension (``.nii.gz``, ``.png``, ...), since image writers choose the format by it.
    """
    suffixes = "".join(Path(name).suffixes[-2:] if name.endswith(".gz") else Path(name).suffixes[-1:])
    stem = name[: len(name) - len(suffixes)] if suffixes else name
    return folder / f"{PARTIAL_PREFIX}{stem}-{os.getpid()}-{secrets.token_hex(4)}{suffixes}"


def write_file_atomic(path: str | os.PathLike, write: Callable[[Path], None],
                      verify: Callable[[Path], None] | None = None) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, ``verify(tmp)`` if given, then rename it into place.

    Readers never see a partial file; if ``write`` or ``verify`` raises (or the run is interrupted), the temporary
    file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = partial_path(path.parent, path.name)
    try:
        write(tmp)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8, exactly as given: no newline translation) to ``path`` with :func:`write_file_atomic`."""

    def write(tmp: Path) -> None:
        with open(tmp, "x", encoding="utf-8", newline="") as f:
            f.write(text)

    write_file_atomic(path, write)


def write_csv_atomic(path: str | os.PathLike, rows: Iterable[Sequence[Any]]) -> None:
    """Write ``rows`` (header first) as CSV to ``path`` with :func:`write_file_atomic`, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "x", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(rows)

    write_file_atomic(path, write)


@contextlib.contextmanager
def atomic_folder(final: Path, is_complete: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a new hidden temporary folder next to ``final``; on success rename it to ``final``.

    If the body raises (or the run is interrupted), the temporary folder is deleted and nothing appears under
    ``final``. ``final`` must not exist as a non-empty folder, unless another process may be writing the same item:
    then, if the rename fails but ``is_complete(final)`` says the other copy is whole, the copy just made is dropped.

    Example::

        with atomic_folder(out_dir / "case_001") as tmp:
            save(image, tmp / "image.nii.gz")
    """
    tmp = partial_path(final.parent, final.name)
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if is_complete is None or not is_complete(final):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


_PARTIAL_PID = re.compile(rf"^{re.escape(PARTIAL_PREFIX)}.*-(?P<pid>\d+)-[0-9a-f]{{8}}(\.[^-]*)?$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no way to tell: assume it is still writing
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike) -> None:
    """Delete the temporary files and folders of ``folder`` left by interrupted writes: those of a process that no
    longer runs (the writer's PID is in the name), and any older than :data:`STALE_PARTIAL_SECONDS`."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    now = time.time()
    for entry in folder.iterdir():
        if not entry.name.startswith(PARTIAL_PREFIX):
            continue
        match = _PARTIAL_PID.match(entry.name)
        try:
            dead = match is not None and not _pid_alive(int(match["pid"]))
            if not dead and now - entry.stat().st_mtime <= STALE_PARTIAL_SECONDS:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            pass


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
