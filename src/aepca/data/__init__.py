"""Data sets: the bundled MNIST, readers for users' files, synthetic sets."""

from aepca.data._dataset import Dataset
from aepca.data.mnist import MNIST_SHA256, array_digest, load_mnist

__all__ = ["Dataset", "MNIST_SHA256", "array_digest", "load_dataset", "load_mnist"]


def load_dataset(name: str, **kwargs) -> Dataset:
    """Load a named data set (currently ``"mnist"``) as a :class:`Dataset`."""
    loaders = {"mnist": load_mnist}
    try:
        loader = loaders[name]
    except KeyError:
        raise ValueError(
            f"Received an invalid value for dataset, expected one of {sorted(loaders)}. "
            f"Received: dataset={name!r}"
        ) from None
    return loader(**kwargs)
