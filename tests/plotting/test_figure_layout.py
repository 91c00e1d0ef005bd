"""Every figure function, built from small fake data, passes the journal checks of
:mod:`rxlib.plotting.checks`: no overlapping or cut-off text, a legend (or colour bar) wherever several
colours encode data, integer ticks on integer axes, densities bounded to the data's support."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from rxlib.plotting import checks
from rxlib.plotting import dataset as D
from rxlib.plotting import explain as E
from rxlib.plotting import training as T

RNG = np.random.default_rng(0)
STACK = RNG.integers(0, 256, size=(6, 16, 16)).astype(np.uint8)
CAM = RNG.random((16, 16))


def _intensities(n: int = 30, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [{"channel": c, "mean": abs(rng.normal(2 + c + shift, 1.5)), "cell_type": cell,
             "n_nuclei": int(rng.integers(5, 40)), "height": 64, "width": 64}
            for c in range(1, 7) for cell in ("HEPG2", "U2OS") for _ in range(n // 2)]
    return pd.DataFrame(rows)


def _plate_table() -> pd.DataFrame:
    wells = [("B02", "treatment"), ("B03", "treatment"), ("C05", "positive_control"), ("D07", "negative_control")]
    return pd.DataFrame({"experiment": "HEPG2-01", "plate": 1, "well": [w for w, _ in wells],
                         "well_type": [t for _, t in wells]})


def _dense_layers(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({"layer": [f"denselayer{i + 1}" for i in range(n)], "in_channels": [96 + 48 * i for i in range(n)],
                         "out_channels": [144 + 48 * i for i in range(n)], "bottleneck_channels": [192] * n,
                         "growth": [48] * n})


def _history(offset: float) -> pd.DataFrame:
    epochs = np.arange(1, 6)
    frame = pd.DataFrame({"epoch": epochs})
    for split in ("train", "val"):
        frame[f"{split}_loss"] = 2.0 / epochs + offset
        frame[f"{split}_acc_softmax"] = 0.1 * epochs + offset
    return frame


FIGURES = {
    "fig01_channels": lambda: D.channel_panel(STACK, "HEPG2-01_1_B02_1 (HEPG2, class 3)"),
    "fig01_rgb_composite": lambda: D.composite_panel(STACK, "HEPG2-01_1_B02_1"),
    "fig02_class_distribution": lambda: D.class_distribution(pd.Series(RNG.integers(20, 40, 30), index=np.arange(30))),
    "fig03_channel_mean_distribution": lambda: D.channel_mean_distribution(_intensities()),
    "plate_layout": lambda: D.plate_layout(_plate_table(), "HEPG2-01", 1),
    "realism_intensity": lambda: D.realism_intensity(_intensities(), _intensities(shift=1.0)),
    "realism_nuclei": lambda: D.realism_nuclei(_intensities(), _intensities(shift=1.0)),
    "training_curves": lambda: T.training_curves({"densenet": _history(0.0), "resnet": _history(0.1)}, chance=0.1,
                                                  title="DenseNet vs ResNet backbone"),
    "fig04_dense_block": lambda: T.dense_block_diagram(_dense_layers(), "DenseNet-161 denseblock1: channels grow by 48 per layer"),
    "fig05_cutmix": lambda: T.cutmix_panel(STACK, STACK[::-1], STACK, (2, 8, 3, 9), 0.77, ("class 1", "class 2")),
    "accuracy_bars": lambda: T.accuracy_bars(pd.DataFrame({"run": ["baseline", "+CutMix"], "acc_softmax": [0.3, 0.4],
                                                           "acc_arc": [0.2, 0.5]}), chance=0.1),
    "fig07_tsne_junk": lambda: E.plot_tsne({n: pd.DataFrame({"x": RNG.normal(size=40), "y": RNG.normal(size=40),
                                                             "junk": np.arange(40) % 4 == 0}) for n in ("without PL", "with PL")},
                                           title="Figure 7: arc-margin templates (t-SNE)"),
    "fig09_features_tsne": lambda: E.plot_tsne({n: pd.DataFrame({"x": RNG.normal(size=45), "y": RNG.normal(size=45),
                                                                 "label": np.repeat([3, 7, 11], 15)}) for n in ("without PL", "with PL")},
                                               title="Figure 9: features of classes [3, 7, 11]"),
    "fig10_conv_filters": lambda: E.plot_filter_heatmaps({"DB(1),DL(6)": RNG.normal(size=(8, 4)), "DB(4),DL(24)": RNG.normal(size=(8, 4))},
                                                         stats={"DB(1),DL(6)": {"band_fraction": 0.5, "duplicate_fraction": 0.1, "n_blocks": 2}}),
    "fig11_gradcam": lambda: E.plot_cam_grid([STACK, STACK], [CAM, CAM], titles=["HEPG2, class 3", "U2OS, class 4"],
                                             title="Figure 11: Grad-CAM"),
    "cam_overlay": lambda: E.plot_cam_overlay(STACK, CAM, title="class 3"),
    "channel_overlays": lambda: E.plot_channel_overlays(STACK, CAM, attention=np.linspace(0, 1, 6)),
    # the tallest bars (w6) reach 1 in every series: the legend must not sit on them
    "fig12_channel_attention": lambda: E.plot_channel_attention(
        {"eq. 15 printed": [0.2, 0.3, 0.1, 0.4, 0.2, 1.0], "eq. 15 agreement": [0.5, 0.1, 0.2, 0.3, 0.1, 1.0],
         "occlusion": [1.0, 0.6, 0.8, 0.3, 0.5, 0.95], "planted": [0, 0, 0, 0, 0, 1.0]},
        title="Figure 12: HEPG2, class 3, denseblock4.denselayer24 (12 held-out sites)"),
    "grad_camo_scores": lambda: E.plot_grad_camo(pd.DataFrame({"cell_type": ["HEPG2", "U2OS", "all"] * 2,
                                                               "grad_camo": [0.6, 0.7, 0.65, 0.3, 0.4, 0.35],
                                                               "cell_fraction": [0.3] * 6, "model": ["clean"] * 3 + ["cheating"] * 3}),
                                                 hue="model"),
}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_passes_layout_checks(name):
    fig = FIGURES[name]()
    assert checks.layout_problems(fig) == []


@pytest.mark.parametrize("name", ["fig07_tsne_junk", "fig09_features_tsne", "fig12_channel_attention", "training_curves",
                                  "fig03_channel_mean_distribution", "grad_camo_scores", "accuracy_bars", "plate_layout"])
def test_multi_colour_figures_have_a_legend(name):
    fig = FIGURES[name]()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends and all(len(legend.get_texts()) >= 2 for legend in legends)


def test_figure9_legend_names_every_class():
    fig = FIGURES["fig09_features_tsne"]()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["class 3", "class 7", "class 11"]


@pytest.mark.parametrize("samples", [
    pd.Series(RNG.integers(20, 40, 30), index=np.arange(30)),   # many class sets
    pd.Series([32] * 16, index=np.arange(16)),                  # one class set (the smoke data set)
    pd.Series([29, 31, 32, 33, 33], index=[0, 1, 2, 3, 5]),     # a few sets, a class id missing
])
def test_figure2_integer_ticks(samples):
    fig = D.class_distribution(samples)
    assert checks.layout_problems(fig) == []
    for ax in fig.axes:
        assert checks.non_integer_ticks(ax, "x") == [] and checks.non_integer_ticks(ax, "y") == []


def test_figure3_density_within_the_data():
    frame = _intensities()
    fig = D.channel_mean_distribution(frame)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 6
    for channel, line in zip(range(1, 7), lines):
        values = frame.loc[frame["channel"] == channel, "mean"]
        x = line.get_xdata()
        assert x.min() >= values.min() - 1e-9 and x.max() <= values.max() + 1e-9
    assert fig.axes[0].get_ylim()[0] == 0


def test_explanation_figures_are_not_pyplot_figures():
    """Not registered with pyplot: %matplotlib inline does not draw them again after a cell ends with ``fig``."""
    fig = FIGURES["fig12_channel_attention"]()
    assert isinstance(fig, Figure) and fig not in [plt.figure(n) for n in plt.get_fignums()]


# the checks themselves catch what they claim to

def test_checks_catch_overlapping_text_and_text_outside():
    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, "overlapping label", transform=ax.transAxes)
    ax.text(0.52, 0.5, "another label", transform=ax.transAxes)
    ax.text(1.3, 0.5, "far out", transform=ax.transAxes)
    assert checks.text_overlaps(fig) and checks.texts_outside(fig)


def test_checks_catch_missing_legend_legend_over_bars_and_half_ticks():
    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.bar([0, 1], [1, 1], color=["C0", "C1"])
    assert checks.missing_legends(fig)
    ax.bar([0.5], [1], label="x", color="C2")
    ax.legend(loc="upper center")
    assert checks.legends_over_data(fig)
    fig2 = Figure(figsize=(3, 2))
    ax2 = fig2.add_subplot()
    ax2.bar(np.arange(6), np.ones(6))
    ax2.set_xticks([0, 2.5, 5])
    assert checks.non_integer_ticks(ax2) == ["x axis of '' has non-integer ticks ['2.5']"]


def test_checks_catch_text_across_a_box():
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.add_patch(Rectangle((0.4, 0.4), 0.2, 0.2))
    ax.text(0.55, 0.5, "a long label across the edge", fontsize=10)
    assert checks.texts_over_boxes(fig)
