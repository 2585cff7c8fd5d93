"""Training with augmentation: reproducible for any thread count, never applied to
validation data, and no change at all to runs that do not ask for it."""

from __future__ import annotations

import numpy as np
import pytest

import digitcore
from digitcore import Augment, Network, Trainer


@pytest.fixture(scope="module")
def mini():
    (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
    return x[:1500], y[:1500], xt[:400], yt[:400]


def fit(x, y, augment, threads=1, seed=3, sizes=(784, 48, 10), **kw):
    before = digitcore.get_num_threads()
    digitcore.set_num_threads(threads)
    try:
        net = Network(list(sizes), dropout=0.2, seed=0)
        tr = Trainer(net, optimizer="adam", epochs=2, batch_size=64, seed=seed, verbose=0,
                     augment=augment, **kw)
        hist = tr.fit(x, y)
        return net, hist
    finally:
        digitcore.set_num_threads(before)


@pytest.mark.parametrize("name", ["affine", "elastic", "full"])
def test_augmented_training_is_reproducible_on_any_thread_count(mini, name):
    x, y, _, _ = mini
    a = fit(x, y, name, threads=1)[0].flat_parameters
    b = fit(x, y, name, threads=2)[0].flat_parameters
    c = fit(x, y, name, threads=3)[0].flat_parameters
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, fit(x, y, name, seed=4)[0].flat_parameters)
    assert not np.array_equal(a, fit(x, y, None)[0].flat_parameters)


def test_float_images_train_too(mini):
    x, y, _, _ = mini
    xf = (x[:600] / 255.0).astype(np.float32)
    a = fit(xf, y[:600], "full")[0].flat_parameters
    np.testing.assert_array_equal(a, fit(xf, y[:600], "full", threads=2)[0].flat_parameters)
    assert np.isfinite(a).all()


def test_identity_augment_gives_the_bits_of_no_augment(mini):
    """An Augment that deforms nothing leaves every batch's pixels as they were, so the
    run is the plain run bit for bit: the augmentation's plumbing takes nothing from the
    run's random streams (shuffling, dropout)."""
    x, y, _, _ = mini
    np.testing.assert_array_equal(fit(x, y, Augment())[0].flat_parameters,
                                  fit(x, y, None)[0].flat_parameters)


def test_faint_cut_reaches_training_batches(mini):
    """With no deformation, Augment(faint=f) leaves a batch's pixels as they are except
    those below f * 255, which become 0: the run is the plain run on images cut that way,
    bit for bit."""
    x, y, _, _ = mini
    cut = np.float32(0.2) * np.float32(255.0)
    x_cut = np.where(x < cut, 0, x).astype(np.uint8)
    assert (x_cut != x).any()
    a = fit(x, y, Augment(faint=0.2))[0].flat_parameters
    np.testing.assert_array_equal(a, fit(x_cut, y, None)[0].flat_parameters)
    assert not np.array_equal(a, fit(x, y, None)[0].flat_parameters)


def test_validation_data_is_not_augmented(mini):
    x, y, xv, yv = mini
    net, hist = fit(x, y, Augment(rotate=40, alpha=38, thickness=0.5),
                    )
    net2 = Network([784, 48, 10], dropout=0.2, seed=0)
    tr = Trainer(net2, optimizer="adam", epochs=2, batch_size=64, seed=3, verbose=0,
                 augment=Augment(rotate=40, alpha=38, thickness=0.5))
    h = tr.fit(x, y, validation_data=(xv, yv))
    np.testing.assert_array_equal(net2.flat_parameters, net.flat_parameters)
    assert h.history["val_accuracy"][-1] == net2.score(xv, yv)


def test_augment_needs_images():
    x = np.zeros((20, 10), np.uint8)
    y = np.arange(20) % 2
    net = Network([10, 4, 2], seed=0)
    with pytest.raises(ValueError, match="not a square"):
        Trainer(net, augment="affine", verbose=0, epochs=1).fit(x, y)
    with pytest.raises(ValueError, match="unknown augmentation"):
        Trainer(net, augment="twist")


def test_model_file_records_the_augmentation(mini, tmp_path):
    x, y, _, _ = mini
    net, _ = fit(x[:300], y[:300], Augment(rotate=12, alpha=30))
    assert net.training_summary["augment"] == Augment(rotate=12, alpha=30).to_dict()
    net.save(tmp_path / "m.safetensors")
    back = digitcore.load_model(tmp_path / "m.safetensors")
    assert back.training_summary["augment"]["rotate"] == 12
    assert back.training_summary["augment"]["alpha"] == 30
    assert fit(x[:300], y[:300], None)[0].training_summary["augment"] is None


def test_standardized_floats_are_refused_with_the_way_that_works():
    # the kernel deforms pictures on a background of 0 and clamps strokes to [0, 1] for
    # floats: standardized inputs (background -0.42) trained silently on pictures with 0
    # where the image moved away and strokes cut at 1
    (x, y), _ = digitcore.load_mnist_mini()
    x = x[:256]
    std = ((x / np.float32(255) - np.float32(0.1307)) / np.float32(0.3081)).astype(np.float32)
    net = digitcore.Network([784, 16, 10], seed=0)
    before = net.flat_parameters.copy()
    tr = digitcore.Trainer(net, epochs=1, augment="affine", verbose=0, seed=0)
    with pytest.raises(ValueError, match=r"augment deforms pictures whose background is 0.*"
                                         r"\[-0\.424, 2\.8[0-9]*\].*input_mean"):
        tr.fit(std, y[:256])
    assert np.array_equal(net.flat_parameters, before)
    # what the message says works: the pixels, standardized by the network
    net = digitcore.Network([784, 16, 10], seed=0, input_mean=0.1307, input_std=0.3081)
    digitcore.Trainer(net, epochs=1, augment="affine", verbose=0, seed=0).fit(x, y[:256])
    # floats in [0, 1] are pictures too, and so are resampled ones overshooting a little
    pictures = (x / np.float32(255)).reshape(-1, 28, 28)
    pictures[:, 0, 0], pictures[:, 0, 1] = -0.02, 1.03
    digitcore.Trainer(digitcore.Network([784, 16, 10], seed=0), epochs=1, augment="affine",
                      verbose=0, seed=0).fit(pictures, y[:256])
