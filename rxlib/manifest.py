"""The one table that maps each figure and table of the paper to the notebook and files that regenerate it.

Paper: Sharma & Krishnamurthi (2022), "Distangling Biological Noise in Cellular Images with a focus on
Explainability" (arXiv:2007.05743), plus the extras this compendium adds (synthetic-data realism checks,
Grad-CAMO scores, a "cheating" model with a planted spurious cue, channel-importance methods).

Every output is named by a *stem*, a file name without extension under the figures folder
(:func:`rxlib.config.figures_dir`). The stem says what kind of file it is:

- stems starting with ``table`` are tables, written as ``<stem>.csv`` by
  :func:`rxlib.plotting.save.save_table`;
- every other stem is a figure, written as ``<stem>.png`` and ``<stem>.pdf`` by
  :func:`rxlib.plotting.save.save_figure`.

Notebooks must save under exactly these stems; :func:`rxlib.reproduce.reproduce` checks after each notebook
that every file listed here for it was written, and records sizes and checksums in ``reports/manifest.csv``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

#: File extensions of a figure stem (a raster for viewing, a vector format for print).
FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf")
#: File extension of a table stem.
TABLE_FORMAT = "csv"
#: The notebooks of the compendium, in the order they run.
NOTEBOOKS: tuple[str, ...] = (
    "01_dataset_stats",
    "02_backbone",
    "03_losses",
    "04_pseudo_label_cutmix",
    "05_embeddings_tsne",
    "06_conv_filters",
    "07_gradcam",
    "08_channel_attention",
)

_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def check_stem(name: str) -> str:
    """Return ``name`` if it is a valid output stem, else raise.

    A stem is a bare file name without extension: letters, digits, ``_`` and ``-``, not starting with
    ``_`` or ``-``; no path separators, no dots.

    Raises:
        ValueError: ``name`` is not a valid stem; the message names it.
    """
    if not isinstance(name, str) or not _STEM.match(name):
        raise ValueError(
            f"invalid output name {name!r}: use a bare file stem of letters, digits, '_' and '-' "
            "(no folder, no extension), for example 'fig01_channels'"
        )
    return name


def is_table(stem: str) -> bool:
    """Whether ``stem`` names a table (``table...`` → CSV) rather than a figure (PNG + PDF)."""
    return stem.startswith("table")


def output_files(stem: str) -> tuple[str, ...]:
    """File names that the output ``stem`` is written as, for example ``('fig01_channels.png', '...pdf')``."""
    check_stem(stem)
    if is_table(stem):
        return (f"{stem}.{TABLE_FORMAT}",)
    return tuple(f"{stem}.{fmt}" for fmt in FIGURE_FORMATS)


@dataclass(frozen=True)
class PaperItem:
    """One figure or table of the paper (or an extra of the compendium) and where it comes from.

    Attributes:
        item: What the paper calls it ("Figure 1", "Table 2") or ``"Extra: ..."`` for additions.
        notebook: The notebook stem that regenerates it, for example ``"01_dataset_stats"``.
        outputs: Output stems under the figures folder (see the module docstring for the extensions).
        description: One line saying what it shows.
        reduced: Whether it shows comparison models, trained on the reduced comparison budget of
            :mod:`rxlib.plan` (the figure's caption and ``rxlib reproduce --dry-run`` name the reduction).
    """

    item: str
    notebook: str
    outputs: tuple[str, ...]
    description: str
    reduced: bool = False

    @property
    def full_description(self) -> str:
        """The description, with the budget note of a figure of comparison models."""
        if not self.reduced:
            return self.description
        return self.description + " Comparison models on the reduced budget (named in the caption and the plan)."

    def __post_init__(self) -> None:
        if not self.outputs:
            raise ValueError(f"paper item {self.item!r} of {self.notebook!r} declares no outputs")
        for stem in self.outputs:
            try:
                check_stem(stem)
            except ValueError as exc:
                raise ValueError(f"paper item {self.item!r} of {self.notebook!r}: {exc}") from None

    @property
    def files(self) -> tuple[str, ...]:
        """All file names of this item, in output order."""
        return tuple(name for stem in self.outputs for name in output_files(stem))


PAPER_ITEMS: tuple[PaperItem, ...] = (
    # 01: the data set
    PaperItem("Figure 1", "01_dataset_stats", ("fig01_channels", "fig01_rgb_composite"),
              "Channel-wise view of one site (six stains) and its RGB composite."),
    PaperItem("Figure 2", "01_dataset_stats", ("fig02_class_distribution",),
              "Class-wise distribution of samples (number of classes per samples-per-class value)."),
    PaperItem("Table 1", "01_dataset_stats", ("table1_class_sets",),
              "Number of classes in each class set S_x (classes with x samples)."),
    PaperItem("Figure 3", "01_dataset_stats", ("fig03_channel_mean_distribution",),
              "Distribution of the per-image mean pixel value, per channel."),
    PaperItem("Extra: plate layout", "01_dataset_stats", ("plate_layout",),
              "Plate map: treatments, positive and negative controls per well."),
    PaperItem("Extra: realism, intensities", "01_dataset_stats", ("realism_intensity",),
              "Channel intensity distributions, real RxRx1 controls versus synthetic, per cell type."),
    PaperItem("Extra: realism, nuclei per field", "01_dataset_stats", ("realism_nuclei_per_field",),
              "Nuclei per field of view, real RxRx1 controls versus synthetic."),
    # 02: the backbone
    PaperItem("Figure 4", "02_backbone", ("fig04_dense_block",),
              "Architecture of a dense block (layers and concatenated feature maps)."),
    PaperItem("Table 2", "02_backbone", ("table2_densenet161_architecture",),
              "Architecture of the six-channel DenseNet-161: operation and output shape per stage."),
    PaperItem("Extra: backbone comparison", "02_backbone",
              ("backbone_comparison", "table_backbone_comparison"),
              "ResNet versus DenseNet backbones: validation accuracy over training and final scores.", reduced=True),
    # 03: the losses
    PaperItem("Extra: loss curves", "03_losses", ("loss_curves", "table_loss_comparison"),
              "Arc-margin loss alone (oscillating) versus the composite arc-margin + softmax loss.", reduced=True),
    # 04: pseudo-labelling and CutMix
    PaperItem("Figure 5", "04_pseudo_label_cutmix", ("fig05_cutmix",),
              "CutMix: image x_A, image x_B and the mixed image."),
    PaperItem("Figure 6", "04_pseudo_label_cutmix", ("fig06_pl_cm_cd",),
              "Training and validation curves with pseudo-labelling, CutMix and cosine decay (PL+CM+CD).", reduced=True),
    PaperItem("Extra: ablation", "04_pseudo_label_cutmix", ("table_ablation_pl_cm_cd",),
              "Ablation of pseudo-labelling, CutMix and cosine decay: final accuracy of each combination.", reduced=True),
    # 05: embeddings
    PaperItem("Figure 7", "05_embeddings_tsne", ("fig07_arcmargin_templates_tsne",),
              "t-SNE of the arc-margin template vectors, without and with pseudo-labelling.", reduced=True),
    PaperItem("Figure 8", "05_embeddings_tsne", ("fig08_softmax_templates_tsne",),
              "t-SNE of the softmax template vectors, without and with pseudo-labelling (junk classes marked).", reduced=True),
    PaperItem("Figure 9", "05_embeddings_tsne", ("fig09_features_tsne",),
              "t-SNE of feature vectors of the most frequent classes, without and with pseudo-labelling.", reduced=True),
    # 06: filters
    PaperItem("Figure 10", "06_conv_filters", ("fig10_conv_filters",),
              "1x1 convolution filters of DB(1),DL(6) and DB(2),DL(2) over input channels."),
    # 07: Grad-CAM
    PaperItem("Figure 11", "07_gradcam", ("fig11_gradcam",),
              "Grad-CAM maps for three (cell type, siRNA) examples."),
    PaperItem("Extra: Grad-CAMO scores", "07_gradcam", ("grad_camo_scores", "table_grad_camo_scores"),
              "Grad-CAMO: share of Grad-CAM attention on cells versus background, per cell type."),
    PaperItem("Extra: cheating model", "07_gradcam", ("cheating_model_gradcam", "table_cheating_model"),
              "A model trained with a planted spurious cue: accuracy with and without the cue, and Grad-CAM "
              "showing attention on the cue.", reduced=True),
    PaperItem("Extra: sanity checks of Grad-CAM", "07_gradcam", ("sanity_gradcam", "table_sanity_gradcam"),
              "Adebayo et al. (2018): Grad-CAM as the model is randomised block by block, and for a model trained "
              "on shuffled labels; Spearman and SSIM against the trained model's maps, with pass/fail.", reduced=True),
    PaperItem("Extra: localisation", "07_gradcam", ("table_localisation",),
              "Pointing game, relevance mass and rank accuracy of Grad-CAM against the planted cell and phenotype "
              "masks (segmented cells where there is no truth), beside their chance levels."),
    # 08: channel attention
    PaperItem("Figure 12", "08_channel_attention", ("fig12_channel_attention",),
              "Attention versus channel for DenseBlock 4, DenseLayer 24."),
    PaperItem("Extra: channel-importance methods", "08_channel_attention",
              ("table_channel_importance_methods",),
              "Channel importance by several methods (attention, occlusion, learned DCMIX-style weights) "
              "compared with the planted ground truth."),
    PaperItem("Extra: sanity checks of channel importance", "08_channel_attention",
              ("sanity_channel_methods", "table_sanity_channel_methods"),
              "Adebayo et al. (2018)'s cascading randomisation for every channel-importance method (eq. 15 in "
              "each reading, occlusion, gradient x input): Spearman against the trained model's, with pass/fail."),
)


def notebook_stem(notebook: str | Path) -> str:
    """``'01_dataset_stats'`` from a stem, a file name or a path."""
    name = Path(notebook).name
    return name[: -len(".ipynb")] if name.endswith(".ipynb") else name


def matching_notebooks(name: str | Path, stems: Iterable[str]) -> list[str]:
    """The stems among ``stems`` that ``name`` names: a stem (``'01_dataset_stats'``), a file name or
    path (``'01_dataset_stats.ipynb'``) or the number prefix (``'01'``). The runner and the plan both
    select notebooks this way; more than one match means the name is ambiguous."""
    wanted = notebook_stem(str(name))
    return [s for s in stems if s == wanted or s.split("_", 1)[0] == wanted]


def items_for(notebook: str | Path, items: Sequence[PaperItem] = PAPER_ITEMS) -> tuple[PaperItem, ...]:
    """The paper items regenerated by ``notebook`` (a stem, file name or path), in table order.

    Returns an empty tuple for a notebook that has no items.
    """
    stem = notebook_stem(notebook)
    return tuple(it for it in items if it.notebook == stem)


def expected_files(
    notebook: str | Path,
    figures_dir: str | Path,
    items: Sequence[PaperItem] = PAPER_ITEMS,
) -> list[Path]:
    """Every file that ``notebook`` must write under ``figures_dir``."""
    figures_dir = Path(figures_dir)
    return [figures_dir / name for it in items_for(notebook, items) for name in it.files]


def all_stems(items: Iterable[PaperItem] = PAPER_ITEMS) -> list[str]:
    """Every output stem in table order."""
    return [stem for it in items for stem in it.outputs]


def markdown_table(items: Sequence[PaperItem] = PAPER_ITEMS) -> str:
    """A Markdown table for the README: paper item, notebook, files, description."""
    lines = [
        "| Paper item | Notebook | Files (under `figures/`) | What it shows |",
        "|---|---|---|---|",
    ]
    for it in items:
        files = ", ".join(f"`{name}`" for name in it.files)
        lines.append(f"| {it.item} | `notebooks/{it.notebook}.ipynb` | {files} | {it.full_description} |")
    return "\n".join(lines) + "\n"
