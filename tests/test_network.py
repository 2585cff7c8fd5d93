"""Network: construction, inference, gradients of the fused C training step vs NumPy."""

import numpy as np
import pytest

import digitcore
from digitcore import Network


def _np_forward(net, x):
    """Float64 NumPy forward pass: the oracle for Network inference."""
    h = x.reshape(len(x), int(np.prod(x.shape[1:]))).astype(np.float64)
    if x.dtype == np.uint8:
        h = h / 255.0
    h = (h - net.input_mean) / net.input_std
    acts = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
            "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
            "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z)}
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        h = h @ w.T.astype(np.float64) + b
        if i + 1 < len(net.weights):
            h = acts[net.activation](h)
    h = h - h.max(axis=1, keepdims=True)
    e = np.exp(h)
    return e / e.sum(axis=1, keepdims=True)


def test_repr_and_sizes():
    net = Network([784, 128, 10], seed=0)
    assert net.n_params == 784 * 128 + 128 + 128 * 10 + 10
    assert "784-128-10" in repr(net) and "relu" in repr(net)
    assert [w.shape for w in net.weights] == [(128, 784), (10, 128)]
    assert [b.shape for b in net.biases] == [(128,), (10,)]
    assert len(net.parameters) == 4
    assert np.shares_memory(net.weights[0], net.flat_parameters)


@pytest.mark.parametrize("bad, exc", [
    ([784], ValueError), ([784, 0, 10], ValueError), ([784, 10, 1], ValueError),
    ([784, 2.5, 10], ValueError), (None, TypeError)])
def test_bad_layer_sizes(bad, exc):
    with pytest.raises(exc):
        Network(bad)


def test_bad_options():
    with pytest.raises(ValueError, match="activation"):
        Network([4, 3], activation="softplus")
    with pytest.raises(ValueError, match="init"):
        Network([4, 3], init="zeros")
    with pytest.raises(ValueError, match="dropout"):
        Network([4, 3, 2], dropout=1.0)


def test_init_statistics():
    he = Network([1000, 500, 10], init="he", seed=1)
    assert abs(he.weights[0].std() - np.sqrt(2 / 1000)) < 0.05 * np.sqrt(2 / 1000)
    gl = Network([1000, 500, 10], init="glorot", seed=1)
    limit = np.sqrt(6 / 1500)
    assert gl.weights[0].max() <= limit and gl.weights[0].min() >= -limit
    assert np.all(he.biases[0] == 0)
    assert np.array_equal(Network([20, 5, 3], seed=7).flat_parameters,
                          Network([20, 5, 3], seed=7).flat_parameters)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("n", [0, 1, 7, 1030])
def test_predict_proba_matches_numpy(activation, n, rng):
    net = Network([64, 33, 17, 10], activation=activation, seed=3)
    x = rng.integers(0, 256, size=(n, 64), dtype=np.uint8)
    p = net.predict_proba(x)
    assert p.dtype == np.float32 and p.shape == (n, 10)
    np.testing.assert_allclose(p, _np_forward(net, x), rtol=1e-4, atol=1e-6)
    if n:
        np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
        assert np.array_equal(net.predict(x), p.argmax(axis=1))


def test_inputs_3d_float_and_uint8_agree(rng):
    net = Network([784, 16, 10], seed=0)
    x8 = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    xf = x8.astype(np.float64) / 255
    np.testing.assert_allclose(net.predict_proba(x8), net.predict_proba(xf), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(net.predict_proba(x8), net.predict_proba(x8.reshape(5, 784)),
                               rtol=0, atol=0)


def test_input_standardisation(rng):
    net = Network([10, 4, 3], seed=0, input_mean=0.5, input_std=0.25)
    x = rng.random((6, 10)).astype(np.float32)
    np.testing.assert_allclose(net.predict_proba(x), _np_forward(net, x), rtol=1e-4)


def test_any_input_size_8x8(rng):
    net = Network([64, 10], seed=0)
    assert net.predict(rng.random((3, 8, 8))).shape == (3,)


@pytest.mark.parametrize("x, exc, match", [
    (np.zeros((2, 783), np.uint8), ValueError, "784"),
    (np.zeros((2, 784), np.int32), TypeError, "uint8"),
    (np.zeros((2, 784), complex), TypeError, "dtype"),
    (np.zeros(784, np.uint8), ValueError, "shape"),
    (np.full((2, 784), np.nan, np.float32), ValueError, "NaN"),
    (np.full((2, 784), np.inf), ValueError, "infinite"),
])
def test_bad_inputs(x, exc, match):
    net = Network([784, 8, 10], seed=0)
    with pytest.raises(exc, match=match):
        net.predict_proba(x)


def test_bad_labels():
    net = Network([4, 3], seed=0)
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="outside"):
        net.score(x, [0, 1, 3])
    with pytest.raises(ValueError, match="3 samples"):
        net.score(x, [0, 1])
    with pytest.raises(TypeError, match="integer"):
        net.score(x, ["a", "b", "c"])
    # a uint64 label past 2**63 was reported wrapped, as "min -9223372036854775803"
    big = np.array([0, 1, 2**63 + 5], np.uint64)
    with pytest.raises(ValueError, match=r"outside \[0, 2\] \(min 0, max 9223372036854775813;"):
        net.score(x, big)
    from digitcore._checks import class_indices
    with pytest.raises(ValueError, match="too large for a class index"):
        class_indices(big, 3)


