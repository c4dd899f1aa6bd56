import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aepca import plots
from conftest import float_tolerance

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    path = Path(path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5_000
    from matplotlib.image import imread

    image = imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 200
    # A blank canvas would mean nothing was drawn.
    assert image[..., :3].std() > 0.05


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the plot functions save, for checks on what they draw."""
    figures = []
    save = plots._save

    def capture(fig, path, data=None):
        figures.append(fig)
        return save(fig, path, data)

    monkeypatch.setattr(plots, "_save", capture)
    return figures


def _labels(kind, n, rng):
    return {
        "classes": rng.integers(0, 10, n),
        "continuous": rng.uniform(0, 5, n),
        "none": None,
        "strings": rng.choice(["cat", "dog", "bird"], n),
        "many_classes": rng.integers(0, 50, n),
    }[kind]


@pytest.mark.parametrize(
    ("k_pca", "k_ae", "label_kind"),
    [
        (2, 2, "classes"),
        (3, 3, "classes"),
        (2, 5, "none"),
        (2, 2, "continuous"),
        (1, 1, "classes"),
        (1, 1, "none"),
        (1, 1, "continuous"),
        (1, 3, "strings"),
        (2, 2, "many_classes"),
    ],
)
def test_plot_codes_writes_png(tmp_path, rng, k_pca, k_ae, label_kind):
    n = 300
    path = plots.plot_codes(
        rng.normal(size=(n, k_pca)),
        rng.normal(size=(n, k_ae)),
        _labels(label_kind, n, rng),
        tmp_path / "codes.png",
        max_points=200,
        title="test",
    )
    assert path == tmp_path / "codes.png"
    assert_png(path)


def test_plot_codes_accepts_1d_arrays_label_names_and_nan(tmp_path, rng):
    codes = rng.normal(size=120)
    codes[:5] = np.nan
    path = plots.plot_codes(
        codes, rng.normal(size=120), rng.integers(0, 3, 120), tmp_path / "sub" / "c.png",
        label_names={0: "zero", 1: "one", 2: "two"},
    )
    assert_png(path)


def test_plot_codes_keeps_the_axes_on_the_bulk_and_counts_the_outliers(tmp_path, rng, saved_figures):
    bulk = rng.uniform(-1.0, 1.0, size=(400, 2))
    outliers = np.array([[1e6, 0.0], [-1e6, 0.0], [0.0, 1e6]])
    path = plots.plot_codes(np.vstack([bulk, outliers]), np.vstack([bulk, bulk[:3]]), None,
                            tmp_path / "codes.png")
    pca_ax, ae_ax = saved_figures[0].axes[:2]
    for limits in (pca_ax.get_xlim(), pca_ax.get_ylim()):
        assert -1.2 < limits[0] < -0.9 and 0.9 < limits[1] < 1.2
    assert [t.get_text() for t in pca_ax.texts] == ["3 points outside the axes"]
    # All the autoencoder's points fit: no note, automatic limits around all of them.
    assert len(ae_ax.texts) == 0 and ae_ax.get_xlim()[0] < -0.99 and ae_ax.get_xlim()[1] > 0.99
    panels = plots.read_figure_data(path)["panels"]
    assert [p["outside_axes"] for p in panels] == [3, 0]
    np.testing.assert_allclose(panels[0]["xlim"], pca_ax.get_xlim(), rtol=float_tolerance(np.float64))  # through JSON


def test_a_few_points_are_drawn_larger_than_many(tmp_path, rng, saved_figures):
    for n in (30, 5000):
        codes = rng.standard_normal((n, 2))
        plots.plot_codes(codes, codes, rng.integers(0, 3, n), tmp_path / f"codes{n}.png")
    few, many = (figure.axes[0].collections[0].get_sizes() for figure in saved_figures)
    assert few.min() > 4 * many.max()  # 30 points: 40; 5,000: 5


def test_plot_codes_rejects_misaligned_inputs(tmp_path, rng):
    with pytest.raises(ValueError, match="ae_codes, expected as many rows"):
        plots.plot_codes(rng.normal(size=(10, 2)), rng.normal(size=(9, 2)), None,
                         tmp_path / "c.png")
    with pytest.raises(ValueError, match="labels, expected one label per sample"):
        plots.plot_codes(rng.normal(size=(10, 2)), rng.normal(size=(10, 2)), np.zeros(4),
                         tmp_path / "c.png")
    with pytest.raises(ValueError, match="max_points"):
        plots.plot_codes(rng.normal(size=(10, 2)), rng.normal(size=(10, 2)), None,
                         tmp_path / "c.png", max_points=0)


def test_plot_reconstructions_images(tmp_path, rng):
    x = rng.uniform(size=(12, 64))
    path = plots.plot_reconstructions(
        x, x + rng.normal(0, 0.1, x.shape), x + rng.normal(0, 0.05, x.shape),
        tmp_path / "r.png", image_shape=(8, 8), n=4, pca_mse=0.01, ae_mse=0.0025,
    )
    assert_png(path)


@pytest.mark.parametrize("image_shape", [(8, 8, 1), (8, 8, 3), (6, 4, 4)])
def test_plot_reconstructions_grey_and_colour_images(tmp_path, rng, image_shape):
    x = rng.uniform(size=(6, int(np.prod(image_shape))))
    path = plots.plot_reconstructions(x, x * 0.9, x * 1.1, tmp_path / "r.png", image_shape=image_shape, n=3)
    assert_png(path)
    assert plots.read_figure_data(path)["image_shape"] == list(image_shape)


def test_colour_images_share_one_clipped_scale(tmp_path, rng, saved_figures):
    originals = rng.uniform(10.0, 20.0, size=(2, 12))
    originals[0, :2] = 10.0, 20.0
    plots.plot_reconstructions(originals, originals + 100.0, originals, tmp_path / "r.png",
                               image_shape=(2, 2, 3), n=2)
    original, pca, ae = (ax.images[0].get_array() for ax in saved_figures[0].axes)
    assert original.shape == (2, 5, 3)  # two 2x2 images and a one-pixel white gap
    # A subtraction and a division, rounding at the operands' size (20) in the image's units (/ 10).
    np.testing.assert_allclose(original[:, :2], (originals[0].reshape(2, 2, 3) - 10.0) / 10.0, rtol=0,
                               atol=float_tolerance(np.float64, 20.0 / 10.0, 2))
    np.testing.assert_array_equal(original[:, 2], 1.0)
    np.testing.assert_array_equal(pca, 1.0)  # far above the originals' range: clipped to white
    np.testing.assert_array_equal(ae, original)


@pytest.mark.parametrize("image_shape", [(4, 4, 2), (4, 2, 3), (-4, -4), (0, 16), "4x4"])
def test_plot_reconstructions_rejects_bad_image_shapes(tmp_path, rng, image_shape):
    x = rng.uniform(size=(3, 16))
    with pytest.raises(ValueError, match=r"image_shape, expected \(height, width\), \(height, width, 1\) "
                                         r"or \(height, width, 3 or 4\) with a product of 16 features"):
        plots.plot_reconstructions(x, x, x, tmp_path / "r.png", image_shape=image_shape)


@pytest.mark.parametrize(("n_features", "names"), [(6, True), (40, False)])
def test_plot_reconstructions_tabular(tmp_path, rng, n_features, names):
    x = rng.normal(size=(5, n_features))
    feature_names = [f"f{i}" for i in range(n_features)] if names else None
    # n=7 asks for more samples than the 5 given: all 5 are shown.
    path = plots.plot_reconstructions(
        x, x * 0.9, x * 0.95, tmp_path / "t.png", n=7, pca_mse=0.1,
        feature_names=feature_names,
    )
    assert_png(path)
    # Names label the features while they stay readable (up to 12).
    assert plots.read_figure_data(path)["feature_names"] == feature_names
    assert plots.read_figure_data(path)["view"] == "profiles"


@pytest.mark.parametrize("n_features", [150, 3000])  # all features drawn; a sample of 2,000
def test_rows_too_wide_for_a_profile_are_drawn_reconstructed_against_original(tmp_path, rng, n_features):
    x = rng.normal(size=(4, n_features))
    path = plots.plot_reconstructions(x, x * 0.9, x * 0.95, tmp_path / "w.png", n=4)
    assert_png(path)
    assert plots.read_figure_data(path)["view"] == "values"


def test_plot_reconstructions_partial_grid(tmp_path, rng):
    x = rng.normal(size=(8, 5))
    assert_png(plots.plot_reconstructions(x, x, x, tmp_path / "t.png", n=7))


def test_plot_reconstructions_rejects_bad_shapes(tmp_path, rng):
    x = rng.normal(size=(4, 10))
    with pytest.raises(ValueError, match="image_shape, expected \\(height, width\\)"):
        plots.plot_reconstructions(x, x, x, tmp_path / "r.png", image_shape=(3, 3))
    with pytest.raises(ValueError, match="ae_recon, expected the shape of originals"):
        plots.plot_reconstructions(x, x, x[:, :9], tmp_path / "r.png")
    with pytest.raises(ValueError, match="feature_names, expected 10 names"):
        plots.plot_reconstructions(x, x, x, tmp_path / "r.png", feature_names=["a"])


@pytest.mark.parametrize(
    ("history", "pca"),
    [
        ({"loss": [0.05], "val_loss": [0.06]}, 0.04),
        ({"loss": list(np.geomspace(1.0, 0.01, 40)), "val_loss": list(np.geomspace(1.2, 0.02, 40))},
         0.03),
        ({"loss": [0.3, 0.2, 0.15]}, None),
        ({"loss": [0.3, float("nan"), 0.1], "val_loss": [float("nan")] * 3}, 0.2),
    ],
)
def test_plot_loss_writes_png(tmp_path, history, pca):
    path = plots.plot_loss(history, tmp_path / "loss.png", pca_test_mse=pca,
                           units="pixel intensity²")
    assert_png(path)


def test_plot_loss_stores_the_numbers_it_draws(tmp_path):
    history = {"loss": [0.5, 0.25, float("nan"), 0.125], "val_loss": [0.6, 0.3, 0.2, 0.15]}
    path = plots.plot_loss(history, tmp_path / "loss.png", pca_test_mse=0.1875, units="pixel intensity²")
    assert plots.read_figure_data(path) == {
        "training": [0.5, 0.25, None, 0.125],
        "validation": [0.6, 0.3, 0.2, 0.15],
        "pca_test_mse": 0.1875,
        "units": "pixel intensity²",
    }
    only_training = plots.plot_loss({"loss": [1.0]}, tmp_path / "one.png")
    assert plots.read_figure_data(only_training) == {
        "training": [1.0], "validation": [], "pca_test_mse": None, "units": None,
    }


def test_read_figure_data_needs_an_aepca_figure(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match=r"plain\.png holds no figure data \(no PNG text 'aepca:data'\)"):
        plots.read_figure_data(tmp_path / "plain.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"text\.png is not an image"):
        plots.read_figure_data(tmp_path / "text.png")


def test_plot_loss_without_training_shows_pca_alone(tmp_path):
    plots.plot_loss({"loss": []}, tmp_path / "l.png", pca_test_mse=0.5)
    assert plots.read_figure_data(tmp_path / "l.png")["training"] == []


def test_plot_loss_rejects_bad_history(tmp_path):
    with pytest.raises(ValueError, match="expected a mapping with a 'loss' list"):
        plots.plot_loss({"val_loss": [1.0]}, tmp_path / "l.png")
    with pytest.raises(ValueError, match="pca_test_mse, expected a number"):
        plots.plot_loss({"loss": [1.0]}, tmp_path / "l.png", pca_test_mse="low")


def _sweep_rows(ks, equivalent=True):
    rows = []
    for k in ks:
        row = {"k": k, "pca_test_mse": 0.05 * k ** -0.5, "autoencoder_test_mse": 0.03 * k ** -0.7,
               "train_seconds": 1.5}
        if equivalent:
            row["pca_equivalent_components"] = round(2.1 * k)
        rows.append(row)
    return rows


@pytest.mark.parametrize(
    "rows",
    [_sweep_rows([32, 2, 8, 64, 4, 16]), _sweep_rows([1, 2, 3], equivalent=False), _sweep_rows([5])],
)
def test_plot_sweep_writes_png(tmp_path, rows):
    assert_png(plots.plot_sweep(rows, tmp_path / "sweep.png"))


def test_plot_sweep_tolerates_missing_values(tmp_path):
    rows = _sweep_rows([2, 4, 8])
    rows[1]["autoencoder_test_mse"] = None
    rows[2]["pca_equivalent_components"] = None
    path = plots.plot_sweep(rows, tmp_path / "sweep.png")
    assert_png(path)
    data = plots.read_figure_data(path)
    assert data["k"] == [2, 4, 8] and data["pca_equivalent_components"] == [4, 8, None]
    assert data["autoencoder_test_mse"][1] is None and data["pca_test_mse"][0] == 0.05 * 2 ** -0.5


def test_plot_sweep_rejects_bad_rows(tmp_path):
    with pytest.raises(ValueError, match="rows, expected a non-empty list"):
        plots.plot_sweep([], tmp_path / "s.png")
    with pytest.raises(ValueError, match=r"rows\[0\] lacks \['autoencoder_test_mse'\]"):
        plots.plot_sweep([{"k": 2, "pca_test_mse": 0.1}], tmp_path / "s.png")
    with pytest.raises(ValueError, match="expected a positive integer code size"):
        plots.plot_sweep([{"k": 0, "pca_test_mse": 0.1, "autoencoder_test_mse": 0.1}],
                         tmp_path / "s.png")


def test_import_is_lazy_and_leaves_global_backend_alone(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "import aepca.plots as p\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'\n"
        f"p.plot_loss({{'loss': [1.0, 0.5]}}, {str(tmp_path / 'l.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert_png(tmp_path / "l.png")
