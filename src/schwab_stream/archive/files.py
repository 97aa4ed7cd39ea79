"""The archive's files: each written aside, fsynced, then renamed into place (the I/O edge).

A file is first written under `ROOT/_tmp/CONSUMER/` (same filesystem, so the rename is atomic;
readers skip folders starting with `_`), fsynced, and renamed into its partition, whose folder
is then fsynced: a reader sees a whole file or none. The rename is also the fence between two
archivers: one that takes a silent archiver's work over first renames that archiver's temp files
away, so a late rename by the silent one fails and it stops instead of writing twice.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schwab_stream.archive.errors import ArchiveFolderError, ArchiveTakenOver

TMP = "_tmp"
COMPRESSION = "zstd"

#: errno -> the `reason` label of a failed write (archive_write_errors_total)
REASONS = {
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
    errno.EACCES: "unwritable",
    errno.EPERM: "unwritable",
    errno.EROFS: "unwritable",
}


def reason(exc: OSError) -> str:
    return REASONS.get(exc.errno or 0, "io_error")


def check_folder(root: Path) -> None:
    """`root` exists or can be made, and a file can be written and renamed in it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / TMP / ".probe"
        probe.parent.mkdir(exist_ok=True)
        probe.write_bytes(b"")
        probe.replace(root / TMP / ".probe2")
        (root / TMP / ".probe2").unlink()
    except OSError as exc:
        raise ArchiveFolderError(
            f"cannot write the archive folder {root}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(root) else "")
        ) from None


def temp_dir(root: Path, consumer: str) -> Path:
    return root / TMP / consumer


def write_aside(table: pa.Table, temp: Path) -> int:
    """Write `table` as zstd Parquet at `temp` and fsync it; its size in bytes. A failed write
    leaves nothing behind and raises the OSError."""
    temp.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(temp, "wb") as out:
            pq.write_table(table, out, compression=COMPRESSION)
            out.flush()
            os.fsync(out.fileno())
            return out.tell()
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def publish(temp: Path, final: Path) -> None:
    """Rename `temp` to `final` and fsync the folders that changed. A missing `temp` means
    another archiver took this one's work over (ArchiveTakenOver)."""
    made = _make_dirs(final.parent)
    try:
        os.rename(temp, final)
    except FileNotFoundError:
        raise ArchiveTakenOver(
            f"another archiver of the group took this one's entries over ({temp.name} was "
            "moved away): it was silent longer than SCHWAB_ARCHIVE_DEAD_SECONDS; restart it"
        ) from None
    for folder in {final.parent, *made}:
        _fsync_dir(folder)


def _make_dirs(folder: Path) -> list[Path]:
    """Create `folder` and missing parents; the parents whose entries changed (to fsync)."""
    changed: list[Path] = []
    missing: list[Path] = []
    cursor = folder
    while not cursor.exists():
        missing.append(cursor)
        cursor = cursor.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir()
        changed.append(path.parent)
    return changed


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fence(temp: Path) -> bool:
    """Take a silent archiver's temp file away (rename, then delete) so its own rename fails;
    False when it was not there (renamed into place already, or never made)."""
    moved = temp.with_name(temp.name + ".taken")
    try:
        os.rename(temp, moved)
    except FileNotFoundError:
        return False
    moved.unlink()
    return True


def clear_temp(root: Path, consumer: str) -> None:
    """Remove what a dead archiver left half-written."""
    folder = temp_dir(root, consumer)
    for temp in folder.glob("*.parquet") if folder.exists() else []:
        fence(temp)
    shutil.rmtree(folder, ignore_errors=True)


def entry_ids(path: Path) -> dict[str, list[str]]:
    """The entries a finished file holds, per stream (to acknowledge them)."""
    columns = pq.read_table(path, columns=["stream", "entry_id"]).to_pydict()
    out: dict[str, list[str]] = {}
    for stream, entry_id in zip(columns["stream"], columns["entry_id"], strict=True):
        out.setdefault(stream, []).append(entry_id)
    return out
