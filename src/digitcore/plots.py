"""PNG plots of training and evaluation (needs matplotlib: ``pip install 'digitcore[plot]'``).

Every function builds a :class:`matplotlib.figure.Figure` on the Agg canvas
directly, without pyplot, so nothing touches pyplot's global state or the
user's backend and figures are freed like any other object. Each returns the
Figure and, given ``path``, also writes it as PNG atomically (a temporary file
in the same directory is renamed over `path` once complete).
"""

from __future__ import annotations

import io
import math
import textwrap

import numpy as np

__all__ = ["plot_history", "plot_confusion_matrix", "plot_mistakes", "plot_samples",
           "plot_first_layer", "plot_augmented"]

_DPI = 100


def _figure(width: float, height: float, constrained: bool = True):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "digitcore.plots needs matplotlib: pip install 'digitcore[plot]'") from exc
    # constrained layout costs seconds on grids of dozens of axes; grids lay out by hand
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, path):
    if path is not None:
        from digitcore._atomic import atomic_write_bytes

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI)
        atomic_write_bytes(path, buf.getvalue())
    return fig


def _as_images(images, name="images") -> np.ndarray:
    """(n, h, w) from (n, h, w), (n, h, w, 1) or (n, h*w) with a square h*w."""
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[3] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        side = math.isqrt(arr.shape[1])
        if side * side != arr.shape[1]:
            raise ValueError(
                f"{name} of shape {arr.shape}: {arr.shape[1]} features is not a square image")
        arr = arr.reshape(arr.shape[0], side, side)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (n, height, width) or (n, features), "
                         f"got {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} has unsupported dtype {arr.dtype}")
    return arr


def _grid(n: int, ncols=None) -> tuple[int, int]:
    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer))
                              or ncols < 1):
        raise ValueError(f"ncols must be a positive int or None (about square), got {ncols!r}")
    cols = int(ncols) if ncols is not None else max(1, math.ceil(math.sqrt(n)))
    return max(1, math.ceil(n / cols)), cols


def _class_namer(class_names, labels, what="labels"):
    """A function label -> title: class_names[label], after checking that every label in
    ``labels`` is a whole number that indexes class_names; str(label) without names."""
    if class_names is None:
        return str
    names = [str(c) for c in class_names]
    lab = np.asarray(labels)
    if lab.size:
        if lab.dtype.kind not in "iub" and not (lab.dtype.kind == "f"
                                               and np.all(lab == np.round(lab))):
            raise ValueError(f"{what} must be class indices to take names from class_names, "
                             f"got {lab.dtype} values such as {lab.ravel()[0]!r}")
        lo, hi = lab.min(), lab.max()
        if lo < 0 or hi >= len(names):
            raise ValueError(f"class_names has {len(names)} names, but {what} go from {lo} "
                             f"to {hi}: give a name for each class index 0..{int(hi)}")
    return lambda c: names[int(c)]


def _grid_axes(fig, rows, cols, title_space):
    """rows x cols axes filling the figure, leaving `title_space` inches on top."""
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02,
                        top=1 - (title_space + 0.05) / height, wspace=0.15, hspace=0.45)
    return fig.subplots(rows, cols, squeeze=False).ravel()


def _show_digit(ax, img, title=None, fontsize=8):
    # pixels 0-255 (uint8, or floats past 1) or 0-1 on their own scale; anything else
    # (standardized images, negative values) between its own extremes, which drew it
    # nearly black on a 0-255 scale
    lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 0.0)
    if img.dtype == np.uint8 or (lo >= 0 and 1 < hi <= 255):
        vmin, vmax = 0, 255
    elif lo >= 0 and hi <= 1:
        vmin, vmax = 0, 1.0
    else:
        vmin, vmax = lo, hi if hi > lo else lo + 1
    ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=fontsize)


# ----------------------------------------------------------------------------

