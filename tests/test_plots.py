"""Tests of digitcore.plots: each plot renders a real, non-trivial PNG."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from digitcore import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_png(path, min_kb=5):
    """A valid PNG, more than `min_kb` KB, with many colours (not a blank canvas)."""
    from matplotlib.image import imread

    data = open(path, "rb").read()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_kb * 1024, len(data)
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    rgb = np.round(pixels[..., :3] * 255).astype(np.uint32)
    colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    assert len(colours) > 20  # not a single colour
    return pixels


def _digits(n=30, seed=0):
    """Blocky fake digits: a bright bar whose position depends on the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    x = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, lab in enumerate(labels):
        x[i, 4:24, 4 + 2 * lab:7 + 2 * lab] = 255
        x[i] = np.maximum(x[i], rng.integers(0, 40, (28, 28)).astype(np.uint8))
    return x, labels


def _proba(labels, seed=1):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((len(labels), 10)) * 2
    logits[np.arange(len(labels)), labels] += 2.5  # mostly right
    p = np.exp(logits)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


class FakeHistory:
    def __init__(self, n=12):
        e = np.arange(1, n + 1)
        self.history = {"loss": list(1 / e), "accuracy": list(1 - 0.5 / e),
                        "val_loss": list(1.2 / e), "val_accuracy": list(1 - 0.6 / e),
                        "lr": list(0.1 * 0.8 ** e), "seconds": [0.5] * n}
        self.epoch = list(e)


def test_plot_history_object_and_dict(tmp_path):
    fig = plots.plot_history(FakeHistory(), path=tmp_path / "history.png")
    assert len(fig.axes) == 3  # loss, accuracy, learning rate
    check_png(tmp_path / "history.png")
    d = FakeHistory().history
    del d["lr"], d["val_loss"], d["val_accuracy"]
    fig = plots.plot_history(d, path=str(tmp_path / "h2.png"))
    assert len(fig.axes) == 2
    check_png(tmp_path / "h2.png")


def test_plot_history_with_real_history(tmp_path):
    from digitcore import trainer
    h = trainer.History()
    for epoch in range(5):  # (History.epoch holds 0-based indices, as Keras's does)
        h._append(epoch, {"loss": 1 / (epoch + 1), "accuracy": 1 - 0.3 / (epoch + 1),
                          "lr": 0.1})
    fig = plots.plot_history(h, path=tmp_path / "h.png")  # val_* are all NaN: not drawn
    assert len(fig.axes) == 3
    check_png(tmp_path / "h.png")
    # epochs drawn from 1, as training prints them ("Epoch 1/5"), not from 0
    for ax in fig.axes:
        np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3, 4, 5])


def test_plot_history_bad_input():
    with pytest.raises(ValueError, match="no loss or accuracy"):
        plots.plot_history({"lr": [0.1, 0.1]})
    with pytest.raises(ValueError, match="different lengths"):
        plots.plot_history({"loss": [1, 2, 3], "val_loss": [1, 2]})
    with pytest.raises(ValueError, match="History or a dict"):
        plots.plot_history([1, 2, 3])


def test_plot_confusion_matrix_from_cm_and_labels(tmp_path):
    from digitcore.metrics import confusion_matrix

    _, y = _digits(200)
    pred = np.where(np.random.default_rng(2).random(200) < 0.8, y, (y + 1) % 10)
    cm = confusion_matrix(y, pred, labels=range(10))
    fig = plots.plot_confusion_matrix(cm, path=tmp_path / "cm.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 100 and str(cm[3, 3]) in texts
    check_png(tmp_path / "cm.png")
    fig2 = plots.plot_confusion_matrix(y, pred, normalize=True, path=tmp_path / "cm2.png")
    assert [t.get_text() for t in fig2.axes[0].texts] == texts
    check_png(tmp_path / "cm2.png")
    names = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
             "Bag", "Ankle boot"]
    plots.plot_confusion_matrix(cm, labels=names, path=tmp_path / "cm3.png")
    check_png(tmp_path / "cm3.png")


def test_plot_confusion_matrix_bad_input():
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        plots.plot_confusion_matrix(-np.ones((3, 3)))
    with pytest.raises(ValueError, match="labels"):
        plots.plot_confusion_matrix(np.eye(3), labels=["a", "b"])
    with pytest.raises(ValueError, match="lengths"):
        plots.plot_confusion_matrix([0, 1, 2], [0, 1])


