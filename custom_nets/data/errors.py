"""The one exception raised for datasets that cannot be used as they are."""

from __future__ import annotations

import os

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset is missing or malformed.

    The message always names the offending path (a dataset folder, a case folder or a file), the problem found
    there, and what was expected instead, so that it can be fixed without reading the code. A ``ValueError``
    subclass, so callers that already handle bad values keep working.

    Args:
        message: the full, human-readable explanation.
        path: the offending file or folder, if there is a single one; kept as :attr:`path` for programmatic use.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path: str | None = None if path is None else os.fspath(path)
