"""The registry of public layouts (kept apart from the package's ``__init__`` so that :mod:`custom_nets.data.demo`
can import it while :mod:`custom_nets.data` is still initialising)."""

from __future__ import annotations

from . import brats, lgg, polyp_skin, uwmadison
from .core import Layout

__all__ = ["LAYOUTS", "get_layout"]

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (uwmadison.LAYOUT, polyp_skin.KVASIR, polyp_skin.ISIC, brats.LAYOUT, lgg.LAYOUT)
}
"""The public layouts by CLI name, in the order :func:`custom_nets.convert.detect` tries them."""


def get_layout(name: str) -> Layout:
    """The :class:`~custom_nets.convert.core.Layout` called ``name``; ``ValueError`` naming the valid names if none."""
    key = str(name).strip().lower()
    if key not in LAYOUTS:
        raise ValueError(f"unknown dataset layout {name!r}; expected one of {', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[key]
