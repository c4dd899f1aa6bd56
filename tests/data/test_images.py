"""Image files as rows: a folder (class subfolders give labels), a pattern or one image; pixels in [0, 1],
ids their paths; and blocks of wide rows bounded in bytes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from aepca import Autoencoder, load_model
from aepca.apply import encode_file
from aepca.data import formats, open_source
from aepca.data.sources import BLOCK_ROWS
from aepca.experiments.compare import compare

EPS32 = np.finfo(np.float32).eps


def _digit_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 8-bit 8 x 8 images (scikit-learn's digits, shuffled) and their classes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.images))[:n]
    return (digits.images[order] * 16).clip(0, 255).astype(np.uint8), digits.target[order]


def _save(images: np.ndarray, paths) -> None:
    for image, path in zip(images, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)


def test_a_folder_of_images_trains_the_model_its_pixel_array_trains(tmp_path):
    images, _ = _digit_images(1200)
    _save(images, [tmp_path / "images" / f"{i:04d}.png" for i in range(len(images))])
    pixels = (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32)
    np.save(tmp_path / "pixels.npy", pixels)
    settings = dict(code_dim=2, recipe="classic", hidden=(16,), epochs=1, seed=0)
    from_images, from_array = compare(str(tmp_path / "images"), **settings), compare(str(tmp_path / "pixels.npy"), **settings)
    np.testing.assert_array_equal(from_images.shown.x_test, from_array.shown.x_test)
    assert from_images.shown.image_shape == (8, 8)
    for got, expected in zip(from_images.estimator.model_.get_weights(), from_array.estimator.model_.get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=64 * EPS32 * max(1.0, float(np.abs(expected).max())))
    for method in ("pca", "autoencoder"):
        assert from_images.metrics[method]["test_mse"] == pytest.approx(from_array.metrics[method]["test_mse"], rel=1e-6)


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    """60 digit images in a folder per class, and the classes and paths in the order they are read."""
    root = tmp_path_factory.mktemp("classes") / "digits"
    images, classes = _digit_images(60, seed=1)
    paths = [root / str(label) / f"{i:02d}.png" for i, label in enumerate(classes)]
    _save(images, paths)
    order = sorted(range(len(paths)), key=lambda i: str(paths[i]))
    return root, images[order], classes[order], [paths[i].relative_to(root).as_posix() for i in order]


def test_class_subfolders_label_the_rows_and_their_paths_are_the_ids(class_folders):
    root, images, classes, names = class_folders
    source = open_source(str(root), block_rows=25)
    assert (source.n_rows, source.n_features, source.image_shape, source.id_name) == (60, 64, (8, 8), "file")
    np.testing.assert_array_equal(np.concatenate([source.labels(i) for i in range(source.n_blocks)]), classes.astype(str))
    assert np.concatenate([source.ids(i) for i in range(source.n_blocks)]).tolist() == names
    np.testing.assert_array_equal(source.to_array(), images.reshape(60, -1) / np.float32(255))


def test_encode_writes_each_image_path_beside_its_codes(class_folders, tmp_path):
    root, _, _, names = class_folders
    model = Autoencoder(2, recipe="classic", hidden=(8,), epochs=1, random_state=0).fit(str(root))
    encode_file(model, str(root), tmp_path / "codes.csv")
    codes = pd.read_csv(tmp_path / "codes.csv")
    assert list(codes.columns) == ["file", "code_0", "code_1"]
    assert codes["file"].tolist() == names
    np.testing.assert_allclose(codes[["code_0", "code_1"]].to_numpy(), model.transform(str(root)), rtol=1e-6, atol=1e-6)


def test_a_pattern_or_one_image_is_read_with_ids_below_its_folder(class_folders):
    root, images, _, names = class_folders
    pattern = open_source(str(root / "3" / "*.png"))
    assert pattern.ids(0).tolist() == [name.split("/")[1] for name in names if name.startswith("3/")]
    assert pattern.labels(0) is None  # the files lie in one folder: no classes
    one = open_source(str(root / names[0]))
    assert one.ids(0).tolist() == [names[0].split("/")[1]]
    np.testing.assert_array_equal(one.read(0), images[:1].reshape(1, -1) / np.float32(255))


def test_a_colour_image_makes_every_image_rgb(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    colour = np.stack([grey, grey[::-1], 255 - grey], axis=-1)
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(colour).save(tmp_path / "b.png")
    source = open_source(str(tmp_path))
    assert source.image_shape == (3, 4, 3)
    rows = source.read(0).reshape(2, 3, 4, 3)
    np.testing.assert_array_equal(rows[0], np.repeat(grey[..., None], 3, axis=-1) / np.float32(255))
    np.testing.assert_array_equal(rows[1], colour / np.float32(255))


def test_16_bit_greyscale_is_scaled_by_65535_alone_and_beside_colour(tmp_path):
    deep = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_allclose(open_source(str(tmp_path)).read(0), deep.reshape(1, -1) / 65535, rtol=EPS32)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "colour.png")
    rows = open_source(str(tmp_path)).read(0).reshape(2, 2, 2, 3)  # colour.png, deep.png
    np.testing.assert_allclose(rows[1], np.repeat(deep[..., None], 3, axis=-1) / 65535, rtol=EPS32)


@pytest.mark.parametrize(("mode", "name"), [("P", "p.gif"), ("CMYK", "c.jpg"), ("1", "b.bmp"), ("RGBA", "a.png")])
def test_other_modes_are_read_as_rgb_or_greyscale_in_0_1(tmp_path, mode, name):
    rgb = np.random.default_rng(4).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert(mode).save(tmp_path / name)
    source = open_source(str(tmp_path))
    assert source.image_shape == ((6, 5) if mode == "1" else (6, 5, 3))
    rows = source.read(0)
    assert rows.min() >= 0 and rows.max() <= 1 and np.ptp(rows) > 0.5


def test_32_bit_pixels_are_refused_naming_the_file(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.float32), mode="F").save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"float\.tif holds 32-bit pixels \(mode F\), whose range is unknown\. Save it"):
        open_source(str(tmp_path))


def test_an_image_of_another_size_is_refused_naming_both_files(tmp_path):
    Image.fromarray(np.zeros((8, 6), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"b\.png is 9 pixels wide and 8 high, but .*a\.png is 6 pixels wide and 8 high: .* "
                                         r"Give the size to read them at, height by width \(--image-shape 8x6, "
                                         r"image_shape=\(8, 6\)\)"):
        open_source(str(tmp_path))


def test_images_of_any_size_are_resized_to_the_shape_given(tmp_path):
    small, big = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3, np.full((20, 12, 3), 200, np.uint8)
    Image.fromarray(small).save(tmp_path / "a.png")
    Image.fromarray(big).save(tmp_path / "b.png")
    source = open_source(str(tmp_path), image_shape=(6, 5))
    assert (source.image_shape, source.columns.image_shape) == ((6, 5, 3), (6, 5, 3))
    assert open_source(str(tmp_path / "a.png")).columns.image_shape == (8, 8, 1)
    expected = [np.asarray(Image.fromarray(image).convert("RGB").resize((5, 6), Image.Resampling.BILINEAR))
                for image in (small, big)]
    np.testing.assert_array_equal(source.read(0), np.stack(expected).reshape(2, -1) / np.float32(255))
    grey = open_source(str(tmp_path), image_shape=(6, 5, 1))
    assert grey.image_shape == (6, 5) and grey.n_features == 30


def test_a_model_reads_new_images_at_the_shape_it_was_trained_on(class_folders, tmp_path):
    root, *_ = class_folders
    model = Autoencoder(2, recipe="classic", hidden=(8,), epochs=1, random_state=0).fit(str(root))
    colour = np.random.default_rng(2).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    _save(colour, [tmp_path / f"{i}.png" for i in range(3)])
    as_trained = np.stack([np.asarray(Image.fromarray(image).convert("L").resize((8, 8), Image.Resampling.BILINEAR))
                           for image in colour]).reshape(3, -1) / np.float32(255)
    np.testing.assert_allclose(model.transform(str(tmp_path)), model.transform(as_trained), rtol=1e-6, atol=1e-6)
    model.save(tmp_path / "model")  # the saved model keeps the shape
    np.testing.assert_allclose(load_model(tmp_path / "model").transform(str(tmp_path / "*.png")),
                               model.transform(as_trained), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("shape", "data", "match"), [
    ((8, 8, 4), "folder", r"expected \(height, width\) or \(height, width, 1 or 3\)"),
    ((4, 4), "npy", r"expected dimensions whose product is the 64 feature columns of x.npy"),
])
def test_an_image_shape_is_refused_unless_it_fits_the_images_or_the_flat_rows(class_folders, tmp_path, shape, data,
                                                                               match):
    root, *_ = class_folders
    np.save(tmp_path / "x.npy", np.zeros((3, 64), np.float32))
    with pytest.raises(ValueError, match=match):
        open_source(str(root) if data == "folder" else str(tmp_path / "x.npy"), image_shape=shape)
    assert open_source(str(tmp_path / "x.npy"), image_shape=(8, 8)).image_shape == (8, 8)  # flat rows drawn as images


def test_the_command_reads_image_files_at_the_image_shape_it_is_given(class_folders, tmp_path):
    from aepca.cli import main

    root, *_ = class_folders
    args = ["--recipe", "classic", "--hidden", "4", "--epochs", "1", "--no-progress", "--neighbours", "0"]
    assert main(["compare", str(root), "--image-shape", "4x4", "--out", str(tmp_path / "run"), *args]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n_features"] == 16


def test_a_corrupt_image_is_refused_naming_the_file(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"b\.png is not a readable image file .* Re-save it, or move it out"):
        open_source(str(tmp_path))


def test_data_files_in_a_folder_are_read_and_images_beside_them_are_not(tmp_path):
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3.0, 4.0]}), tmp_path / "x.parquet")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "figure.png")
    source = open_source(str(tmp_path))
    assert (source.n_rows, source.feature_names) == (2, ("a", "b"))


def test_wide_rows_are_read_in_blocks_of_at_most_block_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "BLOCK_BYTES", 4 * 100 * 30)  # 30 rows of 100 values
    x = np.arange(200 * 100, dtype=np.float32).reshape(200, 100)
    np.save(tmp_path / "x.npy", x)
    assert open_source(x).block_rows == 30
    assert open_source(x, block_rows=50).block_rows == 50  # asked for: kept
    from_file = open_source(str(tmp_path / "x.npy"), block_rows=50)
    assert from_file._rows._parts[0].sizes[:2] == [30, 30]  # the file is read 30 rows at a time
    np.testing.assert_array_equal(from_file.to_array(), x)
    assert open_source(x[:, :10]).block_rows == min(BLOCK_ROWS, 300)


def test_a_test_folder_of_other_images_is_read_at_the_training_images_shape(class_folders, tmp_path):
    root, *_ = class_folders
    colour = np.random.default_rng(3).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    _save(colour, [tmp_path / f"{i}.png" for i in range(4)])
    comparison = compare(str(root), test=str(tmp_path), code_dim=2, recipe="classic", hidden=(8,), epochs=1)
    assert comparison.metrics["n_test"] == 4 and comparison.shown.x_test.shape == (4, 64)


def test_the_fingerprint_of_images_is_the_same_in_every_process(class_folders):
    """What a resumed run checks its checkpoint against: it must not depend on the process's hash seed."""
    import json
    import os
    import subprocess
    import sys

    root, *_ = class_folders
    code = f"import json; from aepca.data import open_source; print(json.dumps(open_source({str(root)!r}).fingerprint()))"
    prints = {subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(prints) == 1 and json.loads(prints.pop())["files"][0]["files"] == 60


def test_a_large_jpeg_decoded_at_a_reduced_scale_matches_its_full_decode(tmp_path):
    smooth = np.linspace(0, 255, 400, dtype=np.float64)[None, :, None] * np.linspace(0.2, 1, 320)[:, None, None]
    Image.fromarray(np.repeat(smooth, 3, axis=-1).astype(np.uint8)).save(tmp_path / "big.jpg", quality=95)
    rows = open_source(str(tmp_path), image_shape=(32, 40, 3)).read(0)
    with Image.open(tmp_path / "big.jpg") as image:  # decoded whole, then resized
        full = np.asarray(image.convert("RGB").resize((40, 32), Image.Resampling.BILINEAR)) / np.float32(255)
    # JPEG's 1/8-scale decoding averages 8 x 8 blocks as the antialiased resize does: a few levels apart.
    assert np.abs(rows.reshape(32, 40, 3) - full).mean() < 2 / 255


def test_decoded_images_are_kept_for_later_passes_up_to_the_cache_bound(class_folders, monkeypatch):
    root, *_ = class_folders
    decoded = []
    pixels = formats.ImagesPart._pixels
    monkeypatch.setattr(formats.ImagesPart, "_pixels", lambda self, file: decoded.append(file) or pixels(self, file))
    monkeypatch.setattr(formats, "IMAGE_BLOCK_FILES", 20)
    source = open_source(str(root), block_rows=20)
    first = source.to_array()
    np.testing.assert_array_equal(source.to_array(), first)
    assert len(decoded) == 60  # each file once, over two passes
    assert not source.read(0).flags.writeable
    monkeypatch.setattr(formats, "IMAGE_CACHE_BYTES", 2 * 20 * 64 * 4)  # two blocks of three
    decoded.clear()
    source = open_source(str(root), block_rows=20)
    source.to_array(), source.to_array()
    assert len(decoded) == 60 + 20  # the third block decoded in each pass
