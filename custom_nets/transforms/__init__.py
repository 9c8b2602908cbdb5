"""Transforms the bundles need that MONAI lacks."""

from .brats import RegionsToBratsLabels, RegionsToBratsLabelsd
from .channels import RepeatChannelsd
from .outputs import SelectFinalOutputd

__all__ = ["RegionsToBratsLabels", "RegionsToBratsLabelsd", "RepeatChannelsd", "SelectFinalOutputd"]
