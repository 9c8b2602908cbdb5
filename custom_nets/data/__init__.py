"""Dataset layouts: demo-data generators, datalist builders and case naming."""

from . import brats, images, lgg, naming, polyp_skin, uwmadison
from .errors import DatasetError

__all__ = ["DatasetError", "brats", "images", "lgg", "naming", "polyp_skin", "uwmadison"]
