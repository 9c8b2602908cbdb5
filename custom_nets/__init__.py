"""custom_nets: networks, blocks, losses and transforms shared by the MONAI bundles in ``bundles/``."""

__version__ = "0.1.0"
