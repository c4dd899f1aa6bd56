"""Figures comparing PCA with an autoencoder, written as PNG files.

Every function draws on a ``matplotlib.figure.Figure`` with an Agg canvas, so
the user's global matplotlib backend is never touched, and matplotlib is
imported only when a figure is drawn.
PCA is always drawn in ``PCA_COLOR`` and the autoencoder in ``AE_COLOR`` so a
reader learns the colours once for the whole report. Each PNG also stores the
numbers it draws as JSON text (``read_figure_data`` reads them back), so tests
and users can check exactly what a figure shows.
"""

from __future__ import annotations

import io
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from aepca._files import write_atomic
from aepca.validation import as_image_shape, invalid_value, plural

__all__ = [
    "AE_COLOR",
    "FIGURE_DATA_KEY",
    "ORIGINAL_COLOR",
    "PCA_COLOR",
    "plot_codes",
    "plot_loss",
    "plot_reconstructions",
    "plot_sweep",
    "read_figure_data",
]

PCA_COLOR = "#3a6fb0"
AE_COLOR = "#e07b24"
ORIGINAL_COLOR = "#222222"
DPI = 120
# Beyond this many classes a legend stops being readable; a colorbar is used.
_MAX_LEGEND_CLASSES = 20
# Lines in small multiples get markers only while markers stay distinguishable,
# and feature names below them only while names stay readable.
_MAX_MARKED_POINTS = 30
_MAX_NAMED_FEATURES = 12
# Rows of more features than this are drawn as each feature's reconstructed value against its original
# (a profile of 20,000 features is a solid band), a fixed-seed sample of at most _MAX_PLOTTED_FEATURES.
_MAX_PROFILE_FEATURES = 100
_MAX_PLOTTED_FEATURES = 2000
# The PNG text key holding a figure's numbers as JSON.
FIGURE_DATA_KEY = "aepca:data"
# Scatter axes cover these percentiles of the points, padded by this share of
# their range, so that a few far outliers cannot squash the rest into a dot.
_BULK_PERCENTILES = (0.5, 99.5)
_BULK_PAD = 0.05


# --------------------------------------------------------------------------- helpers


def _new_figure(width, height, layout="constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, data) -> Path:
    """Write ``fig`` as a PNG with ``data`` (JSON-able) under ``FIGURE_DATA_KEY``."""
    path = Path(path)
    buffer = io.BytesIO()
    metadata = {FIGURE_DATA_KEY: json.dumps(data, allow_nan=False)}
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata=metadata)
    write_atomic(path, buffer.getvalue())
    return path


def read_figure_data(path) -> dict:
    """The numbers a figure of this module draws, read back from its PNG file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            text = getattr(image, "text", {}).get(FIGURE_DATA_KEY)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image. Pass a PNG written by aepca.plots.") from None
    if text is None:
        raise ValueError(
            f"{path} holds no figure data (no PNG text {FIGURE_DATA_KEY!r}). "
            "Pass a PNG written by aepca.plots, or draw the figure again."
        )
    return json.loads(text)


def _json_value(value):
    """A drawn number as JSON: integers stay integers, NaN and infinities (not drawn) become null."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    return str(value)


def _json_list(values) -> list:
    return [_json_value(v) for v in values]


def _fmt(value) -> str:
    return f"{value:.4g}"


def _as_matrix(name, values, rows: int | None = None) -> np.ndarray:
    """``values`` as a 2-D float array, only its first ``rows`` rows when given
    (a figure showing a few samples converts no more than those)."""
    array = np.asarray(values)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise invalid_value(
            name,
            "a non-empty 2-D array (samples x dimensions)",
            f"{name}.shape={np.shape(values)}",
            "Pass one row per sample.",
        )
    return np.asarray(array[:rows], dtype=float)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise invalid_value(name, "a positive integer", f"{name}={value!r}", "Pass an integer >= 1.")


