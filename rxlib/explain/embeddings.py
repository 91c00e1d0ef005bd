"""Templates and feature vectors (Sharma & Krishnamurthi 2022, sections 4.5-4.6, Figures 7-9).

- Templates: the rows of the softmax head's weight ``W`` (eq. 13, ``p' = Wx``) and the arc-margin
  templates; :func:`template_spread` puts a number on "more spread apart" (Figure 7), and
  :func:`junk_classes` marks classes without training samples (Figure 8).
- Features: :func:`feature_separation` is the silhouette score of the embeddings by class (Figure 9).
- t-SNE: :func:`tsne_frame` embeds any vectors in 2-d with scikit-learn.

Figure 10's 1x1 filters are in :mod:`rxlib.explain.filters`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from torch import nn


def template_matrix(model: nn.Module, head: str = "softmax") -> np.ndarray:
    """The ``(n_classes, embedding_dim)`` class templates of one head, as a float64 array.

    Args:
        model: an RxNet (or a :class:`~rxlib.explain.dcmix.DCMixNet` around one).
        head: ``'softmax'`` (``softmax_head.weight``) or ``'arc'`` (``arc_templates``).
    """
    model = getattr(model, "inner", model)
    if head == "softmax":
        weight = model.softmax_head.weight
    elif head in ("arc", "arcmargin", "cosine"):
        weight = model.arc_templates
    else:
        raise ValueError(f"head must be 'softmax' or 'arc', got {head!r}")
    return weight.detach().cpu().double().numpy()


def junk_classes(n_classes: int, train_labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Boolean ``(n_classes,)``: True for classes with no training sample (the paper's junk classes)."""
    labels = np.asarray(train_labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"train labels must be in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")
    return np.bincount(labels, minlength=n_classes) == 0


def template_spread_per_class(templates: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Each template's mean cosine distance ``1 - cos`` to the other templates; their mean is
    :func:`template_spread` (with the same ``mask``), and they are its units for an interval.

    Args:
        templates: ``(K, D)``.
        mask: optional boolean ``(K,)`` selecting the templates (e.g. ``~junk``).
    """
    t = np.asarray(templates, dtype=np.float64)
    if t.ndim != 2:
        raise ValueError(f"templates must be (K, D), got shape {t.shape}")
    if mask is not None:
        t = t[np.asarray(mask, dtype=bool)]
    if len(t) < 2:
        raise ValueError(f"need at least two templates, got {len(t)}")
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    cos = t @ t.T
    return 1.0 - (cos.sum(axis=1) - np.diag(cos)) / (len(t) - 1)


def template_spread(templates: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean pairwise cosine distance ``1 - cos`` between templates (0 = all parallel, 1 = orthogonal on average).

    Args:
        templates: ``(K, D)``.
        mask: optional boolean ``(K,)`` selecting the templates (e.g. ``~junk``).
    """
    return float(template_spread_per_class(templates, mask).mean())


def junk_separation(templates: np.ndarray, junk: np.ndarray) -> float:
    """Silhouette score (cosine) of templates split into junk and actual classes (Figure 8's separate cluster)."""
    from sklearn.metrics import silhouette_score

    junk = np.asarray(junk, dtype=bool)
    if junk.all() or not junk.any():
        raise ValueError("need both junk and actual classes to measure their separation")
    return float(silhouette_score(np.asarray(templates, dtype=np.float64), junk.astype(int), metric="cosine"))


def feature_separation(features: np.ndarray, labels: Sequence[int] | np.ndarray, metric: str = "cosine") -> float:
    """Silhouette score of feature vectors grouped by class (-1..1; higher = better separated clusters).

    Raises:
        ValueError: shapes differ or fewer than two classes.
    """
    from sklearn.metrics import silhouette_score

    x, y = np.asarray(features, dtype=np.float64), np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features {x.shape} and labels {y.shape} do not match")
    if len(np.unique(y)) < 2 or len(np.unique(y)) >= len(y):
        raise ValueError(f"silhouette needs 2..n-1 classes, got {len(np.unique(y))} for {len(y)} samples")
    return float(silhouette_score(x, y, metric=metric))


def tsne_frame(vectors: np.ndarray, *, labels: Sequence | None = None, junk: np.ndarray | None = None,
               perplexity: float = 30.0, seed: int = 0, metric: str = "cosine") -> pd.DataFrame:
    """2-d t-SNE of vectors (templates or features) as a DataFrame ready to plot.

    Args:
        vectors: ``(N, D)``.
        labels: optional class per row (column ``label``).
        junk: optional boolean per row (column ``junk``), e.g. from :func:`junk_classes`.
        perplexity: clipped to ``(N - 1) / 3`` for small N.
        seed: random state, for reproducible pictures.
        metric: distance for t-SNE (cosine suits templates, whose direction matters).

    Returns:
        Columns ``x``, ``y`` (+ ``label``, ``junk`` if given).
    """
    from sklearn.manifold import TSNE

    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 4:
        raise ValueError(f"t-SNE needs (N >= 4, D) vectors, got shape {x.shape}")
    perplexity = float(min(perplexity, max((len(x) - 1) / 3.0, 1.0)))
    xy = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca", metric=metric).fit_transform(x)
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]})
    for name, values in (("label", labels), ("junk", junk)):
        if values is not None:
            values = np.asarray(values)
            if len(values) != len(x):
                raise ValueError(f"{name} has {len(values)} entries for {len(x)} vectors")
            frame[name] = values
    return frame


