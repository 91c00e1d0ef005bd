"""Reading RxRx1 (official release, Kaggle 2019 and 2023 layouts, the synthetic set) into one
normalised table, its images (decoded once into a site store), a torch Dataset, the held-out splits
and the data set statistics; :mod:`rxlib.data.roots` says which data root a run reads."""
from .dataset import RxRx1Dataset
from .images import load_site, load_site_stem
from .metadata import ClassScheme, class_scheme, detect_layout, read_metadata
from .scan import scan, summarise_problems
from .splits import HeldOutSplit, held_out_split, split_sites
from .store import SiteStore, prepare_store

__all__ = ["RxRx1Dataset", "load_site", "load_site_stem", "read_metadata", "detect_layout",
           "class_scheme", "ClassScheme", "scan", "summarise_problems", "HeldOutSplit", "held_out_split",
           "split_sites", "SiteStore", "prepare_store"]