def _optional_number(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid_value(name, "a number or None", f"{name}={value!r}", "Pass the test MSE as a float.")
    return float(value)


def _use_log_scale(values, min_ratio) -> bool:
    """Log scale only helps when all values are positive and span a wide range."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0 or finite.min() <= 0:
        return False
    return finite.max() / finite.min() > min_ratio


# --------------------------------------------------------------------------- codes


class _Labels:
    """How labels colour points: none, a few classes (legend) or a continuum (colorbar)."""

    def __init__(self, labels, n, label_names, title):
        self.title = title
        self.values = None
        self.kind = "none"
        if labels is None:
            return
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != n:
            raise invalid_value(
                "labels",
                f"one label per sample ({n})",
                f"labels.shape={labels.shape}",
                "Pass a 1-D array aligned with the codes, or labels=None.",
            )
        numeric = np.issubdtype(labels.dtype, np.number) or labels.dtype == bool
        if numeric:
            labels = labels.astype(float)
            finite = labels[np.isfinite(labels)]
            integral = finite.size > 0 and np.all(finite == np.round(finite))
            classes = np.unique(finite)
        else:
            labels = labels.astype(str)
            integral = True
            classes = np.unique(labels)
        if integral and classes.size <= _MAX_LEGEND_CLASSES:
            self.kind = "classes"
            self.classes = classes
            self.index = {c: i for i, c in enumerate(classes)}
            self.names = [self._name(c, label_names) for c in classes]
            self.values = labels
            self.title = title or "class"
        elif numeric:
            self.kind = "continuous"
            self.values = labels
            self.norm_range = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
            self.title = title or "label value"
        else:
            # Many string classes: colour by class index and show the index scale.
            self.kind = "continuous"
            self.values = np.searchsorted(classes, labels).astype(float)
            self.norm_range = (0.0, float(classes.size - 1))
            self.title = title or "class index"

    @staticmethod
    def _name(value, label_names):
        key = int(value) if isinstance(value, float) else value
        try:  # label_names may be None, or lack this label
            return str(label_names[key])
        except (KeyError, IndexError, TypeError):
            return str(key)

    def class_colors(self):
        import matplotlib

        cmap = matplotlib.colormaps["tab10" if self.classes.size <= 10 else "tab20"]
        return [cmap(i) for i in range(self.classes.size)]

    def class_positions(self, subset):
        """Row of each point's class, for strip plots; NaN labels get NaN."""
        return np.array([self.index.get(v, np.nan) for v in subset], dtype=float)


def _bulk_limits(values):
    """Axis limits around the bulk of ``values`` (percentiles padded by a share
    of their range), or around all of them when the farthest points lie
    within twice that range: ordinary tails are shown, far outliers are not."""
    low, high = np.percentile(values, _BULK_PERCENTILES)
    pad = _BULK_PAD * ((high - low) if high > low else max(abs(low), 1.0))
    low, high = low - pad, high + pad
    if np.ptp(values) <= 2 * (high - low):
        return float(np.min(values)), float(np.max(values))
    return float(low), float(high)


def point_area(n_points: int) -> float:
    """Marker area (points^2) for a scatter of ``n_points``: 5 from 5,000 points on, larger for fewer
    (the same ink in all), up to 40 so that a few dozen points stay visible."""
    return float(np.clip(5.0 * np.sqrt(5000 / max(n_points, 1)), 5.0, 40.0))


def _scatter_panel(ax, codes, labels, idx, color, axis_names, rng):
    """Draw one method's codes; returns the artist that a colorbar should use and the panel's counts."""
    k = codes.shape[1]
    sub = codes[idx]
    finite = np.all(np.isfinite(sub), axis=1)
    dropped = int((~finite).sum())
    sub = sub[finite]
    lab = labels.values[idx][finite] if labels.values is not None else None
    area = point_area(len(sub))
    # Code axes only: x, and y when it is a second code dimension.
    code_axes = sub[:, : min(k, 2)].T if len(sub) else ()
    limits = [_bulk_limits(column) for column in code_axes]
    beyond = [(column < low) | (column > high) for column, (low, high) in zip(code_axes, limits)]
    outside = int(np.any(beyond, axis=0).sum()) if beyond else 0
    x = sub[:, 0]
    mappable = None
    if k == 1 and labels.kind == "none":
        ax.hist(x, bins=min(50, max(10, int(np.sqrt(x.size)))), color=color, alpha=0.85,
                range=limits[0] if beyond and beyond[0].any() else None)
    else:
        if labels.kind == "classes":
            rows = labels.class_positions(lab)
            colors = labels.class_colors()
            style = {"c": [colors[int(r)] if np.isfinite(r) else "lightgrey" for r in rows], "alpha": 0.6}
        elif labels.kind == "continuous":
            style = {"c": lab, "cmap": "viridis", "vmin": labels.norm_range[0], "vmax": labels.norm_range[1],
                     "alpha": 0.7}
        else:
            style = {"color": color, "alpha": 0.5}
        if k > 1:
            y = sub[:, 1]
        elif labels.kind == "classes":
            y = rows + rng.uniform(-0.3, 0.3, size=rows.size)
        else:
            y = lab
        artist = ax.scatter(x, y, s=area, linewidths=0, **style)
        if labels.kind == "continuous":
            mappable = artist
    ax.set_xlabel(axis_names[0])
    if k > 1:
        ax.set_ylabel(axis_names[1])
    elif labels.kind == "none":
        ax.set_ylabel("count (points)")
    else:
        ax.set_ylabel(labels.title)
        if labels.kind == "classes":
            ax.set_yticks(range(len(labels.names)), labels=labels.names)
    # A panel whose points all fit keeps matplotlib's automatic limits.
    for set_limits, axis_limits, out in zip((ax.set_xlim, ax.set_ylim), limits, beyond):
        if out.any():
            set_limits(axis_limits)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    notes = []
    if dropped:
        notes.append(f"{plural(dropped, 'non-finite point')} omitted")
    if outside:
        notes.append(f"{plural(outside, 'point')} outside the axes")
    if notes:
        ax.text(
            0.01, 0.99, "\n".join(notes), transform=ax.transAxes,
            ha="left", va="top", fontsize=8, color="#b00020",
        )
    return mappable, {"non_finite_omitted": dropped, "outside_axes": outside}


def _axis_names(prefix, k):
    of = f" (of {k})" if k > 2 else ""
    return [f"{prefix} {i}{of}" for i in (1, 2)]


def plot_codes(
    pca_codes,
    ae_codes,
    labels,
    path,
    *,
    title=None,
    max_points=5000,
    seed=0,
    label_names=None,
    label_title=None,
):
    """Scatter PCA's and the autoencoder's codes side by side, coloured by label.

    Codes with more than two dimensions show their first two; a 1-D code is
    drawn against the label (or as a histogram when there are no labels).
    Labels with at most 20 integer (or string) values get a legend, named by
    ``label_names`` (a sequence or mapping from label to name); other numeric
    labels get a colorbar titled ``label_title``. At most ``max_points``
    points, a subsample drawn with ``seed``, are shown. Code axes cover the
    bulk of the points (0.5th to 99.5th percentile); a panel says how many
    lie outside. Returns the PNG path.
    """
    from matplotlib.lines import Line2D

    pca_codes = _as_matrix("pca_codes", pca_codes)
    ae_codes = _as_matrix("ae_codes", ae_codes)
    n = pca_codes.shape[0]
    if ae_codes.shape[0] != n:
        raise invalid_value(
            "ae_codes",
            f"as many rows as pca_codes ({n})",
            f"ae_codes.shape={ae_codes.shape}",
            "Encode the same samples with both methods.",
        )
    _check_positive_int("max_points", max_points)
    labels = _Labels(labels, n, label_names, label_title)

    rng = np.random.default_rng(seed)
    # A random order also keeps the last class from being painted over the rest.
    idx = rng.permutation(n)[:max_points]

    fig = _new_figure(11.5, 5.0)
    axes = fig.subplots(1, 2)
    mappable = None
    drawn = []
    panels = [
        (axes[0], pca_codes, PCA_COLOR, "PCA", _axis_names("PC", pca_codes.shape[1])),
        (axes[1], ae_codes, AE_COLOR, "Autoencoder", _axis_names("code", ae_codes.shape[1])),
    ]
    for ax, codes, color, name, axis_names in panels:
        k = codes.shape[1]
        artist, counts = _scatter_panel(ax, codes, labels, idx, color, axis_names, rng)
        mappable = artist or mappable
        detail = f"{k}-D code" + (", first 2 shown" if k > 2 else "")
        ax.set_title(f"{name}  ({detail})", color=color, fontweight="bold")
        drawn.append({"method": name, "code_dims": k, "xlim": _json_list(ax.get_xlim()),
                      "ylim": _json_list(ax.get_ylim()), **counts})

    shown = f"{idx.size:,} of {n:,} points" if idx.size < n else f"{n:,} points"
    fig.suptitle(f"{title or 'Codes: PCA vs autoencoder'}  —  {shown}")
    if labels.kind == "classes":
        handles = [
            Line2D([], [], linestyle="", marker="o", markersize=7, color=c, label=name)
            for c, name in zip(labels.class_colors(), labels.names)
        ]
        fig.legend(handles=handles, title=labels.title, loc="outside right center", frameon=False)
    elif mappable is not None:
        fig.colorbar(mappable, ax=list(axes), label=labels.title, shrink=0.9)
    return _save(fig, path, {"points": n, "points_shown": int(idx.size), "panels": drawn})


# --------------------------------------------------------------------------- reconstructions


def _row_label(name, mse):
    return name if mse is None else f"{name}\ntest MSE {_fmt(mse)}"


def plot_reconstructions(
    originals,
    pca_recon,
    ae_recon,
    path,
    *,
    image_shape=None,
    n=10,
    pca_mse=None,
    ae_mse=None,
    feature_names=None,
    units=None,
):
    """Show the first ``n`` samples next to their PCA and autoencoder reconstructions.

    With ``image_shape`` the rows are images: original, PCA, autoencoder;
    (height, width) or (height, width, 1) are grey, (height, width, 3 or 4)
    colour. Without it each sample gets a small panel with its
    feature profile (original and both reconstructions as lines), with the
    features named by ``feature_names`` when there are few enough to read,
    and the values' ``units`` in the title when given; rows of more than
    ``_MAX_PROFILE_FEATURES`` features get each feature's reconstructed value
    against its original instead.
    ``pca_mse`` / ``ae_mse`` (test MSE) are shown with each method's label.
    Returns the PNG path.
    """
    _check_positive_int("n", n)
    for name, values in (("pca_recon", pca_recon), ("ae_recon", ae_recon)):
        if np.shape(values) != np.shape(originals):
            raise invalid_value(
                name,
                f"the shape of originals {np.shape(originals)}",
                f"{name}.shape={np.shape(values)}",
                "Reconstruct the same samples that are passed as originals.",
            )
    originals = _as_matrix("originals", originals, rows=n)
    pca_recon = _as_matrix("pca_recon", pca_recon, rows=n)
    ae_recon = _as_matrix("ae_recon", ae_recon, rows=n)
    pca_mse = _optional_number("pca_mse", pca_mse)
    ae_mse = _optional_number("ae_mse", ae_mse)
    n = originals.shape[0]
    rows = [
        ("Original", originals, ORIGINAL_COLOR),
        (_row_label("PCA", pca_mse), pca_recon, PCA_COLOR),
        (_row_label("Autoencoder", ae_mse), ae_recon, AE_COLOR),
    ]
    if image_shape is not None:
        image_shape = _check_image_shape(image_shape, originals.shape[1])
        fig, shown_names, view = _image_rows(rows, image_shape, n), None, "images"
    elif originals.shape[1] > _MAX_PROFILE_FEATURES:
        fig, shown_names, view = _value_grid(rows, n, originals.shape[1], units), None, "values"
    else:
        fig, shown_names = _profile_grid(rows, n, feature_names, originals.shape[1], units)
        view = "profiles"
    data = {"samples": n, "view": view, "image_shape": None if image_shape is None else list(image_shape),
            "feature_names": shown_names, "units": units,
            "pca_test_mse": _json_value(pca_mse), "autoencoder_test_mse": _json_value(ae_mse)}
    return _save(fig, path, data)


def _check_image_shape(image_shape, n_features) -> tuple[int, ...]:
    dims = as_image_shape(image_shape)
    if dims is None or math.prod(dims) != n_features:
        raise invalid_value(
            "image_shape",
            f"(height, width), (height, width, 1) or (height, width, 3 or 4) with a product of {n_features} features",
            f"image_shape={image_shape!r}",
            "Pass the dataset's image_shape, or None for tabular data.",
        )
    return dims


def _display_range(values) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return vmin, vmax if vmax > vmin else vmin + 1.0


def _image_rows(rows, image_shape, n):
    # One scale for all rows (from the originals), so a washed-out
    # reconstruction looks washed out.
    vmin, vmax = _display_range(rows[0][1])
    import matplotlib

    height, width = image_shape[:2]
    channels = image_shape[2] if len(image_shape) == 3 else 1
    colour = channels > 1
    aspect = height / width
    fig = _new_figure(1.6 + 1.05 * n, 0.5 + 3 * 1.05 * aspect + 0.35)
    # One image per row, the samples side by side with blank gaps: a grid of
    # 3 x n axes would take most of the figure's time.
    gap = max(1, width // 8)
    grey = matplotlib.colormaps["gray"].with_extremes(bad="white")
    for ax, (label, data, color) in zip(fig.subplots(3, 1), rows):
        # Gaps (and non-finite values) are NaN, drawn white.
        strip = np.full((height, n * (width + gap) - gap, channels), np.nan)
        for c in range(n):
            start = c * (width + gap)
            strip[:, start : start + width] = data[c].reshape(height, width, channels)
        if colour:
            # RGB(A) is drawn as given in [0, 1] and has no "bad" colour: scale, clip, white for NaN.
            scaled = np.clip((strip - vmin) / (vmax - vmin), 0.0, 1.0)
            ax.imshow(np.where(np.isfinite(strip), scaled, 1.0), interpolation="nearest")
        else:
            ax.imshow(strip[..., 0], cmap=grey, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", color=color, fontsize=10, fontweight="bold")
    fig.suptitle(f"Reconstructions of {n} samples (same {'colour' if colour else 'grey'} scale in every row)")
    return fig


def _sample_panels(axes, n, ncols, ylabel, xlabel):
    """Each sample's index, axes (titled, with a grid, small ticks and, on the outer panels, axis
    labels) and whether it ends its column; the grid's unused axes are hidden."""
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for i, ax in enumerate(axes.flat[:n]):
        bottom = i + ncols >= n
        ax.set_title(f"sample {i + 1}", fontsize=9)
        ax.grid(True, color="#e5e5e5", linewidth=0.6)
        ax.tick_params(labelsize=8)
        if i % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=9)
        if bottom:
            ax.set_xlabel(xlabel, fontsize=9)
        yield i, ax, bottom


def _profile_grid(rows, n, feature_names, n_features, units=None):
    """The grid of feature profiles, and the names labelling its features (None where they are numbered)."""
    from matplotlib.lines import Line2D

    if feature_names is not None and len(feature_names) != n_features:
        raise invalid_value(
            "feature_names",
            f"{n_features} names",
            f"len(feature_names)={len(feature_names)}",
            "Pass one name per column, or None.",
        )
    ncols = min(n, 5)
    nrows = math.ceil(n / ncols)
    named = feature_names is not None and n_features <= _MAX_NAMED_FEATURES
    names = [str(name) for name in feature_names] if named else None
    # Margins in inches, set by hand: constrained layout, which measures every panel to fit them,
    # is slow here. Names, at 60 degrees and 7 points, take about 0.05 inch a character below each
    # panel that shows them.
    names_room = 0.1 + 0.05 * max(map(len, names)) if named else 0.0
    panel, gap = 1.9, 0.55 + names_room
    left, right, top, bottom = 0.75, 0.15, 0.7, 0.9 + names_room
    width, height = 2.6 * ncols + 0.6, top + nrows * panel + (nrows - 1) * gap + bottom
    fig = _new_figure(width, height, layout=None)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=0.25, hspace=gap / panel)
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False, sharex=True))
    x = np.arange(1, n_features + 1)
    marker = "o" if n_features <= _MAX_MARKED_POINTS else None
    styles = [("-", 1.8), ("--", 1.4), ("-.", 1.4)]
    for i, ax, bottom in _sample_panels(axes, n, ncols, "feature value", "feature"):
        for (label, data, color), (linestyle, width) in zip(rows, styles):
            ax.plot(x, data[i], linestyle=linestyle, linewidth=width, color=color,
                    marker=marker, markersize=3)
        # Short tick labels (a power of ten above the axis beyond 1e4), to fit the margins.
        ax.ticklabel_format(axis="y", scilimits=(-3, 4))
        if bottom:
            ax.xaxis.set_tick_params(labelbottom=True)
            if named:
                ax.set_xticks(x, labels=names, rotation=60, ha="right", fontsize=7)
    if not named:
        from matplotlib.ticker import MaxNLocator

        axes.flat[0].xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    handles = [
        Line2D([], [], linestyle=linestyle, linewidth=width, color=color, marker=marker,
               markersize=4, label=label.replace("\n", ", "))
        for (label, _, color), (linestyle, width) in zip(rows, styles)
    ]
    fig.legend(handles=handles, loc="lower center", ncols=3, frameon=False)
    fig.suptitle(f"Reconstructions of {n} samples: feature profiles" + (f" in {units}" if units else ""))
    return fig, names


