"""Explaining the networks (paper sections 3.5, 4.5-4.7, 5; Grad-CAMO; DCMIX).

- :mod:`~rxlib.explain.cam`: the CAM family over one base: Grad-CAM (eqs. 10-11), Grad-CAM++ and
  LayerCAM, batched, for any layer (``layer=None``: the architecture's default), hooks in a context
  manager, targets as small callables.
- :mod:`~rxlib.explain.gradcamo`: share of the attention on the cells (Grad-CAMO), masks from the
  synthetic ground truth or from segmentation, and the segmentation scored against the truth.
- :mod:`~rxlib.explain.channels`: channel importance: eq. 15 (printed and agreement readings),
  occlusion, gradient x input, and the table scoring them (and DCMIX's weights) against the planted
  channels.
- :mod:`~rxlib.explain.dcmix`: the DCMIX channel-mixing layer and the network behind it, and their
  cheap per-class training (one mixing layer per class versus the negative control).
- :mod:`~rxlib.explain.cheating`: the cheating model's cued training sites (:mod:`rxlib.data.cue`), its measurements and table.
- :mod:`~rxlib.explain.sites`: one split in memory, batches, examples to show.
- :mod:`~rxlib.explain.embeddings`: templates of both heads, t-SNE, spread and separation numbers.
- :mod:`~rxlib.explain.filters`: Figure 10's 1x1 filters and their band/block measure.

Nothing happens on import beyond importing torch, numpy and pandas.
"""
from rxlib.explain.cam import (
    CAM_METHODS,
    ClassTarget,
    LayerRecorder,
    default_layer,
    grad_cam,
    grad_cam_plus_plus,
    layer_cam,
    minmax_normalise,
    resolve_layer,
    upsample_cam,
)
from rxlib.explain.channels import (
    IMPORTANCE_METHODS,
    channel_importance_summary,
    channel_importance_table,
    channel_importances,
    class_importance,
    eq15_attention,
    gradient_x_input,
    importance_methods,
    last_dense_layer,
    max_normalise,
    occlusion_importance,
    planted_importance,
)
from rxlib.explain.dcmix import ChannelMixing, DCMixNet, build_dcmix_model
from rxlib.explain.embeddings import (
    feature_separation,
    feature_separation_table,
    features_of,
    junk_classes,
    junk_separation,
    most_frequent_classes,
    template_matrix,
    template_spread,
    template_table,
    tsne_frame,
)
from rxlib.explain.filters import (
    FIGURE10_LAYERS,
    figure10_layers,
    figure10_weights,
    filter_band_block_stats,
    filter_stats_table,
)
from rxlib.explain.gradcamo import (
    grad_camo_dataset,
    grad_camo_image,
    grad_camo_per_cell,
    grad_camo_score,
    grad_camo_set,
    grad_camo_summary,
    load_truth_masks,
    segment_cells,
    segmentation_scores,
    segmentation_table,
    truth_mask_paths,
)

__all__ = [
    "CAM_METHODS",
    "ChannelMixing",
    "ClassTarget",
    "DCMixNet",
    "FIGURE10_LAYERS",
    "IMPORTANCE_METHODS",
    "LayerRecorder",
    "build_dcmix_model",
    "channel_importance_summary",
    "channel_importance_table",
    "channel_importances",
    "class_importance",
    "default_layer",
    "eq15_attention",
    "feature_separation",
    "feature_separation_table",
    "features_of",
    "figure10_layers",
    "figure10_weights",
    "filter_band_block_stats",
    "filter_stats_table",
    "grad_cam",
    "grad_cam_plus_plus",
    "grad_camo_dataset",
    "grad_camo_image",
    "grad_camo_per_cell",
    "grad_camo_score",
    "grad_camo_set",
    "grad_camo_summary",
    "gradient_x_input",
    "importance_methods",
    "junk_classes",
    "junk_separation",
    "last_dense_layer",
    "layer_cam",
    "load_truth_masks",
    "max_normalise",
    "minmax_normalise",
    "most_frequent_classes",
    "occlusion_importance",
    "planted_importance",
    "resolve_layer",
    "segment_cells",
    "segmentation_scores",
    "segmentation_table",
    "template_matrix",
    "template_spread",
    "template_table",
    "truth_mask_paths",
    "tsne_frame",
    "upsample_cam",
]
