"""Sanity checks (Adebayo et al. 2018) on a tiny network: Grad-CAM and the channel methods change when
the model is randomised; a model-independent "method" does not, and is flagged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rxlib.explain import sanity
from rxlib.models import build_model

FAST = {"n_resamples": 999}


@pytest.fixture(scope="module")
def trained_like():
    """A tiny DenseNet and a batch of 32x32 images; its weights are random, but the test only needs a
    fixed model whose explanations are compared with those of its own randomised copy."""
    torch.manual_seed(0)
    model = build_model("tiny_densenet", 4, embedding_dim=16).eval()
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(16, 6, 32, 32, generator=gen)
    cell_type = torch.nn.functional.one_hot(torch.arange(16) % 4, 4).float()
    return model, images, cell_type, np.arange(16) % 4


def test_spearman_similarity_rules():
    a = np.arange(12.0).reshape(2, 6)
    np.testing.assert_allclose(sanity.spearman_similarity(a, a), [1.0, 1.0])
    np.testing.assert_allclose(sanity.spearman_similarity(a, -a), [-1.0, -1.0])
    np.testing.assert_allclose(sanity.spearman_similarity(a, np.zeros_like(a)), [0.0, 0.0])  # one constant: 0
    np.testing.assert_allclose(sanity.spearman_similarity(np.ones((1, 4)), np.ones((1, 4))), [1.0])
    with pytest.raises(ValueError, match="shape"):
        sanity.spearman_similarity(a, a[:, :3])


def test_ssim_known_values_and_scikit_image():
    rng = np.random.default_rng(0)
    x = rng.random((16, 16))
    assert sanity.ssim(x, x, data_range=1.0) == pytest.approx(1.0)
    # constant images a and b: SSIM = (2ab + C1) / (a^2 + b^2 + C1) with zero variances (C2 cancels)
    c1 = (0.01 * 1.0) ** 2
    assert sanity.ssim(np.full((9, 9), 0.2), np.full((9, 9), 0.6), data_range=1.0) == pytest.approx(
        (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1))
    with pytest.raises(ValueError, match="win_size"):
        sanity.ssim(np.zeros((4, 4)), np.zeros((4, 4)), data_range=1.0)
    metrics = pytest.importorskip("skimage.metrics")
    y = x + 0.3 * rng.random((16, 16))
    assert sanity.ssim(x, y, data_range=1.3) == pytest.approx(metrics.structural_similarity(x, y, data_range=1.3), abs=1e-12)


def test_randomisation_steps_top_down(trained_like):
    model = trained_like[0]
    names = [n for n, _ in sanity.randomisation_steps(model)]
    assert names[:3] == ["heads", "neck", "norm5"] and names[-1] == "conv0"
    assert names.index("denseblock4") < names.index("denseblock1")


def test_gradcam_changes_and_a_model_independent_method_is_flagged(trained_like):
    model, images, cell_type, labels = trained_like
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def channel_means(m):  # depends on the input only: the "method" a sanity check must catch
        return {"channel means": images.mean(dim=(2, 3)).numpy()}

    explain = sanity.join_explainers(sanity.gradcam_explainer(images, cell_type, labels, layer="denseblock2"),
                                     channel_means)
    frame = sanity.cascading_randomisation(model, explain, seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    summary = sanity.randomisation_summary(frame)
    assert set(summary["method"]) == {"Grad-CAM", "channel means"}
    last = summary[summary["step"] == summary["step"].max()].set_index("method")
    assert last.loc["channel means", "spearman"] == 1.0 and np.isnan(last.loc["channel means", "ssim"])
    assert last.loc["Grad-CAM", "spearman"] < 0.5 and last.loc["Grad-CAM", "ssim"] < 0.9
    verdicts = {v.quantity.split(" of ")[1].split(" before")[0]: v for v in sanity.sanity_verdicts(frame, **FAST)}
    assert verdicts["Grad-CAM"].holds is True
    assert verdicts["channel means"].holds is False  # flagged: its maps do not change
    # a cheaper partial cascade, by block name
    part = sanity.cascading_randomisation(model, explain, blocks=["heads", "neck"])
    assert part["block"].unique().tolist() == ["heads", "neck"] and part["randomised"].iloc[-1] == "heads+neck"
    with pytest.raises(KeyError, match="blocks"):
        sanity.cascading_randomisation(model, explain, blocks=["denseblock9"])


def test_channel_methods_change_under_randomisation(trained_like):
    model, images, cell_type, labels = trained_like
    explain = sanity.channel_explainer(images, cell_type, labels, cam_layers={"L": "denseblock2"},
                                       methods=("occlusion_mean", "grad_x_input"))
    frame = sanity.cascading_randomisation(model, explain)
    methods = set(frame["method"])
    assert {"eq15_printed[L]", "eq15_printed_rescaled[L]", "eq15_agreement[L]", "eq15_agreement_rescaled[L]",
            "occlusion_mean", "grad_x_input"} == methods
    last = sanity.randomisation_summary(frame).query("step == step.max()").set_index("method")
    assert last.loc["grad_x_input", "spearman"] < 0.9  # gradients depend on the weights


def test_label_randomisation_compares_two_models(trained_like):
    model, images, cell_type, labels = trained_like
    torch.manual_seed(5)
    other = build_model("tiny_densenet", 4, embedding_dim=16).eval()
    explain = sanity.gradcam_explainer(images, cell_type, labels, layer="denseblock2")
    frame = sanity.compare_models(model, other, explain)
    assert list(frame.columns) == ["method", "image", "spearman", "ssim"] and len(frame) == 16
    same = sanity.compare_models(model, model, explain)
    np.testing.assert_allclose(same["spearman"], 1.0)
    (verdict,) = sanity.sanity_verdicts(same, test="labels", **FAST)
    assert verdict.holds is False and verdict.claim == "sanity-labels-Grad-CAM"


class _Items:
    """A minimal site data set: items of a fixed batch, and a table."""

    def __init__(self, images, cell_type, labels):
        import pandas as pd

        self.images, self.cell_type, self.labels = images, cell_type, labels
        self.table = pd.DataFrame({"label": labels})

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "cell_type": self.cell_type[i], "label": torch.tensor(int(self.labels[i]))}


def test_sanity_report_gives_both_tests_a_row_and_a_verdict_per_method(trained_like):
    model, images, cell_type, labels = trained_like
    explain = sanity.gradcam_explainer(images, cell_type, labels, layer="denseblock2")
    report = sanity.sanity_report(model, explain, pair=(model, model), blocks=["heads", "neck", "denseblock2"])
    assert set(report.summary["test"]) == {"model parameters", "labels"}
    assert report.summary.loc[report.summary["test"] == "model parameters", "block"].tolist() == ["heads", "neck", "denseblock2"]
    labels_row = report.summary[report.summary["test"] == "labels"].iloc[0]
    assert labels_row["spearman"] == pytest.approx(1.0) and labels_row["n"] == 16  # a model against itself
    assert [v.claim for v in report.verdicts] == ["sanity-model-parameters-Grad-CAM", "sanity-labels-Grad-CAM"]
    assert report.verdicts[1].holds is False  # identical maps: the label test is failed, as it must be
    assert len(report.cascade) == 3 * 16


def test_gradcam_sanity_reads_the_sites_and_equals_the_report_on_their_batch(trained_like):
    model, images, cell_type, labels = trained_like
    dataset = _Items(images, cell_type, labels)
    positions = [0, 3, 5, 9]
    found = sanity.gradcam_sanity(model, dataset, positions, layer="denseblock2", seed=2)
    explain = sanity.gradcam_explainer(images[positions], cell_type[positions], labels[positions], layer="denseblock2")
    expected = sanity.sanity_report(model, explain, seed=2)
    assert found.summary.equals(expected.summary)
    assert set(found.summary["test"]) == {"model parameters"}


def test_channel_sanity_covers_eq15_and_the_cam_free_methods(trained_like):
    model, images, cell_type, labels = trained_like
    report = sanity.channel_sanity(model, _Items(images, cell_type, labels), [0, 1, 2, 3],
                                   cam_layers={"L": "denseblock2"}, methods=("occlusion_mean",))
    methods = set(report.summary["method"])
    assert "occlusion_mean" in methods and any(m.startswith("eq15") for m in methods)
    assert len(report.verdicts) == len(methods)


def test_plot_randomisation_names_every_block_and_the_label_test(trained_like):
    from rxlib.plotting.explain import plot_randomisation

    model, images, cell_type, labels = trained_like
    explain = sanity.gradcam_explainer(images, cell_type, labels, layer="denseblock2")
    report = sanity.sanity_report(model, explain, pair=(model, model), blocks=["heads", "neck"])
    fig = plot_randomisation(report.summary, threshold=sanity.SPEARMAN_THRESHOLD)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["heads", "neck", "shuffled labels"]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"Grad-CAM", "pass below 0.5"}