def _value_grid(rows, n, n_features, units=None):
    """Each sample's reconstructed values against its original ones (on the diagonal: reconstructed
    exactly), for rows too wide for a profile: a fixed-seed sample of at most _MAX_PLOTTED_FEATURES."""
    from matplotlib.lines import Line2D

    ncols = min(n, 5)
    nrows = math.ceil(n / ncols)
    fig = _new_figure(2.6 * ncols + 0.6, 2.4 * nrows + 1.0)
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
    sampled = n_features > _MAX_PLOTTED_FEATURES
    shown = np.sort(np.random.default_rng(0).choice(n_features, _MAX_PLOTTED_FEATURES, replace=False)) if sampled \
        else slice(None)
    (_, originals, _), *methods = rows
    for i, ax, _ in _sample_panels(axes, n, ncols, "reconstructed value", "original value"):
        values = originals[i, shown]
        for _, data, color in methods:
            ax.plot(values, data[i, shown], linestyle="none", marker=".", markersize=2, alpha=0.5, color=color)
        ends = [values.min(), values.max()]
        ax.plot(ends, ends, color=ORIGINAL_COLOR, linewidth=1)
    handles = [Line2D([], [], color=ORIGINAL_COLOR, linewidth=1, label="Original (the diagonal)")]
    handles += [Line2D([], [], linestyle="none", marker="o", markersize=4, color=color, label=label.replace("\n", ", "))
                for label, _, color in methods]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    features = f"{_MAX_PLOTTED_FEATURES:,} of the {n_features:,} features" if sampled else f"the {n_features:,} features"
    fig.suptitle(f"Reconstructions of {n} samples: each of {features}, reconstructed against its original value"
                 + (f" ({units})" if units else ""))
    return fig


