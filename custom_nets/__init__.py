"""custom_nets: networks, blocks, losses and transforms shared by the MONAI bundles in ``bundles/``.

Importing the package imports its submodules, so that a bundle config needs only ``"$import custom_nets"`` to use
``custom_nets.bundle.bundle_root()``, ``custom_nets.data.brats.brats_datalist(...)`` and so on (MONAI's config
parser binds ``import a.b`` to the name ``"a.b"``, not ``a``).
"""

__version__ = "0.1.0"

from . import blocks, bundle, data, handlers, losses, nets, transforms  # noqa: E402,F401
from . import handlers_gi, inferers, metrics_gi  # noqa: E402,F401
