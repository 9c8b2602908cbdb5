"""Dataset layouts: demo-data generators, datalist builders and case naming."""

from . import brats, images, lgg, naming, polyp_skin, uwmadison
from .errors import DatasetError

__all__ = ["DatasetError", "brats", "images", "lgg", "naming", "polyp_skin", "uwmadison"]

from . import uwmadison_bundle  # noqa: E402

__all__ += ["uwmadison_bundle"]