def most_frequent_classes(labels: Sequence[int] | np.ndarray, k: int = 3) -> list[int]:
    """The ``k`` classes with most samples (ties broken by the smaller class id), as in Figure 9."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    order = np.lexsort((values, -counts))
    return [int(v) for v in values[order[:k]]]


def template_table(models: dict[str, nn.Module], junk: np.ndarray) -> pd.DataFrame:
    """Spread and junk separation of both heads' templates, one row per (model, head).

    Args:
        models: name (e.g. ``'without PL'``, ``'with PL'``) -> RxNet.
        junk: boolean per class (:func:`junk_classes`).

    Returns:
        Columns ``model``, ``head``, ``spread_actual`` (:func:`template_spread` over the classes with
        training samples), ``spread_all``, ``junk_separation`` (:func:`junk_separation`, NaN
        without junk classes) and ``n_junk``.
    """
    junk = np.asarray(junk, dtype=bool)
    rows = []
    for name, model in models.items():
        for head in ("arc", "softmax"):
            t = template_matrix(model, head)
            if len(t) != len(junk):
                raise ValueError(f"{name}: {len(t)} templates but {len(junk)} junk flags")
            rows.append({"model": name, "head": head, "spread_actual": template_spread(t, ~junk),
                         "spread_all": template_spread(t),
                         "junk_separation": junk_separation(t, junk) if 0 < junk.sum() < len(junk) else np.nan,
                         "n_junk": int(junk.sum())})
    return pd.DataFrame(rows)


def feature_separation_table(features: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """:func:`feature_separation` of several models' features: name -> ``(features, labels)``.

    Returns:
        Columns ``model``, ``classes``, ``n_sites``, ``feature_separation``.
    """
    return pd.DataFrame([{"model": name, "classes": " ".join(map(str, np.unique(y))), "n_sites": len(y),
                          "feature_separation": feature_separation(x, y)} for name, (x, y) in features.items()])


def features_of(model: nn.Module, dataset, classes: Sequence[int], *, batch_size: int = 128,
                device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (the 1024-d feature vectors of Figure 9) of the items of ``dataset`` whose label is in ``classes``.

    With a data set that has a ``table`` and ``subset`` (:class:`rxlib.data.RxRx1Dataset`), only those
    items are read, batch by batch; only their embeddings are kept.

    Returns:
        ``(features (n, D), labels (n,))``.
    """
    from rxlib.train.loop import predict

    classes = [int(c) for c in classes]
    if hasattr(dataset, "subset") and hasattr(dataset, "table"):
        positions = np.flatnonzero(np.isin(dataset.table["label"].to_numpy(), classes))
        if len(positions) == 0:
            raise ValueError(f"no items of classes {classes} in the data set")
        out = predict(model, dataset.subset(positions), batch_size=batch_size, device=device)
        return out["embedding"].astype(np.float64), out["label"]
    out = predict(model, dataset, batch_size=batch_size, device=device)
    keep = np.isin(out["label"], classes)
    if not keep.any():
        raise ValueError(f"no items of classes {classes} in the data set")
    return out["embedding"][keep].astype(np.float64), out["label"][keep]


def junk_note(junk: np.ndarray) -> str:
    """``'<n> classes, of which <k> junk classes (no sample in any split): [ids]'`` (plain ints)."""
    junk = np.asarray(junk, dtype=bool)
    return (f"{len(junk)} classes, of which {int(junk.sum())} junk classes (no sample in any split): "
            f"{[int(i) for i in np.flatnonzero(junk)]}")


def template_tsne_frames(models: dict[str, nn.Module], head: str, junk: np.ndarray, *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``{name: t-SNE frame}`` of each model's ``head`` templates with their junk flags (Figures 7 and 8)."""
    return {name: tsne_frame(template_matrix(model, head), junk=junk, seed=seed) for name, model in models.items()}


def features_by_model(models: dict[str, nn.Module], dataset, classes: Sequence[int], *,
                      device: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (features, labels)}`` of :func:`features_of` for each model, on the same sites in the same order."""
    return {name: features_of(model, dataset, classes, device=device) for name, model in models.items()}


def feature_tsne_frames(features: dict[str, tuple[np.ndarray, np.ndarray]], *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``{name: t-SNE frame}`` of each model's features, labelled by class (Figure 9)."""
    return {name: tsne_frame(x, labels=y, seed=seed) for name, (x, y) in features.items()}
