"""Experiments: PCA-vs-autoencoder comparisons, sweeps and reproductions."""