def plot_history(history, path=None, title=None):
    """Loss and accuracy per epoch, training and validation (and the learning rate).

    Parameters
    ----------
    history : History or dict
        A ``Trainer`` History (its ``.history`` dict is used) or a dict of
        equal-length lists with any of the keys ``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy``, ``lr``. Missing keys and NaN entries
        are simply not drawn.
    path : str or os.PathLike, optional
        Also save the figure there as PNG.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = getattr(history, "history", history)
    if not isinstance(data, dict):
        raise ValueError(f"history must be a History or a dict of lists, got "
                         f"{type(history).__name__}")
    series = {}
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "lr"):
        if key in data and data[key] is not None:
            values = np.asarray(data[key], dtype=np.float64)
            if values.ndim != 1:
                raise ValueError(f"history[{key!r}] must be a list of numbers, got shape "
                                 f"{values.shape}")
            if np.isfinite(values).any():
                series[key] = values
    if not any(k in series for k in ("loss", "val_loss", "accuracy", "val_accuracy")):
        raise ValueError("history has no loss or accuracy values to plot (keys: "
                         f"{sorted(data)})")
    lengths = {len(v) for v in series.values()}
    if len(lengths) != 1:
        raise ValueError(f"history lists have different lengths: "
                         f"{ {k: len(v) for k, v in series.items()} }")
    n = lengths.pop()
    # epochs counted from 1, as training prints them ("Epoch 1/8"; History.epoch, like
    # Keras's, holds 0-based indices)
    epochs = getattr(history, "epoch", None)
    x = np.asarray(epochs, dtype=np.float64) + 1 if epochs is not None and len(epochs) == n \
        else np.arange(1, n + 1, dtype=np.float64)

    panels = [p for p in (("loss", "loss"), ("accuracy", "accuracy")) if
              p[0] in series or f"val_{p[0]}" in series]
    if "lr" in series:
        panels.append(("lr", "learning rate"))
    fig = _figure(4.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    marker = "o" if n <= 30 else None
    for ax, (key, label) in zip(axes, panels):
        if key == "lr":
            ax.plot(x, series["lr"], color="tab:green", marker=marker, markersize=3)
            if np.all(series["lr"][np.isfinite(series["lr"])] > 0):
                ax.set_yscale("log")
        else:
            for k, name, style in ((key, "train", "-"), (f"val_{key}", "validation", "--")):
                if k in series:
                    ax.plot(x, series[k], style, marker=marker, markersize=3, label=name)
            ax.legend()
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_confusion_matrix(cm_or_y_true, y_pred=None, labels=None, normalize=False, path=None,
                          title="confusion matrix", class_names=None):
    """Heatmap of a confusion matrix with the counts written in the cells.

    Parameters
    ----------
    cm_or_y_true : array_like
        A confusion matrix, shape (n_classes, n_classes) (rows true, columns
        predicted), or the true labels, shape (n,), when `y_pred` is given.
    y_pred : array_like, shape (n,), optional
        Predicted labels; the matrix is computed with
        :func:`digitcore.metrics.confusion_matrix`.
    labels : sequence, optional
        With `y_pred`: the classes to count, in order (values like those in the labels:
        numbers for number labels). With a matrix: names for its axes.
    class_names : sequence of str, optional
        Names for the axes, one per class of the matrix, in its order (e.g. Fashion-MNIST's
        "T-shirt/top", ... for labels 0-9). Default: the classes (or `labels`) as text.
    normalize : bool
        Colour by the fraction of each true class (rows sum to 1); cells
        still show counts.
    path : str or os.PathLike, optional
        Also save the figure there as PNG.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if y_pred is not None:
        from digitcore._checks import label_pair, labels_in
        from digitcore.metrics import confusion_matrix

        yt, yp = label_pair(cm_or_y_true, y_pred)
        classes = labels_in(yt, yp, labels)
        cm = confusion_matrix(yt, yp, labels=classes)
        names = [str(c) for c in classes]
    else:
        cm = np.asarray(cm_or_y_true)
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
            raise ValueError(f"confusion matrix must be square (n_classes, n_classes), got "
                             f"shape {cm.shape}; pass y_true, y_pred to compute one")
        if cm.dtype.kind not in "biuf" or not np.all(np.isfinite(cm)) or (cm < 0).any():
            raise ValueError("confusion matrix must hold non-negative finite counts")
        names = [str(c) for c in (labels if labels is not None else range(cm.shape[0]))]
        if len(names) != cm.shape[0]:
            raise ValueError(f"{len(names)} labels for a {cm.shape[0]}-class confusion matrix")
    if class_names is not None:
        names = [str(c) for c in class_names]
        if len(names) != cm.shape[0]:
            raise ValueError(f"{len(names)} class_names for a {cm.shape[0]}-class confusion "
                             "matrix")
    k = cm.shape[0]
    if normalize:
        rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
        colour = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    else:
        colour = cm.astype(np.float64)
    side = min(max(4.0, 0.55 * k + 1.5), 16.0)
    fig = _figure(side + 1.0, side)
    ax = fig.subplots()
    vmax = colour.max() if colour.max() > 0 else 1.0
    im = ax.imshow(colour, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction of true class" if normalize else "count")
    if k <= 30:
        fontsize = 9 if k <= 12 else 6
        for i in range(k):
            for j in range(k):
                v = cm[i, j]
                text = f"{v:.0f}" if float(v).is_integer() else f"{v:.2g}"
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                        color="white" if colour[i, j] > 0.5 * vmax else "black")
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_mistakes(images, y_true, proba, k=25, path=None, ncols=None, class_names=None):
    """The `k` most confident mistakes, titled true / predicted / confidence.

    Parameters
    ----------
    images : array_like, shape (n, h, w) or (n, h*w)
    y_true : array_like of int, shape (n,)
    proba : array_like of float, shape (n, n_classes)
        Predicted probabilities (see :func:`digitcore.metrics.top_mistakes`).
    k : int
        Number of mistakes to show (fewer if there are fewer).
    path : str or os.PathLike, optional
        Also save the figure there as PNG.
    ncols : int, optional
        Grid width; default about sqrt(k).
    class_names : sequence of str, optional
        Names used in titles instead of class indices.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from digitcore.metrics import top_mistakes

    imgs = _as_images(images)
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        # (0 drew "no mistakes" whatever the mistakes)
        raise ValueError(f"k must be a positive int or None (all), got {k!r}")
    mistakes = top_mistakes(y_true, proba, k=k)  # validates y_true and proba
    if imgs.shape[0] != np.shape(y_true)[0]:
        raise ValueError(f"images has {imgs.shape[0]} samples but y_true has "
                         f"{np.shape(y_true)[0]}")

    name = _class_namer(class_names, np.concatenate(
        [[m.true for m in mistakes], [m.predicted for m in mistakes]]).astype(np.int64),
        "the classes")

    if not mistakes:
        fig = _figure(4, 2)
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
        return _finish(fig, path)
    rows, cols = _grid(len(mistakes), ncols)
    # (at least as wide as the figure's title)
    fig = _figure(max(1.45 * cols, 2.6), 1.6 * rows + 0.7, constrained=False)
    axes = _grid_axes(fig, rows, cols, title_space=0.7)
    for ax in axes[len(mistakes):]:
        ax.axis("off")
    for ax, m in zip(axes, mistakes):
        _show_digit(ax, imgs[m.index],
                    f"true {name(m.true)} / pred {name(m.predicted)}\n{m.confidence:.0%}",
                    fontsize=7)
    fig.suptitle("most confident mistakes", y=1 - 0.08 / fig.get_figheight(), va="top")
    return _finish(fig, path)


def plot_samples(images, labels=None, n=25, path=None, ncols=None, class_names=None):
    """A grid of the first `n` images, titled with their labels.

    Parameters
    ----------
    images : array_like, shape (m, h, w) or (m, h*w)
    labels : array_like, shape (m,), optional
    n : int
        How many images to show (at most m).
    path : str or os.PathLike, optional
        Also save the figure there as PNG.
    ncols : int, optional
    class_names : sequence of str, optional
        Names for integer labels (e.g. Fashion-MNIST classes).

    Returns
    -------
    matplotlib.figure.Figure
    """
    imgs = _as_images(images)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != imgs.shape[0]:
            raise ValueError(f"labels of shape {labels.shape} do not match {imgs.shape[0]} "
                             "images")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    count = min(int(n), imgs.shape[0])
    if count == 0:
        raise ValueError("no images to plot")
    rows, cols = _grid(count, ncols)
    name = _class_namer(class_names, labels[:count]) if labels is not None else None
    top = 0.25 if name is not None else 0.0  # (the first row's labels)
    fig = _figure(1.2 * cols, 1.35 * rows + top, constrained=False)
    axes = _grid_axes(fig, rows, cols, title_space=top)
    for ax in axes[count:]:
        ax.axis("off")
    for i in range(count):
        _show_digit(axes[i], imgs[i], name(labels[i]) if name is not None else None)
    return _finish(fig, path)


def plot_first_layer(network_or_weights, n=64, path=None, ncols=None, image_shape=None):
    """First-layer weights of each hidden unit as an image (28x28 for MNIST).

    The units are tiled into one mosaic, each scaled by its largest absolute
    weight and drawn with a diverging colour map (red positive, blue
    negative, white zero).

    Parameters
    ----------
    network_or_weights : Network, ndarray of shape (units, h*w), or list of arrays
        A Network (its ``weights[0]`` is used), a first-layer weight matrix in
        PyTorch layout, or a list whose first element is one.
    n : int
        Show at most this many units.
    path : str or os.PathLike, optional
        Also save the figure there as PNG.
    ncols : int, optional
    image_shape : (int, int), optional
        The images' (height, width); default: square.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if hasattr(network_or_weights, "members") and not hasattr(network_or_weights, "weights"):
        raise TypeError(f"plot_first_layer draws one network's first layer; this is a "
                        f"committee of {len(network_or_weights.members)}: pass one of its "
                        f".members (digitcore evaluate --plots draws the first)")
    w = getattr(network_or_weights, "weights", network_or_weights)
    if isinstance(w, (list, tuple)):
        if not w:
            raise ValueError("no weights to plot")
        w = w[0]
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"first-layer weights must have shape (units, features), got {w.shape}")
    if image_shape is None:
        side = math.isqrt(w.shape[1])
        if side * side != w.shape[1] or side == 0:
            raise ValueError(f"first layer has {w.shape[1]} inputs, not a square image: "
                             "give image_shape=(height, width)")
        image_shape = (side, side)
    try:
        hgt, wid = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (height, width), got {image_shape!r}") from None
    if hgt < 1 or wid < 1 or hgt * wid != w.shape[1]:
        raise ValueError(f"image_shape {image_shape!r} does not hold the first layer's "
                         f"{w.shape[1]} inputs")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    count = min(int(n), w.shape[0])
    rows, cols = _grid(count, ncols)
    # One mosaic image instead of an axes per unit: drawing stays fast for 100s of units.
    # Each unit is scaled to [-1, 1] by its own largest |weight|; NaN gaps show as white.
    gap = max(1, max(hgt, wid) // 14)
    mosaic = np.full((rows * (hgt + gap) + gap, cols * (wid + gap) + gap), np.nan)
    for i in range(count):
        unit = w[i].reshape(hgt, wid)
        lim = float(np.abs(unit).max()) or 1.0
        r, c = divmod(i, cols)
        y0, x0 = gap + r * (hgt + gap), gap + c * (wid + gap)
        mosaic[y0:y0 + hgt, x0:x0 + wid] = unit / lim
    fig = _figure(max(3.0, 0.9 * cols + 0.8), max(2.5, 0.9 * rows + 0.6))
    ax = fig.subplots()
    from matplotlib import colormaps

    cmap = colormaps["RdBu_r"].with_extremes(bad="white")
    im = ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="weight / max |weight| of unit")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.suptitle(f"first-layer weights ({count} of {w.shape[0]} units)")
    return _finish(fig, path)


