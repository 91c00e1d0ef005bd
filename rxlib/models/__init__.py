"""Networks of the paper: DenseNet-161 (and ResNet / tiny DenseNet) backbones with cell type and two heads.

``build_model(arch, n_classes)`` returns an :class:`RxNet`; ``model(images, cell_type_onehot)``
returns ``{'embedding', 'logits', 'cosine'}``. ``stage_output_sizes`` regenerates Table 2,
``dense_layer_1x1_weights`` gives the filters of Figure 10. Nothing happens on import.
"""
from rxlib.models.backbones import (
    ARCHITECTURES,
    PretrainedWeightsUnavailable,
    WeightsFileError,
    adapt_stem_weight,
    build_backbone,
    pretrained_cache_path,
)
from rxlib.models.inspection import (
    PAPER_TABLE2,
    count_parameters,
    dense_layer_1x1_weights,
    layer_spec,
    paper_table2,
    parameter_breakdown,
    stage_output_sizes,
)
from rxlib.models.rxnet import DEFAULT_TARGET_LAYER, STAGE_NAMES, CellTypeClassifier, RxNet, build_model

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_TARGET_LAYER",
    "PAPER_TABLE2",
    "STAGE_NAMES",
    "CellTypeClassifier",
    "PretrainedWeightsUnavailable",
    "RxNet",
    "WeightsFileError",
    "adapt_stem_weight",
    "build_backbone",
    "build_model",
    "count_parameters",
    "dense_layer_1x1_weights",
    "layer_spec",
    "paper_table2",
    "parameter_breakdown",
    "pretrained_cache_path",
    "stage_output_sizes",
]