# --------------------------------------------------------------------------- loss


def plot_loss(history, path, *, pca_test_mse=None, loss_name="MSE", units=None):
    """Training and validation loss per epoch, with PCA's test MSE for reference.

    ``history`` is a Keras-style ``{"loss": [...], "val_loss": [...]}``
    (``val_loss`` optional; an empty ``loss`` list means no network was
    trained, e.g. PCA was kept). The y axis turns logarithmic when the values
    span more than 10x. Returns the PNG path.
    """
    from matplotlib.ticker import MaxNLocator

    if not isinstance(history, Mapping) or not isinstance(history.get("loss"), Sequence):
        raise invalid_value(
            "history",
            "a mapping with a 'loss' list",
            f"history={history!r:.200}",
            "Pass the History.history dict from training.",
        )
    pca_test_mse = _optional_number("pca_test_mse", pca_test_mse)
    curves = [("training", "loss", "-", "o"), ("validation", "val_loss", "--", "s")]
    fig = _new_figure(7.5, 4.6)
    ax = fig.subplots()
    everything = []
    drawn = {}
    n_epochs = 0
    for name, key, linestyle, marker in curves:
        values = np.asarray(history.get(key) or [], dtype=float)
        drawn[name] = _json_list(values.tolist())
        if values.size == 0:
            continue
        epochs = np.arange(1, values.size + 1)
        n_epochs = max(n_epochs, values.size)
        ax.plot(epochs, values, linestyle=linestyle, color=AE_COLOR, linewidth=1.8,
                marker=marker if values.size <= _MAX_MARKED_POINTS else None,
                markersize=4, label=f"Autoencoder {name} loss")
        everything.extend(values.tolist())
        if key == "val_loss" and np.isfinite(values).any():
            best = int(np.nanargmin(values))
            ax.plot(best + 1, values[best], marker="*", markersize=13, color=AE_COLOR,
                    markeredgecolor="black", linestyle="",
                    label=f"best validation: epoch {best + 1}, {_fmt(values[best])}")
    if pca_test_mse is not None:
        ax.axhline(pca_test_mse, linestyle="--", color=PCA_COLOR, linewidth=1.5,
                   label=f"PCA test {loss_name} = {_fmt(pca_test_mse)}")
        everything.append(pca_test_mse)
    if n_epochs == 0:
        ax.text(0.5, 0.6, "no network was trained: PCA was kept (see the notes)", transform=ax.transAxes,
                ha="center", va="center")
    elif not np.isfinite(np.asarray(everything, dtype=float)).any():
        ax.text(0.5, 0.5, "no finite loss values (training diverged?)", transform=ax.transAxes,
                ha="center", va="center", color="#b00020")
    if _use_log_scale(everything, 10.0):
        ax.set_yscale("log")
    # Half an epoch of room on both sides keeps a 1-epoch run from zooming into 0.99..1.01.
    ax.set_xlim(0.5, max(n_epochs, 1) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_name if units is None else f"{loss_name} ({units})")
    ax.set_title(f"Autoencoder training: {loss_name} per epoch")
    ax.grid(True, which="major", color="#e5e5e5", linewidth=0.6)
    ax.legend(frameon=False)
    return _save(fig, path, {**drawn, "pca_test_mse": _json_value(pca_test_mse), "units": units})


