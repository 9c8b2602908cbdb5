"""Atomic writes, one place for the package: custom_nets.files."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from custom_nets.files import (
    PARTIAL_PREFIX,
    STALE_PARTIAL_SECONDS,
    atomic_folder,
    file_sha256,
    partial_path,
    remove_stale_partials,
    write_csv_atomic,
    write_file_atomic,
    write_text_atomic,
)




def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(PARTIAL_PREFIX))


def test_write_text_atomic_writes_exact_bytes_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    write_text_atomic(path, "id,x\r\n1,é\n")
    assert path.read_bytes() == "id,x\r\n1,é\n".encode()  # no newline translation
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n" and not leftovers(tmp_path)


def test_write_file_atomic_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_text("old")

    def crash(tmp: Path) -> None:
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_file_atomic(path, crash)
    assert path.read_text() == "old" and not leftovers(tmp_path)
    with pytest.raises(RuntimeError):
        write_file_atomic(tmp_path / "new.png", lambda tmp: (_ for _ in ()).throw(RuntimeError("boom")))
    assert not (tmp_path / "new.png").exists() and not leftovers(tmp_path)


def test_atomic_folder_renames_on_success(tmp_path: Path) -> None:
    final = tmp_path / "case_000"
    with atomic_folder(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".partial-case_000-") and tmp.is_dir()
        assert not final.exists()  # nothing under the final name while writing
        (tmp / "image.txt").write_text("data")
    assert (final / "image.txt").read_text() == "data" and not leftovers(tmp_path)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_folder_leaves_nothing_under_the_final_name_when_the_body_raises(tmp_path: Path, error: type) -> None:
    final = tmp_path / "case_000"
    with pytest.raises(error):
        with atomic_folder(final) as tmp:
            (tmp / "image.txt").write_text("half")
            raise error()
    assert not final.exists() and not leftovers(tmp_path)


def test_atomic_folder_keeps_a_complete_copy_written_meanwhile(tmp_path: Path) -> None:
    final = tmp_path / "case_000"

    def other_process_finishes_first(tmp: Path) -> None:
        final.mkdir()
        (final / "image.txt").write_text("data")  # a complete copy appears meanwhile

    with atomic_folder(final, is_complete=lambda folder: (folder / "image.txt").is_file()) as tmp:
        (tmp / "image.txt").write_text("data")
        other_process_finishes_first(tmp)
    assert (final / "image.txt").read_text() == "data" and not leftovers(tmp_path)
    # an incomplete folder in the way is an error, and the copy is still cleaned up
    blocked = tmp_path / "case_001"
    (blocked / "other").mkdir(parents=True)
    with pytest.raises(OSError):
        with atomic_folder(blocked, is_complete=lambda folder: (folder / "image.txt").is_file()) as tmp:
            (tmp / "image.txt").write_text("data")
    assert not leftovers(tmp_path)


def test_remove_stale_partials_removes_only_old_temporaries(tmp_path: Path) -> None:
    old = time.time() - 2 * STALE_PARTIAL_SECONDS
    (tmp_path / ".partial-old-dir").mkdir()
    (tmp_path / ".partial-old-dir" / "f").write_text("x")
    (tmp_path / ".partial-old-file").write_text("x")
    for name in (".partial-old-dir", ".partial-old-file"):
        os.utime(tmp_path / name, (old, old))
    (tmp_path / ".partial-running").mkdir()  # fresh: another process may be writing it
    (tmp_path / "case_000").mkdir()
    os.utime(tmp_path / "case_000", (old, old))
    remove_stale_partials(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".partial-running", "case_000"]


def test_partial_path_keeps_the_extension_image_writers_choose_the_format_by(tmp_path: Path) -> None:
    for name, ext in (("a.nii.gz", ".nii.gz"), ("x.png", ".png"), ("case_000", ""), ("model.pt", ".pt")):
        tmp = partial_path(tmp_path, name)
        assert tmp.parent == tmp_path and tmp.name.startswith(PARTIAL_PREFIX) and tmp.name.endswith(ext)
        assert tmp != partial_path(tmp_path, name)  # unique per call
    # nibabel picks the format from the temporary name: a .nii.gz written atomically is gzip-compressed NIfTI
    path = tmp_path / "seg.nii.gz"
    write_file_atomic(path, lambda tmp: nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)), str(tmp)))
    assert path.read_bytes()[:2] == b"\x1f\x8b" and nib.load(str(path)).shape == (2, 2, 2)


def test_write_file_atomic_verifies_before_the_rename(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")

    def verify(tmp: Path) -> None:
        if tmp.read_text() != "expected":
            raise ValueError(f"{tmp}: wrong content")

    with pytest.raises(ValueError):
        write_file_atomic(path, lambda tmp: tmp.write_text("corrupt"), verify)
    assert path.read_text() == "old" and not leftovers(tmp_path)
    write_file_atomic(path, lambda tmp: tmp.write_text("expected"), verify)
    assert path.read_text() == "expected" and not leftovers(tmp_path)


def test_write_csv_atomic_creates_the_folder_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "eval" / "metrics.csv"
    rows = [["case", "dice"], ["a,b", "0.5"], ["mean", "0.5"]]
    write_csv_atomic(path, rows)
    with open(path, newline="", encoding="utf-8") as f:
        assert list(csv.reader(f)) == rows
    assert not leftovers(path.parent)


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_sha256(path, chunk=1) == file_sha256(path)


def test_remove_stale_partials_removes_a_killed_writers_file_at_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    killed = tmp_path / f"{PARTIAL_PREFIX}case-a-{dead}-0123abcd.nii.gz"  # fresh, but its writer is gone
    running = partial_path(tmp_path, "case-b.nii.gz")  # this process: still writing
    for path in (killed, running):
        path.write_text("half")
    remove_stale_partials(tmp_path)
    assert not killed.exists() and running.exists()
