"""Reading RxRx1 (official release, Kaggle 2019 and 2023 layouts, the synthetic set) into one
normalised table, its images, a torch Dataset and the data set statistics."""
from .dataset import RxRx1Dataset
from .images import load_site, load_site_stem
from .metadata import ClassScheme, class_scheme, detect_layout, read_metadata
from .scan import scan, summarise_problems

__all__ = ["RxRx1Dataset", "load_site", "load_site_stem", "read_metadata", "detect_layout",
           "class_scheme", "ClassScheme", "scan", "summarise_problems"]
