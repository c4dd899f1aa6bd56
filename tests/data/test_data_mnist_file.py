import gzip
import http.server
import shutil
import socket
import threading
from functools import partial
from importlib import resources

import numpy as np
import pytest

from aepca.data import load_mnist_file
from aepca.data import mnist as mnist_module
from aepca.data.mnist import IDX_FILES, array_digest, download_mnist

BUNDLED = resources.files("aepca.data").joinpath("mnist.npz")




@pytest.fixture
def tiny_mnist(monkeypatch):
    """Tiny arrays declared canonical, so file formats are tested on a few bytes."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "y_train": np.array([5, 0, 4], dtype=np.uint8),
        "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        "y_test": np.array([7, 2], dtype=np.uint8),
    }
    monkeypatch.setattr(mnist_module, "SHAPES", {k: v.shape for k, v in arrays.items()})
    monkeypatch.setattr(mnist_module, "MNIST_SHA256", {k: array_digest(v)[:16] for k, v in arrays.items()})
    return arrays


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()


def write_idx_folder(folder, arrays, gz=("x_train",)):
    folder.mkdir(exist_ok=True)
    for name, stem in IDX_FILES.items():
        data = idx_bytes(arrays[name])
        if name in gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return folder


@pytest.mark.parametrize("gz", [(), tuple(IDX_FILES), ("x_train", "y_test")])
def test_idx_folder(tmp_path, tiny_mnist, gz):
    data = load_mnist_file(write_idx_folder(tmp_path / "idx", tiny_mnist, gz))
    np.testing.assert_array_equal(data.x_train, tiny_mnist["x_train"].reshape(3, 784).astype(np.float32) * np.float32(1 / 255))
    np.testing.assert_array_equal(data.y_test, tiny_mnist["y_test"])


def test_idx_folder_with_dotted_names(tmp_path, tiny_mnist):
    folder = write_idx_folder(tmp_path / "idx", tiny_mnist, gz=())
    for stem in IDX_FILES.values():
        (folder / stem).rename(folder / stem.replace("-idx", ".idx"))
    assert load_mnist_file(folder).x_test.shape == (2, 784)


def _corrupt_idx(folder, name, transform):
    path = folder / IDX_FILES[name]
    path.write_bytes(transform(path.read_bytes()))


@pytest.mark.parametrize(
    ("name", "transform", "match"),
    [
        ("x_train", lambda b: b[:-5], r"declares shape \(3, 28, 28\) \(2352 bytes\) but 2347 bytes follow"),
        ("y_train", lambda b: b"\x00\x00\x08\x03" + b[4:], r"magic number 0x00000803, expected 0x00000801"),
        ("y_test", lambda b: gzip.compress(b), r"magic number 0x1f8b.*compressed without a \.gz"),
        ("x_test", lambda b: b[:2], r"has no header"),
        ("x_test", lambda b: b[:10], r"ends inside its IDX header"),
        ("x_train", lambda b: b[:-1] + bytes([b[-1] ^ 1]), r"x_train does not match the canonical MNIST checksum"),
    ],
)
def test_idx_errors(tmp_path, tiny_mnist, name, transform, match):
    folder = write_idx_folder(tmp_path / "idx", tiny_mnist, gz=())
    _corrupt_idx(folder, name, transform)
    with pytest.raises(ValueError, match=match):
        load_mnist_file(folder)


def test_idx_corrupt_gzip_and_missing_file(tmp_path, tiny_mnist):
    folder = write_idx_folder(tmp_path / "idx", tiny_mnist, gz=("x_train",))
    gz = folder / (IDX_FILES["x_train"] + ".gz")
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"cannot be read.*truncated or corrupt"):
        load_mnist_file(folder)
    gz.unlink()
    with pytest.raises(FileNotFoundError, match=r"has no train-images-idx3-ubyte or train-images-idx3-ubyte\.gz"):
        load_mnist_file(folder)


def tiny_npz(path, arrays, **changes):
    np.savez(path, **(arrays | changes))
    return path


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p, a: tiny_npz(p, a, x_test=a["x_test"][::-1]), ValueError, r"x_test does not match the canonical"),
        (lambda p, a: tiny_npz(p, a, y_test=a["y_test"].astype(np.int64)), ValueError, r"y_test has shape .* int64"),
        (lambda p, a: (np.savez(p, x_train=a["x_train"]), p)[1], ValueError, r"has no array 'y_train'"),
        (lambda p, a: (p.write_bytes(tiny_npz(p, a).read_bytes()[:-30]), p)[1], ValueError, r"truncated or corrupt"),
        (lambda p, a: p.with_suffix(".csv"), ValueError, r"expected a \.npz file or a folder of IDX files"),
        (lambda p, a: p.with_name("absent.npz"), FileNotFoundError, r"No such file or folder"),
    ],
)
def test_npz_errors(tmp_path, tiny_mnist, make, error, match):
    path = make(tmp_path / "mnist.npz", tiny_mnist)
    if path.suffix == ".csv":
        path.write_text("a\n1\n")
    with pytest.raises(error, match=match):
        load_mnist_file(path)


def test_npz_arrays_are_read_as_numpy_writes_them(tmp_path, tiny_mnist):
    fortran = {name: np.asfortranarray(array) for name, array in tiny_mnist.items()}
    path = tiny_npz(tmp_path / "mnist.npz", fortran)
    data = load_mnist_file(path)
    np.testing.assert_array_equal(data.x_train, tiny_mnist["x_train"].reshape(3, 784) * np.float32(1 / 255))
    np.testing.assert_array_equal(data.y_train, tiny_mnist["y_train"])
    data.y_train[0] = 9  # labels are the caller's own copy


def test_npz_with_python_objects_is_refused_unread(tmp_path, tiny_mnist):
    path = tiny_npz(tmp_path / "mnist.npz", tiny_mnist, y_test=np.array([7, "2"], dtype=object))
    with pytest.raises(ValueError, match=r"damaged array \(Object arrays cannot be loaded when allow_pickle=False\)"):
        load_mnist_file(path)


def test_bundled_arrays_match_numpys_reading():
    with resources.as_file(BUNDLED) as bundled, np.load(bundled) as expected:
        arrays = mnist_module.load_mnist_arrays()
        for name in mnist_module.MNIST_SHA256:
            np.testing.assert_array_equal(arrays[name], expected[name])


# --- download from a local server (127.0.0.1 only) --------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_download_bundled_copy(server, tmp_path):
    root, base = server
    with resources.as_file(BUNDLED) as bundled:
        shutil.copy(bundled, root / "mnist.npz")
    dest = tmp_path / "cache"  # created on demand
    path = download_mnist(f"{base}/mnist.npz", dest / "mnist.npz")
    assert path == dest / "mnist.npz" and leftovers(dest) == ["mnist.npz"]
    data = load_mnist_file(path, n_train=20, n_test=10)
    with np.load(root / "mnist.npz") as raw:
        np.testing.assert_array_equal(np.rint(data.x_train * 255), raw["x_train"][:20].reshape(20, 784))
        np.testing.assert_array_equal(data.y_test, raw["y_test"][:10])
    assert data.image_shape == (28, 28) and data.notes["source"] == str(path)


def test_download_truncated_bundled_copy_keeps_previous_file(server, tmp_path):
    root, base = server
    with resources.as_file(BUNDLED) as bundled:
        (root / "mnist.npz").write_bytes(bundled.read_bytes()[:-1000])
    dest = tmp_path / "cache"
    dest.mkdir()
    (dest / "mnist.npz").write_bytes(b"previous")
    with pytest.raises(ValueError, match=r"download from .* is not a readable \.npz file"):
        download_mnist(f"{base}/mnist.npz", dest)  # a folder: the file is mnist.npz inside
    assert leftovers(dest) == ["mnist.npz"] and (dest / "mnist.npz").read_bytes() == b"previous"


def test_download_with_wrong_checksum_leaves_nothing(server, tmp_path, tiny_mnist):
    root, base = server
    np.savez(root / "mnist.npz", **(tiny_mnist | {"y_test": tiny_mnist["y_test"][::-1]}))
    with pytest.raises(ValueError, match=r"download from .*: y_test does not match the canonical MNIST checksum"):
        download_mnist(f"{base}/mnist.npz", tmp_path / "out" / "mnist.npz")
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("served", "path", "error", "match"),
    [
        (b"", "/missing.npz", ValueError, r"HTTP 404"),
        (b"PK\x03\x04 truncated zip", "/mnist.npz", ValueError, r"not a readable \.npz file"),
    ],
)
def test_download_errors_leave_nothing(server, tmp_path, tiny_mnist, served, path, error, match):
    root, base = server
    (root / "mnist.npz").write_bytes(served)
    with pytest.raises(error, match=match):
        download_mnist(base + path, tmp_path / "out" / "mnist.npz")
    assert leftovers(tmp_path / "out") == []


def test_download_tiny_valid_and_size_limit(server, tmp_path, tiny_mnist, monkeypatch):
    root, base = server
    np.savez(root / "mnist.npz", **tiny_mnist)
    assert download_mnist(f"{base}/mnist.npz", tmp_path / "a.npz").exists()
    monkeypatch.setattr(mnist_module, "MAX_DOWNLOAD_BYTES", 100)
    with pytest.raises(ValueError, match=r"sent more than 0 MiB"):
        download_mnist(f"{base}/mnist.npz", tmp_path / "b.npz")
    assert not (tmp_path / "b.npz").exists()


def test_download_connection_refused(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as sock:  # find a free local port, then close it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionError, match=r"Downloading http://127\.0\.0\.1:\d+/m\.npz failed"):
        download_mnist(f"http://127.0.0.1:{port}/m.npz", tmp_path / "m.npz", timeout=5)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/mnist.npz", "file:///tmp/mnist.npz", "mnist.npz"])
def test_download_rejects_non_http_urls(tmp_path, url):
    with pytest.raises(ValueError, match=r"expected an http:// or https:// URL"):
        download_mnist(url, tmp_path / "m.npz")