def test_config_round_trip_and_copy():
    net = Network([12, 5, 3], activation="tanh", dropout=0.2, seed=4, input_mean=0.1)
    clone = Network.from_config(net.get_config())
    assert clone.get_config() == net.get_config()
    cp = net.copy()
    assert np.array_equal(cp.flat_parameters, net.flat_parameters)
    cp.weights[0][0, 0] += 1
    assert not np.array_equal(cp.flat_parameters, net.flat_parameters)
    with pytest.raises(ValueError, match="unknown config"):
        Network.from_config({"layer_sizes": [3, 2], "colour": "red"})


def test_set_parameters_validates():
    net = Network([5, 4, 3], seed=0)
    w = [np.ones((4, 5)), np.ones((3, 4))]
    b = [np.zeros(4), np.zeros(3)]
    net.set_parameters(w, b)
    assert np.all(net.weights[1] == 1)
    with pytest.raises(ValueError, match="shape"):
        net.set_parameters([np.ones((5, 4)), np.ones((3, 4))], b)
    with pytest.raises(ValueError, match="NaN"):
        net.set_parameters([np.full((4, 5), np.nan), np.ones((3, 4))], b)
    # complex weights lost their imaginary part without a word; object arrays failed
    # inside np.isfinite
    before = net.flat_parameters.copy()
    with pytest.raises(TypeError, match="weight 1 has dtype complex128"):
        net.set_parameters([w[0], np.ones((3, 4)) + 1j], b)
    with pytest.raises(TypeError, match="bias 0 has dtype object"):
        net.set_parameters(w, [np.zeros(4, object), b[1]])
    np.testing.assert_array_equal(net.flat_parameters, before)
    net.set_parameters([np.ones((4, 5), np.int64), w[1]], [np.zeros(4, np.uint8), b[1]])


# ---- the fused C training step against a NumPy implementation -------------------------------

