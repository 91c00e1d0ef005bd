"""Training pieces of the paper: losses (eqs. 3, 6, 12), CutMix (eqs. 8-9), pseudo-labels (eq. 7), the loop.

Nothing happens on import.
"""
from rxlib.train.cutmix import cutmix, sample_box, sample_lambda
from rxlib.train.loop import (
    CheckpointError,
    TrainConfig,
    TrainResult,
    evaluate,
    latest_checkpoint,
    load_checkpoint,
    load_trained_model,
    predict,
    train,
)
from rxlib.train.losses import (
    ARC_MARGIN,
    ARC_SCALE,
    COMPOSITE_C,
    LOSS_MODES,
    MixedTarget,
    arc_margin_logits,
    arc_margin_loss,
    arc_margin_target_cosine,
    composite_loss,
    head_loss,
    softmax_cross_entropy,
)
from rxlib.train.pseudo import alpha_schedule, pseudo_label_objective, pseudo_labels

__all__ = [
    "ARC_MARGIN",
    "CheckpointError",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "latest_checkpoint",
    "load_checkpoint",
    "load_trained_model",
    "predict",
    "train",
    "ARC_SCALE",
    "COMPOSITE_C",
    "LOSS_MODES",
    "MixedTarget",
    "alpha_schedule",
    "arc_margin_logits",
    "arc_margin_loss",
    "arc_margin_target_cosine",
    "composite_loss",
    "cutmix",
    "head_loss",
    "pseudo_label_objective",
    "pseudo_labels",
    "sample_box",
    "sample_lambda",
    "softmax_cross_entropy",
]
