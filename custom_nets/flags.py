"""On/off options given on a bundle's command line.

``python -m monai.bundle run ... --cgm false`` passes the *string* ``"false"`` (the command line parser turns only
``False`` into a bool), and a non-empty string is true in Python: the option would silently stay on. Every
component that takes such an option from a bundle config reads it with :func:`as_flag`, which understands the usual
spellings and rejects anything else with a message naming the option.
"""

from __future__ import annotations

from typing import Any

__all__ = ["as_flag"]

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", "none", ""})


def as_flag(value: Any, name: str) -> bool:
    """``value`` as a bool: ``True``/``False``, ``1``/``0``, or (any case, surrounding blanks ignored) the strings
    true/yes/on/1 and false/no/off/0/none/"" (``None`` is false too).

    Raises:
        ValueError: for anything else (``"maybe"``, ``2``, a list, ...), naming ``name``.
    """
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"{name} must be true or false, got {value!r}.")