def plot_augmented(images, augment="full", n=6, k=7, path=None, seed=0, title=None):
    """A grid of augmented samples: each row one of the first `n` images, then `k`
    random deformations of it by the kernel and parameters training deforms batches with.

    Parameters
    ----------
    images : array_like, shape (m, h, w) or (m, h*w); uint8 or float in [0, 1]
    augment : str, dict or digitcore.Augment
        What :class:`digitcore.Trainer` would take as ``augment``.
    n, k : int
        Rows (images) and deformations per row.
    path : str or os.PathLike, optional
        Also save the figure there as PNG.
    seed : int
        The deformations are those of ``Augment.apply(..., seed, stream=j)`` for column j.
    title : str, optional
        Defaults to the augmentation's parameters.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from digitcore.augment import get_augment

    aug = get_augment(augment)
    if aug is None:
        raise ValueError("augment must name a deformation, got None")
    imgs = _as_images(images)
    for name, v in (("n", n), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    rows = min(int(n), imgs.shape[0])
    if rows == 0:
        raise ValueError("no images to plot")
    src = imgs[:rows]
    if src.dtype != np.uint8:
        src = src.astype(np.float32)
    variants = [aug.apply(src, seed=seed, stream=j) for j in range(int(k))]
    cols = int(k) + 1
    if title is None:
        skip = {"bank_size"} | (set() if aug.elastic else {"sigma"})
        title = ", ".join(f"{key} {v:g}" for key, v in aug.to_dict().items()
                          if v and key not in skip)
    # the title wrapped to the figure's width (about 12 characters an inch at 9 points),
    # the "original" label of the first row under it
    width = max(1.0 * cols, 2.0)
    title = textwrap.fill(title, width=int(12 * width))
    lines = title.count("\n") + 1
    fig = _figure(width, 1.0 * rows + 0.25 + 0.17 * lines, constrained=False)
    axes = _grid_axes(fig, rows, cols, title_space=0.2 + 0.17 * lines)
    for i in range(rows):
        _show_digit(axes[i * cols], src[i], "original" if i == 0 else None)
        for j in range(int(k)):
            _show_digit(axes[i * cols + j + 1], variants[j][i])
    fig.suptitle(title, fontsize=9, y=1 - 0.04 / fig.get_figheight(), va="top")
    return _finish(fig, path)