# --------------------------------------------------------------------------- sweep


_SWEEP_KEYS = ("k", "pca_test_mse", "autoencoder_test_mse")


def _equivalent_label(value) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return f"≈{value:.3g}" if math.isfinite(value) else ""
    return f"≈{value}"


def plot_sweep(rows, path, *, title=None, units=None):
    """Test MSE against code size ``k`` for PCA and the autoencoder.

    ``rows`` are dicts with ``k``, ``pca_test_mse`` and ``autoencoder_test_mse``;
    an autoencoder point is annotated with ``pca_equivalent_components`` (how
    many principal components reach the same MSE) when the row has it.
    Returns the PNG path.
    """
    from matplotlib.ticker import NullLocator

    if not isinstance(rows, Sequence) or len(rows) == 0:
        raise invalid_value(
            "rows", "a non-empty list of dicts", f"rows={rows!r:.200}", "Pass one dict per code size."
        )
    for i, row in enumerate(rows):
        missing = [key for key in _SWEEP_KEYS if not isinstance(row, Mapping) or key not in row]
        if missing:
            raise invalid_value(
                f"rows[{i}]",
                f"keys {list(_SWEEP_KEYS)}",
                f"rows[{i}] lacks {missing}",
                "Add the missing results to every row.",
            )
        k = row["k"]
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise invalid_value(f"rows[{i}]['k']", "a positive integer code size", f"k={k!r}", "Store k as an int.")
    rows = sorted(rows, key=lambda row: row["k"])
    ks = [row["k"] for row in rows]

    def column(key):
        return np.asarray([np.nan if row[key] is None else row[key] for row in rows], dtype=float)

    pca, ae = column("pca_test_mse"), column("autoencoder_test_mse")
    fig = _new_figure(7.5, 4.8)
    ax = fig.subplots()
    ae_label = "Autoencoder"
    if any(row.get("pca_equivalent_components") is not None for row in rows):
        ae_label += " (≈N: principal components needed for the same MSE)"
    ax.plot(ks, pca, marker="o", color=PCA_COLOR, linewidth=1.8, label="PCA")
    ax.plot(ks, ae, marker="s", color=AE_COLOR, linewidth=1.8, label=ae_label)
    for row, k, value in zip(rows, ks, ae):
        equivalent = row.get("pca_equivalent_components")
        if equivalent is not None and np.isfinite(value):
            # Up and right of the point: clear of a curve that falls with k.
            ax.annotate(_equivalent_label(equivalent), (k, value), xytext=(5, 4),
                        textcoords="offset points", ha="left", va="bottom", fontsize=8,
                        color=AE_COLOR)
    if _use_log_scale(list(pca) + list(ae), 0.0):
        ax.set_yscale("log")
    if min(ks) > 0 and max(ks) / min(ks) >= 8:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ks, labels=[str(k) for k in ks])
    ax.margins(x=0.08)
    ax.set_xlabel("code size k (dimensions)")
    ax.set_ylabel("test MSE" if units is None else f"test MSE ({units})")
    ax.set_title(title or "Test reconstruction error vs code size")
    ax.grid(True, which="major", color="#e5e5e5", linewidth=0.6)
    ax.legend(frameon=False)
    data = {
        "k": _json_list(ks),
        "pca_test_mse": _json_list(pca.tolist()),
        "autoencoder_test_mse": _json_list(ae.tolist()),
        "pca_equivalent_components": _json_list(row.get("pca_equivalent_components") for row in rows),
        "units": units,
    }
    return _save(fig, path, data)
