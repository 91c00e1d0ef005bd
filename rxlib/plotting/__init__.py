"""Figures and tables of the compendium: plotting functions, and the writers that save them by name."""
from rxlib.plotting.save import save_figure, save_table

__all__ = ["save_figure", "save_table"]
