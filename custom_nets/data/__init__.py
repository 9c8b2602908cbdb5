"""Dataset layouts: demo-data generators, datalist builders and case naming."""

from . import brats, lgg, naming
from .errors import DatasetError

__all__ = ["DatasetError", "brats", "lgg", "naming"]
