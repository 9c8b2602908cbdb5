"""Transforms the bundles need that MONAI lacks."""

from .brats import RegionsToBratsLabels, RegionsToBratsLabelsd
from .channels import RepeatChannelsd
from .grayscale import AppendGrayscaled, RGBToGrayscale
from .outputs import SelectFinalOutputd

__all__ = ["RegionsToBratsLabels", "RegionsToBratsLabelsd", "RepeatChannelsd", "SelectFinalOutputd"]
__all__ += ["AppendGrayscaled", "RGBToGrayscale"]

from .multilabel import CentreSliceSourced, MultiLabelToLabelMapd  # noqa: E402

__all__ += ["CentreSliceSourced", "MultiLabelToLabelMapd"]

from .monai_label import MonaiLabelOutputd  # noqa: E402

__all__ += ["MonaiLabelOutputd"]

from .regions import LabelToRegionsd, RegionsToLabelMapd  # noqa: E402

__all__ += ["LabelToRegionsd", "RegionsToLabelMapd"]

from .normalization import PlannedNormalized, intensity_normalization  # noqa: E402

__all__ += ["PlannedNormalized", "intensity_normalization"]

from .resample import TaskSpacingd  # noqa: E402

__all__ += ["TaskSpacingd"]

from .inputs import TaskInputd  # noqa: E402

__all__ += ["TaskInputd"]
