"""The archive's errors: each says what a person sees and the exit code (docs/operations.md)."""

from __future__ import annotations

from schwab_stream.errors import ExitCode, SchwabStreamError


class ArchiveFolderError(SchwabStreamError):
    """`--out` cannot be written (no permission, a file in the way, read-only): exit 2."""

    kind = "archive_folder"
    exit_code = ExitCode.BAD_SETTINGS


class ArchiveTakenOver(SchwabStreamError):
    """This archiver was silent past SCHWAB_ARCHIVE_DEAD_SECONDS and another of its group took
    its unfinished entries over: it stops without writing them (exit 4, restart it)."""

    kind = "archive_taken_over"
    exit_code = ExitCode.LEASE_LOST


class ArchiveIncomplete(SchwabStreamError):
    """Stopped with entries not in a durable file (Redis or the disk away until the end): they
    stay pending in Redis for the next run."""

    kind = "archive_incomplete"
