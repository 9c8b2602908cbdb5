"""custom_nets: networks, blocks, losses and transforms shared by the MONAI bundles in ``bundles/``.

A submodule is imported the first time it is used as an attribute of the package, so that a bundle config needs only
``"$import custom_nets"`` to use ``custom_nets.bundle.bundle_root()``, ``custom_nets.data.open_dataset(...)``
and so on (MONAI's config parser binds ``import a.b`` to the name ``"a.b"``, not ``a``), while ``import custom_nets``
itself stays cheap (no torch or MONAI), so command lines answer ``--help`` and usage errors at once.
"""

import importlib
import importlib.util

__version__ = "0.1.0"


def __getattr__(name: str):
    """``custom_nets.<submodule>``: import it on first use (PEP 562)."""
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