def test_plot_mistakes(tmp_path):
    x, y = _digits(60)
    proba = _proba(y)
    fig = plots.plot_mistakes(x, y, proba, k=12, path=tmp_path / "mistakes.png")
    from digitcore.metrics import top_mistakes

    top = top_mistakes(y, proba, k=12)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == len(top)
    m = top[0]
    assert titles[0] == f"true {m.true} / pred {m.predicted}\n{m.confidence:.0%}"
    check_png(tmp_path / "mistakes.png")
    # flat (n, 784) images work too, and no mistakes gives a readable figure
    plots.plot_mistakes(x.reshape(60, -1), y, np.eye(10)[y], k=5, path=tmp_path / "none.png")
    assert open(tmp_path / "none.png", "rb").read(8) == PNG_MAGIC
    with pytest.raises(ValueError):
        plots.plot_mistakes(x[:10], y, proba)


def test_plot_samples(tmp_path):
    x, y = _digits(40)
    fig = plots.plot_samples(x, y, n=16, path=tmp_path / "samples.png")
    assert [ax.get_title() for ax in fig.axes][:3] == [str(v) for v in y[:3]]
    check_png(tmp_path / "samples.png")
    plots.plot_samples(x.astype(np.float32) / 255, n=7, path=tmp_path / "s2.png")
    check_png(tmp_path / "s2.png", min_kb=2)
    with pytest.raises(ValueError, match="square"):
        plots.plot_samples(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="labels"):
        plots.plot_samples(x, y[:5])


def test_class_names_and_ncols_are_checked():
    """A negative label took the last name, 1.7 took 'one', a short class_names list
    raised a bare IndexError, and ncols=-1 / 1.5 failed deep inside matplotlib."""
    x, y = _digits(12)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    fig = plots.plot_samples(x, y, n=4, class_names=names)
    assert [ax.get_title() for ax in fig.axes][:4] == [names[v] for v in y[:4]]
    for labels in (np.r_[-1, y[1:]], np.r_[1.7, y[1:]]):
        with pytest.raises(ValueError, match="class"):
            plots.plot_samples(x, labels, n=4, class_names=names)
    with pytest.raises(ValueError, match="class_names has 1 names"):
        plots.plot_samples(x, y, class_names=["a"])
    with pytest.raises(ValueError, match="class_names has 1 names"):
        plots.plot_mistakes(x, y, _proba(y), class_names=["a"])
    for bad in (-1, 0, 1.5, True):
        with pytest.raises(ValueError, match="ncols must be a positive int"):
            plots.plot_samples(x, ncols=bad)


def test_plot_first_layer_names_a_committee():
    from digitcore import Committee, Network

    with pytest.raises(TypeError, match="committee of 2: pass one of its .members"):
        plots.plot_first_layer(Committee([Network([784, 8, 10], seed=s) for s in (0, 1)]))