def _np_sgd_step(net, x, y, lr, l2=0.0):
    """One SGD step in float64 NumPy: the oracle of dc_mlp_train (no dropout)."""
    acts = {"relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(float)),
            "tanh": (np.tanh, lambda a: 1 - a * a),
            "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
            "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z),
                           lambda a: np.where(a > 0, 1.0, 0.01))}
    f, df = acts[net.activation]
    W = [w.astype(np.float64) for w in net.weights]
    B = [b.astype(np.float64) for b in net.biases]
    h = [x.astype(np.float64) / 255.0]
    for i in range(len(W)):
        z = h[-1] @ W[i].T + B[i]
        h.append(f(z) if i + 1 < len(W) else z)
    z = h[-1] - h[-1].max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y]).mean()
    d = p.copy()
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    newW, newB = [], []
    for i in reversed(range(len(W))):
        gW = d.T @ h[i] + l2 * W[i]
        gB = d.sum(axis=0)
        if i > 0:
            d = (d @ W[i]) * df(h[i])
        newW.insert(0, W[i] - lr * gW)
        newB.insert(0, B[i] - lr * gB)
    return loss, newW, newB


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("sizes", [[20, 10], [20, 7, 5], [31, 13, 11, 4]])
def test_one_sgd_step_matches_numpy(activation, sizes, rng):
    net = Network(sizes, activation=activation, seed=5)
    n = 9
    x = rng.integers(0, 256, size=(n, sizes[0]), dtype=np.uint8)
    y = rng.integers(0, sizes[-1], size=n)
    loss, W, B = _np_sgd_step(net, x, y, lr=0.5, l2=0.01)
    trainer = digitcore.Trainer(net, optimizer="sgd", lr=0.5, l2=0.01, batch_size=n, epochs=1,
                                shuffle=False, verbose=0, seed=0)
    hist = trainer.fit(x, y)
    assert hist.loss[0] == pytest.approx(loss, rel=1e-5)
    for i in range(len(W)):
        np.testing.assert_allclose(net.weights[i], W[i], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(net.biases[i], B[i], rtol=1e-4, atol=1e-6)


def test_gradient_of_numpy_oracle_by_central_differences():
    """The NumPy step above is itself right: its update equals -lr * numerical gradient."""
    rng = np.random.default_rng(0)
    net = Network([6, 5, 3], activation="tanh", seed=1)
    x = rng.integers(0, 256, size=(4, 6), dtype=np.uint8)
    y = np.array([0, 2, 1, 2])
    lr = 1.0
    _, W, _ = _np_sgd_step(net, x, y, lr)

    def loss_at(w0):
        h = np.tanh(x / 255.0 @ w0.T + net.biases[0])
        z = h @ net.weights[1].T.astype(np.float64) + net.biases[1]
        z -= z.max(axis=1, keepdims=True)
        return -(z[np.arange(4), y] - np.log(np.exp(z).sum(axis=1))).mean()

    w0 = net.weights[0].astype(np.float64)
    num = np.zeros_like(w0)
    eps = 1e-6
    for idx in np.ndindex(w0.shape):
        wp, wm = w0.copy(), w0.copy()
        wp[idx] += eps
        wm[idx] -= eps
        num[idx] = (loss_at(wp) - loss_at(wm)) / (2 * eps)
    np.testing.assert_allclose((w0 - W[0]) / lr, num, rtol=1e-5, atol=1e-8)


def test_pickle_and_deepcopy_keep_views_and_predictions(rng):
    import copy
    import pickle

    net = Network([16, 8, 4], seed=0)
    x = rng.random((5, 16)).astype(np.float32)
    p = net.predict_proba(x)  # builds the cached C view, which must not break pickling
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert np.array_equal(other.predict_proba(x), p)
        assert np.shares_memory(other.weights[0], other.flat_parameters)
        other.weights[0][...] = 0
        assert not np.array_equal(other.predict_proba(x), p)
    assert np.array_equal(net.predict_proba(x), p)


def test_weights_and_biases_cannot_be_replaced_only_written_into(rng):
    """`net.weights[0] = w` put an array beside the parameters: predictions kept the old
    weights while save wrote the new ones. The lists are tuples now."""
    net = Network([16, 8, 4], seed=0)
    for seq in (net.weights, net.biases):
        with pytest.raises(TypeError):
            seq[0] = np.zeros_like(seq[0])
    x = rng.random((5, 16)).astype(np.float32)
    net.weights[0][...] = 0
    net.biases[0][...] = 1
    assert np.all(net.flat_parameters[:8 * 16] == 0)
    assert np.array_equal(net.predict_proba(x)[0], net.predict_proba(x[::-1])[0])


def test_parameters_start_on_a_cache_line(tmp_path):
    # (network.py's _PARAM_ALIGN: the kernels that read weights in place load whole rows,
    # and a buffer off a 32-byte boundary splits their loads over two cache lines.) Every
    # way of making a network gives the aligned buffer, whatever NumPy's allocator returns
    # between the attempts.
    import copy
    import pickle

    def line_offset(net):
        return net.flat_parameters.ctypes.data % 64

    keep = []  # (held, so the allocator's next blocks fall at other offsets)
    for n_in in range(1, 40):
        net = Network([n_in, 3, 2], seed=0)
        keep.append(np.empty(n_in * 5 + 1, np.float32))
        assert line_offset(net) == 0, n_in
    net = Network([784, 128, 10], seed=0)
    net.save(tmp_path / "m.safetensors")
    for other in (net, net.copy(), copy.deepcopy(net), pickle.loads(pickle.dumps(net)),
                  digitcore.load_model(tmp_path / "m.safetensors")):
        assert line_offset(other) == 0
        assert np.shares_memory(other.weights[0], other.flat_parameters)
        assert other.flat_parameters.size == net.n_params
        assert np.array_equal(other.flat_parameters, net.flat_parameters)


def test_activation_names_have_one_home():
    """network.ACTIVATIONS is the table; the C binding, the model-file, ONNX, estimator and
    CLI tables name exactly those, and each name runs the C function the NumPy reference
    gives that name."""
    from digitcore import _ops, cli, estimator, modelio, onnxio, ops_ref
    from digitcore.network import ACTIVATIONS, LEAKY_SLOPE

    assert set(_ops._ACTIVATIONS) == set(ACTIVATIONS) | {"identity"}
    assert set(modelio._TORCH_ACTIVATIONS) == set(ACTIVATIONS)
    assert set(onnxio._ACTIVATIONS) == set(ACTIVATIONS)
    assert set(estimator._ACTIVATIONS.values()) == set(ACTIVATIONS)
    train = next(a for a in cli._parser()._actions if a.dest == "command").choices["train"]
    assert set(next(a for a in train._actions if a.dest == "activation").choices) == set(
        ACTIVATIONS)
    x = np.linspace(-3, 3, 61, dtype=np.float32).reshape(1, -1)
    for name in ACTIVATIONS:
        # identity weights, zero biases: the logits are the hidden activation of x
        net = Network([61, 61, 61], activation=name, seed=0)
        for w, b in zip(net.weights, net.biases):
            w[...] = np.eye(61, dtype=np.float32)
            b[...] = 0
        want = ops_ref.activation_forward(x, name, LEAKY_SLOPE)
        np.testing.assert_allclose(net.logits(x), want, rtol=1e-6, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(_ops.activation_forward(x, name, LEAKY_SLOPE), want,
                                   rtol=1e-6, atol=1e-7, err_msg=name)
    with pytest.raises(ValueError, match="activation"):
        Network([4, 3, 2], activation="gelu")


def test_predict_is_numpy_argmax_of_logits():
    # predict takes the argmax in the binding: ties go to the first largest logit, as
    # numpy.argmax has it; a NaN logit is an error, not numpy's "largest" (a guess)
    rng = np.random.default_rng(3)
    net = Network([12, 7, 5], seed=1)
    x = rng.random((40, 12), dtype=np.float32)
    for n in (0, 1, 3, 40):
        np.testing.assert_array_equal(net.predict(x[:n]), np.argmax(net.logits(x[:n]), axis=1))
        assert net.predict(x[:n]).dtype == np.int64
    net.weights[-1][...] = 0.0
    net.biases[-1][...] = [0.0, 2.0, 2.0, 1.0, 2.0]
    np.testing.assert_array_equal(net.predict(x[:4]), [1, 1, 1, 1])
    net.biases[-1][3] = np.inf
    np.testing.assert_array_equal(net.predict(x[:4]), [3, 3, 3, 3])
    net.biases[-1][3] = np.nan
    with pytest.raises(FloatingPointError, match="output is NaN"):
        net.predict(x[:4])


@pytest.mark.parametrize("sizes", [[784, 128, 10], [100, 37, 19, 3], [9, 200, 5]])
def test_few_rows_take_dot_products(sizes):
    # calls of at most 16 rows run each layer as dot products (mlp_infer.c), not the
    # blocked GEMM: they agree with the float64 oracle and with the same rows inside a
    # larger call to rounding, and give the same bits on 1 and 2 threads
    rng = np.random.default_rng(len(sizes))
    net = Network(sizes, activation="tanh", seed=2)
    x = rng.integers(0, 256, size=(40, sizes[0]), dtype=np.uint8)
    big = net.predict_proba(x)
    for n in (1, 2, 5, 16, 17):
        p = net.predict_proba(x[:n])
        np.testing.assert_allclose(p, _np_forward(net, x[:n]), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(p, big[:n], rtol=1e-4, atol=1e-6)
        try:
            digitcore.set_num_threads(1)
            one = net.predict_proba(x[:n])
            digitcore.set_num_threads(2)
            two = net.predict_proba(x[:n])
        finally:
            digitcore.set_num_threads(0)
        assert np.array_equal(one, two) and np.array_equal(one, p)


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (0.1307, 0.3081)])
def test_pixels_take_the_binding_path_with_the_same_bits(mean, std):
    # C-contiguous uint8 pixels, (n, 784) or (n, 28, 28), are checked by the binding
    # alone (_Net.infer_pixels); they give prepared_input's conversion to the bit, and
    # anything else (a strided view, floats, a wrong shape) goes the long way, with
    # prepared_input's own messages
    rng = np.random.default_rng(5)
    net = Network([784, 30, 10], seed=4, input_mean=mean, input_std=std)
    c = net.c_net()
    x = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    x2, scale, shift = net.prepared_input(x)
    for rows in (x, x2, x[:1], x2[:1], x[:0]):
        n = rows.shape[0]
        want = c.forward(x2[:n], scale, shift, True)
        assert np.array_equal(c.infer_pixels(rows, mean, std, 1, None), want)
        assert np.array_equal(net.predict_proba(rows), want)
        logits = c.forward(x2[:n], scale, shift, False)
        assert np.array_equal(net.logits(rows), logits)
        assert np.array_equal(net.predict(rows), np.argmax(logits, axis=1))
        assert net.predict(rows).dtype == np.int64
    wide = np.repeat(x2, 2, axis=1)[:, ::2]  # uint8, right shape, not contiguous
    for other in (wide, x2.astype(np.float32), x2[:, :783], x2.ravel(), list(x2[0]),
                  x.reshape(20, 14, 56)[:, :, :28]):
        assert c.infer_pixels(other, mean, std, 1, None) is None
    np.testing.assert_array_equal(net.predict_proba(wide), net.predict_proba(x2))
    with pytest.raises(ValueError, match=r"783 features per sample, .*\(layer_sizes\[0\]\)$"):
        net.predict(x2[:, :783])
    # one image of the network's size was read as 28 samples of 28 pixels
    with pytest.raises(ValueError, match=r"one 28x28 image\? pass a batch of one: x\[None\]"):
        net.predict(x2[0].reshape(28, 28))
    assert net.predict(x2[0].reshape(28, 28)[None]) == net.predict(x2[:1])
    # the other usual ways to give one picture get a hint too (a learner's review)
    with pytest.raises(ValueError, match=r"one image as a flat vector\? .*x\[None\]"):
        net.predict(x2[0])
    rgb = np.repeat(x2[0].reshape(28, 28, 1), 3, axis=2)
    with pytest.raises(ValueError, match=r"84 features .*colour picture \(28x28, 3 channels\)"
                                         r"\? predict_image"):
        net.predict(rgb)
    with pytest.raises(ValueError, match=r"one 200x200 picture\? predict_image"):
        net.predict(np.zeros((200, 200), np.uint8))
    with pytest.raises(ValueError, match=r"783 features per sample, .*\(layer_sizes\[0\]\)$"):
        net.predict(np.zeros((5, 783), np.uint8))  # (no hint where none applies)
    with pytest.raises(ValueError, match=r"got \(1, 28, 28\); a batch of one image\? pass "
                                         r"image\[0\]"):
        net.predict_image(x2[:1].reshape(1, 28, 28))


def test_predict_image_refuses_a_network_of_other_inputs_before_reading():
    from digitcore import Committee

    img = np.zeros((28, 28), np.uint8)
    img[8:20, 12:16] = 255
    for model in (Network([16, 4], seed=0), Committee([Network([16, 4], seed=s) for s in (0, 1)])):
        with pytest.raises(ValueError, match="28x28 = 784 pixels, and this model takes 16 inputs"):
            model.predict_image(img)
        with pytest.raises(ValueError, match="takes 16 inputs"):
            model.predict_image("no/such/picture.png")  # (the model's error comes first)


def _trained_on(x, y):
    net = Network([x.shape[1], 16, 10], seed=0)
    digitcore.Trainer(net, epochs=1, batch_size=32, verbose=0).fit(x, y)
    return net


def test_floats_that_can_only_be_0_255_pixels_are_refused(tmp_path):
    """A network trained on uint8 pixels reads floats as pixels scaled to [0, 1]: the same
    image as floats 0-255 (np.asarray(picture, dtype=float)) would read 255 times too
    bright and answer with confident nonsense. It is refused, naming the fix, by every
    answer and after a save and load; floats in [0, 1] read as the uint8 pixels do."""
    rng = np.random.default_rng(0)
    x = (rng.random((200, 64)) * 255).astype(np.uint8)
    y = rng.integers(0, 10, 200)
    net = _trained_on(x, y)
    assert net.training_summary["input"] == "uint8"
    assert np.array_equal(net.predict(x.astype(np.float32) / 255), net.predict(x))
    path = tmp_path / "m.safetensors"
    net.save(path)
    for model in (net, digitcore.load_model(path)):
        for answer in (model.predict, model.predict_proba, model.logits,
                       lambda v, m=model: m.evaluate(v, y)):
            with pytest.raises(ValueError, match=r"floats up to 25[0-9].*divided by 255"):
                answer(x.astype(np.float64))
    # a committee read from a file holds the record, its members do not
    members = [net, _trained_on(x, y)]
    digitcore.Committee(members).save(tmp_path / "c.safetensors",
                                      metadata={"members": [m.training_summary
                                                            for m in members]})
    committee = digitcore.load_model(tmp_path / "c.safetensors")
    # (each member gets its record from the file's, and refuses such floats alone too)
    assert all(m.training_summary == {"input": "uint8"} for m in committee.members)
    for answer in (committee.predict, committee.predict_proba, committee.logits,
                   committee.members[0].predict, digitcore.Committee(committee.members).predict):
        with pytest.raises(ValueError, match="floats up to 25[0-9]"):
            answer(x.astype(np.float32))
    assert np.array_equal(committee.predict(x.astype(np.float32) / 255), committee.predict(x))


def test_more_training_on_scaled_pixels_keeps_the_record():
    """A network trained on uint8 pixels, then more on floats in [0, 1] (the same pixels
    scaled) still reads floats as pixels: it keeps refusing 0-255 floats, for answers
    and for validation data. More training on floats outside [0, 2] (standardized
    features) is a reading of its own: the record becomes float32."""
    rng = np.random.default_rng(3)
    x = (rng.random((200, 64)) * 255).astype(np.uint8)
    y = rng.integers(0, 10, 200)
    net = _trained_on(x, y)
    trainer = digitcore.Trainer(net, epochs=1, batch_size=32, verbose=0)
    trainer.fit(x / 255.0, y)
    assert net.training_summary["input"] == "uint8"
    with pytest.raises(ValueError, match="trained on uint8 pixels"):
        net.predict(x.astype(np.float32))
    with pytest.raises(ValueError, match="x_val holds floats up to 25[0-9]"):
        trainer.fit(x / 255.0, y, validation_data=(x.astype(np.float32), y))
    trainer.fit((x - 128.0) / 40.0, y)
    assert net.training_summary["input"] == "float32"
    assert net.predict(x.astype(np.float32)).shape == (200,)
    # a network trained on floats first stays float32 with floats in [0, 1] too
    fresh = _trained_on(x / 255.0, y)
    assert fresh.training_summary["input"] == "float32"


def test_a_committee_with_any_member_trained_on_pixels_refuses_0_255_floats(tmp_path):
    """One member trained on uint8 misreads 0-255 floats, and so the committee's mean:
    in memory and from its file (which has no per-member records)."""
    rng = np.random.default_rng(4)
    x = (rng.random((200, 64)) * 255).astype(np.uint8)
    y = rng.integers(0, 10, 200)
    on_floats = _trained_on(x / 255.0, y)
    assert on_floats.training_summary["input"] == "float32"
    for members in ([_trained_on(x, y), on_floats], [on_floats, _trained_on(x, y)]):
        committee = digitcore.Committee(members)
        committee.save(tmp_path / "c.safetensors")
        for model in (committee, digitcore.load_model(tmp_path / "c.safetensors")):
            with pytest.raises(ValueError, match="trained on uint8 pixels"):
                model.predict(x.astype(np.float32))
            assert model.predict(x / 255.0).shape == (200,)
    # a committee with a summary of its own (set, or given to save) kept the members'
    # record only in memory: loaded, it took the 0-255 floats as [0, 1] (wrong answers)
    committee = digitcore.Committee([_trained_on(x, y), on_floats])
    committee.training_summary = {"note": "mine"}
    committee.save(tmp_path / "s.safetensors")
    committee.save(tmp_path / "m.safetensors", metadata={"note": "given"})
    for name, note in (("s", "mine"), ("m", "given")):
        loaded = digitcore.load_model(tmp_path / f"{name}.safetensors")
        assert loaded.training_summary["note"] == note
        with pytest.raises(ValueError, match="trained on uint8 pixels"):
            loaded.predict(x.astype(np.float32))
    # a summary with per-member entries that say nothing of the input (as train --members
    # writes its members' recipes): each member's entry gets what that member read
    committee.save(tmp_path / "p.safetensors", metadata={"members": [{"epochs": 1}] * 2})
    loaded = digitcore.load_model(tmp_path / "p.safetensors")
    assert [m["input"] for m in loaded.training_summary["members"]] == ["uint8", "float32"]
    for answer in (loaded.predict, loaded.members[0].predict):
        with pytest.raises(ValueError, match="trained on uint8 pixels"):
            answer(x.astype(np.float32))
    assert loaded.members[1].predict(x.astype(np.float32)).shape == (200,)
    # no summary at all: the entries are written from the members' own records
    digitcore.Committee([_trained_on(x, y), on_floats]).save(tmp_path / "n.safetensors")
    loaded = digitcore.load_model(tmp_path / "n.safetensors")
    with pytest.raises(ValueError, match="trained on uint8 pixels"):
        loaded.members[0].predict(x.astype(np.float32))
    assert loaded.members[1].predict(x.astype(np.float32)).shape == (200,)
    # a stale entry saying float32 for a member trained on pixels does not clear it
    stale = {"members": [{"input": "float32"}, {"input": "float32"}]}
    digitcore.Committee([_trained_on(x, y), on_floats]).save(tmp_path / "t.safetensors",
                                                              metadata=stale)
    loaded = digitcore.load_model(tmp_path / "t.safetensors")
    assert [m["input"] for m in loaded.training_summary["members"]] == ["uint8", "float32"]
    # a file whose entries never said (written before): each member takes the file's
    from digitcore._modelfile import write_committee

    write_committee(tmp_path / "o.safetensors",
                    [(m.get_config(), m.weights, m.biases) for m in committee.members],
                    {"members": [{"epochs": 1}] * 2, "input": "uint8"})
    old = digitcore.load_model(tmp_path / "o.safetensors")
    for answer in (old.predict, old.members[0].predict, old.members[1].predict):
        with pytest.raises(ValueError, match="trained on uint8 pixels"):
            answer(x.astype(np.float32))
    both = digitcore.Committee([on_floats, _trained_on(x / 255.0, y)])
    both.save(tmp_path / "f.safetensors")
    assert digitcore.load_model(tmp_path / "f.safetensors").predict(
        x.astype(np.float32)).shape == (200,)


def test_floats_are_taken_as_they_are_by_a_network_trained_on_floats():
    """Standardized or other float features have any range: no check applies."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 40, (200, 8)).astype(np.float32)
    net = _trained_on(x, rng.integers(0, 10, 200))
    assert net.training_summary["input"] == "float32"
    assert net.predict(x * 10).shape == (200,)
    assert Network([8, 4, 10], seed=0).predict(x * 10).shape == (200,)  # (never trained)


def test_the_bundled_model_refuses_0_255_floats():
    pytest.importorskip("digitcore._ops", reason="compiled digitcore._ops not built")
    from digitcore.datasets import load_mnist_mini

    _, (xt, _) = load_mnist_mini()
    model = digitcore.load_pretrained()
    for answer in (model.predict, *(m.predict for m in getattr(model, "members", []))):
        with pytest.raises(ValueError, match="trained on uint8 pixels"):
            answer(xt[:4].astype(np.float32))
    assert np.array_equal(model.predict(xt[:4] / 255.0), model.predict(xt[:4]))


def test_the_record_survives_a_save_with_other_metadata(tmp_path):
    """A committee built in memory (no summary of its own) keeps 'trained on uint8' in
    its file, and so does a network saved with its summary plus the caller's metadata
    (through save_model too); a committee's check leaves non-finite input to the
    members' own message."""
    rng = np.random.default_rng(2)
    x = (rng.random((200, 64)) * 255).astype(np.uint8)
    y = rng.integers(0, 10, 200)
    a, b = _trained_on(x, y), _trained_on(x, y)
    digitcore.save_model(a, tmp_path / "a.safetensors",
                         metadata={**a.training_summary, "note": "mine"})
    back = digitcore.load_model(tmp_path / "a.safetensors")
    assert back.training_summary["note"] == "mine"
    digitcore.Committee([a, b]).save(tmp_path / "c.safetensors")
    for path in ("a.safetensors", "c.safetensors"):
        with pytest.raises(ValueError, match="trained on uint8 pixels"):
            digitcore.load_model(tmp_path / path).predict(x.astype(np.float32))
    bad = x.astype(np.float32) / 255
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        digitcore.load_model(tmp_path / "c.safetensors").predict(bad)


def test_values_past_float32_are_refused_by_name():
    """float64 weights past float32's range became inf in set_parameters (the network
    then answered, and training reported a made-up divergence); input so big was called
    NaN or infinite."""
    net = Network([4, 3], seed=0)
    w = [a.astype(np.float64) for a in net.weights]
    w[0][0, 0] = 1e39
    with pytest.raises(ValueError, match="layer 0's weights or biases holds values past"):
        net.set_parameters(w, net.biases)
    assert np.isfinite(net.flat_parameters).all()
    x = np.zeros((2, 4))
    x[0, 0] = 1e39
    with pytest.raises(ValueError, match="x holds values past float32's range"):
        net.predict(x)
    x[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.predict(x)


def test_a_pickled_subclass_comes_back_as_itself():
    import pickle

    class Mine(Network):
        pass

    globals()["Mine"] = Mine  # (pickle finds a class by its module and name)
    Mine.__qualname__ = "Mine"
    net = Mine([4, 3], seed=0)
    back = pickle.loads(pickle.dumps(net))
    assert type(back) is Mine and np.array_equal(back.flat_parameters, net.flat_parameters)
    assert type(pickle.loads(pickle.dumps(Network([4, 3])))) is Network

    # one whose constructor takes other arguments, or one pickle cannot find by name,
    # comes back as a Network (as before pickles named the class), never unloadable
    class Fixed(Network):
        def __init__(self):
            super().__init__([4, 3], seed=1)

    globals()["Fixed"] = Fixed
    Fixed.__qualname__ = "Fixed"

    class Local(Network):
        pass

    for net in (Fixed(), Local([4, 3], seed=2)):
        back = pickle.loads(pickle.dumps(net))
        assert type(back) is Network
        assert np.array_equal(back.flat_parameters, net.flat_parameters)


def test_settings_changed_after_use_take_effect_or_are_refused():
    """The C view was cached with the activation it was built with: after predict, a new
    activation changed get_config and save, not the answers. A NaN input_std set after
    construction answered class 0 for every input."""
    rng = np.random.default_rng(5)
    x = rng.random((20, 6)).astype(np.float32)
    net = Network([6, 8, 3], seed=0)
    before = net.logits(x)
    net.activation = "tanh"
    fresh = Network([6, 8, 3], activation="tanh", seed=0)
    assert np.array_equal(net.logits(x), fresh.logits(x))
    assert not np.array_equal(net.logits(x), before)
    with pytest.raises(ValueError, match="activation must be one of"):
        net.activation = "swish"
    for name in ("input_std", "input_mean"):
        with pytest.raises(ValueError, match="input_std must be positive"):
            setattr(net, name, float("nan"))
    assert (net.input_mean, net.input_std) == (0.0, 1.0)
    net.input_mean, net.input_std = 0.5, 2.0
    twin = Network([6, 8, 3], activation="tanh", seed=0, input_mean=0.5, input_std=2.0)
    assert np.array_equal(net.logits(x), twin.logits(x))


def test_a_misaligned_input_is_read_as_its_aligned_copy():
    # a float32 view at an odd address (numpy.frombuffer with an offset): the kernels may
    # assume float alignment, so the Network hands them an aligned copy (ops refuses one)
    rng = np.random.default_rng(5)
    x = rng.random((40, 64)).astype(np.float32)
    buf = bytearray(x.nbytes + 1)
    odd = np.frombuffer(buf, np.float32, count=x.size, offset=1).reshape(x.shape)
    odd[...] = x
    assert not odd.flags.aligned
    y = rng.integers(0, 10, 40)
    odd_y = np.frombuffer(bytearray(y.nbytes + 1), np.int64, count=40, offset=1)
    odd_y[...] = y
    assert not odd_y.flags.aligned
    net = Network([64, 16, 10], seed=0)
    np.testing.assert_array_equal(net.predict_proba(odd), net.predict_proba(x))
    assert net.evaluate(odd, odd_y) == net.evaluate(x, y)
    twin = Network([64, 16, 10], seed=0)
    for n, data, labels in ((net, odd, odd_y), (twin, x, y)):
        digitcore.Trainer(n, epochs=1, batch_size=8, verbose=0, seed=0).fit(data, labels)
    np.testing.assert_array_equal(net.flat_parameters, twin.flat_parameters)


def test_uint8_images_a_dark_background_model_would_misread_are_refused():
    """A network trained on MNIST-like uint8 digits read white-background images (255 -
    x) as "0" at 85% and 0/1 uint8 images as "1" at 83%, silently. A fit records the
    training images' background; a model of dark-background digits refuses such batches
    (judged by their first image) in every reading path, and one trained on light
    backgrounds reads them."""
    from digitcore import Committee, Trainer

    (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
    net = Network([784, 16, 10], seed=0)
    Trainer(net, epochs=1, verbose=0, seed=0).fit(x, y)
    assert net.training_summary["background"] == "dark"
    light, binary = 255 - xt[:20], (xt[:20] > 127).astype(np.uint8)
    strided = np.repeat(light.reshape(20, -1), 2, axis=1)[:, ::2]  # (not contiguous)
    calls = [lambda a: net.predict(a), lambda a: net.predict_proba(a), lambda a: net.logits(a),
             lambda a: net.evaluate(a, yt[:20]), lambda a: net.score(a, yt[:20]),
             lambda a: net.predict_proba(a, tta="shift")]
    for call in calls:
        for bad, what in ((light, "light background"), (binary, "only 0 and 1"),
                          (strided, "light background"), (light.reshape(20, -1), "light")):
            with pytest.raises(ValueError, match=what):
                call(bad)
        call(xt[:20])  # the usual digits: read
    committee = Committee([net, net.copy()])
    committee.training_summary = {"input": "uint8", "background": "dark"}
    with pytest.raises(ValueError, match="light background"):
        committee.predict_proba(light)
    # a blank image is not 0/1 data; a model trained on light backgrounds reads them
    net.predict(np.zeros((1, 28, 28), np.uint8))
    inverted = Network([784, 16, 10], seed=0)
    Trainer(inverted, epochs=1, verbose=0, seed=0).fit(255 - x, y)
    assert inverted.training_summary["background"] == "light"
    assert inverted.predict(light).shape == (20,)  # (read, not refused)
    # floats are not images it can judge: no record
    floats = Network([784, 16, 10], seed=0)
    Trainer(floats, epochs=1, verbose=0, seed=0).fit(x.reshape(len(x), -1) / np.float32(255), y)
    assert "background" not in floats.training_summary


def test_predict_image_reads_pictures_for_a_model_trained_on_0_255_floats(tmp_path):
    """Such a model refuses uint8 (it would read it 255 times darker), and predict_image,
    `digitcore predict` and serve gave it the prepared picture as uint8: every picture was
    refused with an error about an `x` the user never passed. They give it the picture's
    pixels as the floats it was trained on."""
    from digitcore import Committee, Trainer
    from digitcore.imaging import preprocess_image
    from digitcore.png import encode_png
    from digitcore.serve.app import predict_json

    (x, y), (xt, yt) = digitcore.load_dataset("mnist-mini")
    net = Network([784, 32, 10], seed=0)
    with pytest.warns(UserWarning, match="floats up to 255"):
        Trainer(net, epochs=2, lr=1e-3, optimizer="adam", verbose=0, seed=0).fit(
            x[:2000].astype(np.float32), y[:2000])
    with pytest.raises(ValueError, match="trained on floats up to 255"):
        net.predict(xt[:1])  # (uint8 itself stays refused)
    right = 0
    for k in range(20):
        want = net.predict_proba(preprocess_image(xt[k]).reshape(1, -1).astype(np.float32))[0]
        digit, proba = net.predict_image(xt[k])
        np.testing.assert_array_equal(proba, want)
        assert predict_json(net, xt[k])["digit"] == digit
        right += digit == yt[k]
    assert right >= 15  # (it reads them: trained on 2,000 images)
    committee = Committee([net, net.copy()])
    assert committee.predict_image(xt[0])[0] == net.predict_image(xt[0])[0]
    model, picture = tmp_path / "floats.safetensors", tmp_path / "d.png"
    net.save(model)
    picture.write_bytes(encode_png(xt[0]))
    from digitcore.cli import main

    assert main(["predict", str(model), str(picture)]) == 0
