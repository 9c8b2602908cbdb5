"""Exceptions of batch inference.

- :class:`CaseError`: one case cannot be segmented (unreadable file, wrong channel count, NaN values, ...). The batch
  records it (log line and ``summary.csv``) and goes on with the next case.
- :class:`SetupError`: nothing can be segmented (bad bundle, missing checkpoint, checkpoint that does not fit the
  network, bad option). The command line stops before the first case with exit code 2.
- :class:`OutputError`: no further case can be written (the output folder became full or unwritable); the batch
  stops after recording what it did, with exit code 2.
"""

from __future__ import annotations

import os

__all__ = ["CaseError", "OutputError", "SetupError", "one_line"]


def one_line(text: object) -> str:
    """``text`` on one line, whatever the underlying library said (runs of whitespace and newlines become a space)."""
    return " ".join(str(text).split())


class CaseError(Exception):
    """A problem with one case; the message names the offending file (or folder) and the problem, on one line.

    Args:
        message: what is wrong and, where useful, what was expected.
        path: the offending file or folder; when given, the message is prefixed with it.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        text = one_line(message)
        super().__init__(f"{self.path}: {text}" if self.path else text)


class SetupError(Exception):
    """A problem that stops the whole run before any case: bad bundle, checkpoint, device or option."""


class OutputError(Exception):
    """The output folder cannot take any further case (full, unwritable); the message is one line."""