def test_plot_first_layer_network_and_array(tmp_path):
    w = np.random.default_rng(0).standard_normal((20, 784)).astype(np.float32)
    fig = plots.plot_first_layer(w, path=tmp_path / "w.png")
    mosaic = fig.axes[0].images[0].get_array()
    assert mosaic.shape == (4 * 30 + 2, 5 * 30 + 2)  # 4 rows x 5 columns of 28 + 2-px gaps
    np.testing.assert_allclose(mosaic[2:30, 2:30], w[0].reshape(28, 28) / np.abs(w[0]).max(),
                               rtol=1e-6)
    check_png(tmp_path / "w.png")
    from digitcore import network
    net = network.Network([784, 100, 10], seed=0)
    fig = plots.plot_first_layer(net, n=36, path=tmp_path / "net.png")
    assert any("36 of 100" in t.get_text() for t in fig.texts)
    check_png(tmp_path / "net.png")
    with pytest.raises(ValueError, match="square"):
        plots.plot_first_layer(np.zeros((4, 10)))


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "samples.png"
    x, y = _digits(10)
    plots.plot_samples(x, y, path=path)
    before = path.read_bytes()

    def boom(*args):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        plots.plot_samples(x[::-1], y[::-1], path=path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["samples.png"]


def test_no_pyplot_and_no_backend_change():
    code = (
        "import sys, numpy as np, matplotlib\n"
        "backend = matplotlib.get_backend() if 'matplotlib.pyplot' in sys.modules else None\n"
        "from digitcore import plots\n"
        "plots.plot_samples(np.zeros((4, 28, 28), np.uint8))\n"
        "plots.plot_history({'loss': [1.0, 0.5]})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    # the child imports digitcore as this process did (the installed package in CI), never
    # a source tree put on its path
    code += "import digitcore; print(digitcore.__file__)\n"
    out = subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                         capture_output=True, text=True).stdout
    import digitcore
    assert out.strip().splitlines()[-1] == digitcore.__file__


def test_missing_matplotlib_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mpl(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(ImportError, match=r"pip install 'digitcore\[plot\]'"):
        plots.plot_samples(np.zeros((2, 28, 28)))


def test_plot_augmented(tmp_path):
    x, _ = _digits(5)
    path = tmp_path / "aug.png"
    fig = plots.plot_augmented(x, "full", n=3, k=4, path=path, seed=1)
    check_png(path)
    assert len(fig.axes) == 3 * 5
    with pytest.raises(ValueError, match="unknown augmentation"):
        plots.plot_augmented(x, "warp")
    with pytest.raises(ValueError, match="k must be a positive int"):
        plots.plot_augmented(x, "affine", k=0)
    # 0-255 pixels as int64 or floats were drawn as white blobs (clamped to 1)
    for wrong in (x.astype(np.int64), x.astype(np.float64)):
        with pytest.raises(ValueError, match="by 1/255"):
            plots.plot_augmented(wrong, "full")


def test_confusion_matrix_class_names_and_labels_of_the_wrong_kind():
    fig = plots.plot_confusion_matrix([0, 1, 1], [0, 1, 0], class_names=["zero", "one"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["zero", "one"]
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "1", "1"]
    with pytest.raises(TypeError, match="labels holds"):  # (was a blank heatmap)
        plots.plot_confusion_matrix([0, 1, 1], [0, 1, 0], labels=["zero", "one"])
    with pytest.raises(ValueError, match="3 class_names for a 2-class"):
        plots.plot_confusion_matrix([0, 1, 1], [0, 1, 0], class_names=["a", "b", "c"])


def test_first_layer_of_images_that_are_not_square():
    w = np.arange(6 * 20, dtype=np.float32).reshape(6, 20)
    with pytest.raises(ValueError, match="image_shape"):
        plots.plot_first_layer(w)
    fig = plots.plot_first_layer(w, image_shape=(4, 5))
    mosaic = fig.axes[0].images[0].get_array()
    gap = 1
    assert mosaic.shape[0] % (4 + gap) == gap and mosaic.shape[1] % (5 + gap) == gap
    with pytest.raises(ValueError, match="does not hold"):
        plots.plot_first_layer(w, image_shape=(5, 5))


def test_mistakes_k_must_be_positive():
    imgs = np.zeros((3, 4, 4))
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive int"):
            plots.plot_mistakes(imgs, [1, 1, 0], proba, k=k)
    assert plots.plot_mistakes(imgs, [1, 1, 0], proba, k=None) is not None


def _text_outside(fig):
    """The texts of `fig` that reach past its edges (1 pixel of slack), as saved."""
    import matplotlib

    fig.canvas.draw()
    renderer, edge = fig.canvas.get_renderer(), fig.bbox
    out = []
    for t in fig.findobj(matplotlib.text.Text):
        if t.get_visible() and t.get_text():
            b = t.get_window_extent(renderer)
            if (b.x0 < edge.x0 - 1 or b.y0 < edge.y0 - 1 or b.x1 > edge.x1 + 1
                    or b.y1 > edge.y1 + 1):
                out.append(t.get_text())
    return out


def test_no_label_or_title_is_cut_off():
    """plot_samples (the tutorial's first plot) drew its first row's labels above the
    figure, so a saved PNG lost them; a narrow plot_mistakes or plot_augmented lost the
    ends of its title."""
    import digitcore

    (x, y), _ = digitcore.load_dataset("mnist-mini")
    x200, y200 = x[:200].reshape(200, -1), y[:200]
    figures = {
        "samples 20": plots.plot_samples(x, y, n=20, ncols=10),
        "samples 1": plots.plot_samples(x, y, n=1),
        "mistakes 1": plots.plot_mistakes(x200, y200, np.eye(10)[(y200 + 1) % 10], k=1),
        "augmented k=2": plots.plot_augmented(x, "full", n=3, k=2),
        "augmented k=1": plots.plot_augmented(x, "full", n=2, k=1),
    }
    for name, fig in figures.items():
        assert _text_outside(fig) == [], name


def test_standardized_images_are_drawn_on_their_own_scale():
    """Standardized digits (values about -0.42 to 2.8) were drawn on a 0-255 scale,
    nearly black; pixels 0-255 and 0-1 keep theirs."""
    import digitcore

    (x, y), _ = digitcore.load_dataset("mnist-mini")
    std = ((x[:4] / 255 - 0.1307) / 0.3081).astype(np.float32)
    for images, want in ((std, (float(std[0].min()), float(std[0].max()))), (x[:4], (0, 255)),
                         (x[:4] / np.float32(255), (0, 1)),
                         (x[:4].astype(np.float32), (0, 255))):
        fig = plots.plot_samples(images, y[:4], n=4)
        norm = fig.axes[0].images[0].norm
        assert (norm.vmin, norm.vmax) == pytest.approx(want)
