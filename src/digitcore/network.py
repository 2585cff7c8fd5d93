"""A fully connected network of Dense layers with a softmax output.

Every parameter lives in one flat float32 array (``network.flat_parameters``): for
layer ``l`` its weight ``(out, in)``, shaped like PyTorch's ``nn.Linear.weight``, then its
bias ``(out,)``. ``weights[l]`` and ``biases[l]`` are views into it (in tuples: write into
them, ``net.weights[0][...] = w``, or use ``set_parameters``), so the C kernels update one
buffer and an optimizer sees one vector.
"""

from __future__ import annotations

import math
import numbers
import sys

import numpy as np

from digitcore._checks import (FLOAT32_RANGE, all_finite, class_indices, samples_2d,
                               seed_value, standardization_problem)
from digitcore._config import _ops
from digitcore._modelfile import write_model
from digitcore.augment import check_tta, tta_answers, tta_mean_proba

__all__ = ["Network", "ACTIVATIONS", "INITS"]


def _rebuild(config, flat, training_summary, cls=None):
    """A Network from its config, flat parameters (copied) and training summary: the one
    way to rebuild a network (copies, pickles, the estimator's pickles). ``cls``: a
    subclass, rebuilt as itself when its constructor takes a Network's arguments (else a
    Network, as pickles were before they named the class)."""
    try:
        net = (cls or Network).from_config(config)
    except TypeError:
        if cls is None:
            raise
        net = Network.from_config(config)
    net._flat[...] = flat
    net.training_summary = training_summary
    return net

# The flat parameters start on a cache line (64 bytes). The kernels that read weights in
# place (one image's dot products, the narrow 10-class layers) load 8 floats at a time
# along a row, and a buffer 16 bytes off a 32-byte boundary splits every other load over
# two cache lines: predict_proba of one image through 784-128-10 took 5.2-5.8 us with the
# buffer at 16 or 48 bytes past a line, 4.3-4.5 us at 0 or 32 (one process, AVX2 EPYC).
# Where NumPy's allocation fell was chance: the same network ran at either speed.
_PARAM_ALIGN = 64


def _aligned_zeros(n):
    """n float32 zeros starting on a _PARAM_ALIGN-byte boundary (a view into a slightly
    larger array)."""
    pad = _PARAM_ALIGN // 4
    buf = np.zeros(n + pad, dtype=np.float32)
    start = (-buf.ctypes.data % _PARAM_ALIGN) // 4  # (NumPy aligns to at least 16 bytes)
    return buf[start:start + n]


ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "identity")
INITS = ("he", "glorot")
LEAKY_SLOPE = 0.01


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def log_softmax(z):
    """log-softmax of float32 logits, in float64 (n, n_classes): finite where a float32
    softmax underflows to 0 (evaluation with views and committees take their logs here)."""
    z = z.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# Floats above this, given to a network trained on uint8 pixels (which reads floats as
# pixels scaled to [0, 1]), are 0-255 pixels in a float array: refused, not misread.
PIXEL_FLOAT_MAX = 2.0


def trained_on_pixels(summary) -> bool:
    """Whether a model's ``training_summary`` says it was trained on uint8 pixels (for a
    committee's, its own record or any member's: that member misreads 0-255 floats, and
    so the committee)."""
    if not isinstance(summary, dict):
        return False
    if summary.get("input") == "uint8":
        return True
    members = summary.get("members")
    if isinstance(members, list) and members:
        return any(trained_on_pixels(m) for m in members)
    return summary.get("input") == "uint8"


def input_record(x2, previous) -> str:
    """What a fit on ``x2`` (uint8, or floats: dense or scipy sparse) leaves in the record
    of a network whose ``training_summary`` was ``previous``: "uint8" for uint8 pixels,
    and for floats in [0, PIXEL_FLOAT_MAX] when it was trained on pixels before (more
    training on pixels scaled to [0, 1] keeps the reading); "float32" otherwise."""
    if x2.dtype == np.uint8:
        return "uint8"
    if not trained_on_pixels(previous) or x2.shape[0] == 0:
        return "float32"
    return "uint8" if float(x2.max()) <= PIXEL_FLOAT_MAX else "float32"


def refuse_pixel_floats(x2, name="x") -> None:
    """ValueError when float input ``x2`` (an array of finite values) holds values above
    PIXEL_FLOAT_MAX, for a model that reads floats as pixels scaled to [0, 1]: 0-255
    pixels as floats, which it would read as 255 times too bright and answer with
    confident nonsense."""
    if x2.dtype.kind != "f" or x2.size == 0:
        return
    top = float(x2.max())
    if top > PIXEL_FLOAT_MAX:
        raise ValueError(
            f"{name} holds floats up to {top:g}, but this model was trained on uint8 pixels "
            "and reads floats as pixels scaled to [0, 1]: pass the uint8 image, or floats "
            "in [0, 1] (0-255 pixels divided by 255)")


def pixel_background(x2) -> str | None:
    """"dark" or "light": the background of uint8 images ``x2`` (n, F), F a square, from
    the outer ring of pixels of its first 256 images (on average under 32: dark, as
    MNIST's 0, when their strokes reach 128 or more, 0-255 pictures and not 0/1 data;
    over 223: light); None for anything else, data that is not clearly either (noise,
    features that are not pictures) included. A fit records it
    (``training_summary["background"]``)."""
    if x2.dtype != np.uint8 or x2.ndim != 2 or x2.shape[0] == 0:
        return None
    side = math.isqrt(x2.shape[1])
    if side < 4 or side * side != x2.shape[1]:
        return None
    imgs = x2[:256].reshape(-1, side, side)
    ring = np.concatenate([imgs[:, 0], imgs[:, -1], imgs[:, 1:-1, 0], imgs[:, 1:-1, -1]],
                          axis=1)
    mean = float(ring.mean())
    if mean > 223:
        return "light"
    return "dark" if mean < 32 and int(imgs.max()) >= 128 else None


_IMAGE_HINTS = {
    1: "holds uint8 images whose pixels are only 0 and 1, but this model reads uint8 "
       "pixels as 0-255 (it would see them nearly black): multiply them by 255",
    2: "holds uint8 images on a light background (the first one's border averages 128 or "
       "more), but this model was trained on light strokes on a dark background, as "
       "MNIST's: invert them (255 - x), or read pictures with predict_image, which finds "
       "the background itself",
}


_first_image_hint = None


def check_pixel_images(x, summary, name="x") -> None:
    """For a model whose ``training_summary`` says it was trained on uint8 images on a
    dark background: a ValueError when the first image of uint8 ``x`` shows the batch
    is 0/1 images, or images on a light background (_ops.first_image_hint), which it
    would answer with confident nonsense; for one trained on floats as large as pixels
    (``"float_max"`` over 2), uint8 ``x``, which it would read 255 times darker. Nothing
    for other models or input."""
    global _first_image_hint
    if type(summary) is not dict:
        return
    if summary.get("float_max") and isinstance(x, np.ndarray) and x.dtype == np.uint8:
        raise image_refusal(-1, summary, name)
    if summary.get("background") == "dark":
        if _first_image_hint is None:  # (_ops() takes microseconds a call)
            _first_image_hint = _ops().first_image_hint
        code = _first_image_hint(x)
        if code:
            raise image_refusal(code, summary, name)


def _shown(value) -> str:
    """A recorded number as the messages show it (a hand-edited file may hold anything)."""
    return f"{value:g}" if isinstance(value, (int, float)) else repr(value)


def picture_row(model, img28) -> np.ndarray:
    """A prepared picture (preprocess_image's uint8 28x28) as the one-row batch ``model``
    (a Network or a Committee) reads: uint8 pixels, or float32 0-255 ones for a model
    trained on floats as large as pixels (``"float_max"``), which refuses uint8 (and
    would read it 255 times darker)."""
    row = img28.reshape(1, -1)
    nets = getattr(model, "members", None) or (model,)
    summaries = [getattr(net, "training_summary", None) for net in nets]
    if any(type(s) is dict and isinstance(s.get("float_max"), (int, float))
           and s["float_max"] > PIXEL_FLOAT_MAX for s in summaries):
        return row.astype(np.float32)
    return row


def image_refusal(code, summary, name="x") -> ValueError:
    """The error for a uint8 batch a model would misread: ``code`` 1 or 2 as
    ``_ops.first_image_hint`` gives them, -1 for a model trained on large floats
    (``summary["float_max"]``); what _Net.infer_pixels's int answers mean."""
    if code == -1:
        return ValueError(f"{name} is uint8, which this network reads as pixels scaled by "
                          f"1/255, but it was trained on floats up to "
                          f"{_shown(summary.get('float_max'))}: give {name} as those floats "
                          f"({name}.astype(np.float32)), as it was trained")
    return ValueError(f"{name} {_IMAGE_HINTS[code]}")


def check_pixel_floats(x2, summary, name="x") -> None:
    """refuse_pixel_floats, for a model whose ``training_summary`` says it was trained on
    uint8 pixels (trained_on_pixels)."""
    if trained_on_pixels(summary):
        refuse_pixel_floats(x2, name)


class Network:
    """Fully connected classifier: Dense layers, hidden activation, softmax output.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_features, hidden..., n_classes]``, e.g. ``[784, 256, 128, 10]``.
    activation : {"relu", "leaky_relu", "sigmoid", "tanh", "identity"}
        Activation of the hidden layers ("identity": none, a linear bottleneck).
    init : {"he", "glorot"}
        He (normal, std sqrt(2/fan_in)) or Glorot (uniform, limit sqrt(6/(fan_in+fan_out))).
    dropout : float in [0, 1)
        Probability of dropping each hidden activation during training.
    seed : int or None
        Seed of the weight initialisation.
    input_mean, input_std : float
        Inputs are scaled to [0, 1] (uint8 / 255; floats are taken as already scaled),
        then standardised as ``(x - input_mean) / input_std``. Once trained on uint8
        pixels, the network refuses floats above PIXEL_FLOAT_MAX (0-255 pixels as floats)
        in its answers and as validation data; training it on such floats (standardized
        features, say) is a reading of its own, and it then takes floats instead.

    Examples
    --------
    >>> net = Network([784, 128, 10], seed=0)
    >>> net.n_params
    101770
    """

    leaky_slope = LEAKY_SLOPE  # leaky_relu's negative slope (fixed; exporters read it)

    def __init__(self, layer_sizes, activation="relu", init="he", dropout=0.0, seed=None, *,
                 input_mean=0.0, input_std=1.0):
        try:
            sizes = tuple(layer_sizes)
        except TypeError:
            raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}") from None
        if len(sizes) < 2:
            raise ValueError(f"layer_sizes needs at least an input and an output size, got {sizes}")
        sizes = tuple(_positive_int(s, f"layer_sizes[{i}]") for i, s in enumerate(sizes))
        if sizes[-1] < 2:
            raise ValueError(f"the output layer needs at least 2 classes, got {sizes[-1]}")
        self.activation = activation  # (checked by the setter)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self._set_standardization(input_mean, input_std)
        self.layer_sizes = sizes
        self.init = init
        self.dropout = dropout
        self.training_summary = None
        n = sum(o * i + o for i, o in zip(sizes[:-1], sizes[1:]))
        self._flat = _aligned_zeros(n)
        weights, biases = [], []
        off = 0
        for i, o in zip(sizes[:-1], sizes[1:]):
            weights.append(self._flat[off:off + o * i].reshape(o, i))
            off += o * i
            biases.append(self._flat[off:off + o])
            off += o
        # tuples: `net.weights[0] = w` would put an array beside the parameters, used by
        # neither the kernels nor save; `net.weights[0][...] = w` writes into them
        self.weights, self.biases = tuple(weights), tuple(biases)
        self._c_net_cache = None
        self.reset_parameters(seed)

    # ---- settings that may change after construction ---------------------------------

    @property
    def activation(self):
        """The hidden layers' activation; set it to change it (checked, and the cached
        C view rebuilt: the kernels would keep the old one)."""
        return self._activation

    @activation.setter
    def activation(self, value):
        if value not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {value!r}")
        self._activation = value
        self._c_net_cache = None

    @property
    def input_mean(self):
        """``(x - input_mean) / input_std`` standardises the input (checked when set)."""
        return self._input_mean

    @input_mean.setter
    def input_mean(self, value):
        self._set_standardization(value, self._input_std)

    @property
    def input_std(self):
        """See :attr:`input_mean`."""
        return self._input_std

    @input_std.setter
    def input_std(self, value):
        self._set_standardization(self._input_mean, value)

    def _set_standardization(self, mean, std):
        problem = standardization_problem(mean, std)
        if problem:  # (a NaN std answered every input with class 0)
            raise ValueError(problem)
        self._input_mean, self._input_std = float(mean), float(std)

    # ---- parameters --------------------------------------------------------------------

    def reset_parameters(self, seed=None):
        """Draw fresh weights (He or Glorot) from ``seed``; biases become zero."""
        rng = np.random.default_rng(seed_value(seed, generators=True))
        for w, b in zip(self.weights, self.biases):
            fan_out, fan_in = w.shape
            if self.init == "he":
                w[...] = rng.standard_normal(w.shape, dtype=np.float32) * np.float32(
                    np.sqrt(2.0 / fan_in))
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                w[...] = rng.uniform(-limit, limit, size=w.shape).astype(np.float32)
            b[...] = 0.0

    @property
    def flat_parameters(self):
        """All parameters as one float32 vector (a view: writing to it changes the network)."""
        return self._flat

    @property
    def parameters(self):
        """``[weight0, bias0, weight1, bias1, ...]`` as views (write to update in place)."""
        return [p for pair in zip(self.weights, self.biases) for p in pair]

    @property
    def n_params(self):
        """Number of trainable parameters."""
        return int(self._flat.size)

    @property
    def n_features(self):
        return self.layer_sizes[0]

    @property
    def n_classes(self):
        return self.layer_sizes[-1]

    def state_dict(self):
        """Parameters named like a PyTorch ``nn.Sequential`` of Linear and activation modules."""
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"{2 * i}.weight"] = w
            out[f"{2 * i}.bias"] = b
        return out

    def set_parameters(self, weights, biases):
        """Copy ``weights`` (each ``(out, in)``) and ``biases`` (each ``(out,)``) in."""
        weights, biases = list(weights), list(biases)
        if len(weights) != len(self.weights) or len(biases) != len(self.biases):
            raise ValueError(f"expected {len(self.weights)} weights and biases, got "
                             f"{len(weights)} and {len(biases)}")
        for i, (w, b) in enumerate(zip(weights, biases)):
            w, b = np.asarray(w), np.asarray(b)
            if w.shape != self.weights[i].shape:
                raise ValueError(f"weight {i} has shape {w.shape}, expected "
                                 f"{self.weights[i].shape}")
            if b.shape != self.biases[i].shape:
                raise ValueError(f"bias {i} has shape {b.shape}, expected {self.biases[i].shape}")
            for what, a in (("weight", w), ("bias", b)):
                if a.dtype.kind not in "fiu":  # (complex: its imaginary part would be dropped)
                    raise TypeError(f"{what} {i} has dtype {a.dtype}, expected real numbers "
                                    "(float or integer)")
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise ValueError(f"layer {i} parameters contain NaN or infinite values")
            with np.errstate(over="ignore"):  # (float64 past float32's range: inf)
                fits = np.isfinite(w.astype(np.float32)).all() and \
                    np.isfinite(b.astype(np.float32)).all()
            if not fits:
                raise ValueError(FLOAT32_RANGE.format(name=f"layer {i}'s weights or biases"))
        for i, (w, b) in enumerate(zip(weights, biases)):
            self.weights[i][...] = w
            self.biases[i][...] = b

    def get_config(self):
        """A JSON-serialisable description from which :meth:`from_config` rebuilds the network."""
        return {
            "layer_sizes": list(self.layer_sizes),
            "activation": self.activation,
            "init": self.init,
            "dropout": self.dropout,
            "input_mean": self.input_mean,
            "input_std": self.input_std,
        }

    @classmethod
    def from_config(cls, config):
        """Build a network (freshly initialised) from :meth:`get_config` output."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        known = {"layer_sizes", "activation", "init", "dropout", "input_mean", "input_std"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        if "layer_sizes" not in config:
            raise ValueError("config has no 'layer_sizes'")
        return cls(config["layer_sizes"], activation=config.get("activation", "relu"),
                   init=config.get("init", "he"), dropout=config.get("dropout", 0.0),
                   input_mean=config.get("input_mean", 0.0),
                   input_std=config.get("input_std", 1.0), seed=0)

    def copy(self):
        """An independent copy (same config and parameters)."""
        return _rebuild(self.get_config(), self._flat, self.training_summary, type(self))

    def __reduce__(self):
        # Rebuild from config + parameters: the flat buffer and its views stay one object,
        # and the cached C view (not picklable) is recreated on first use.
        # (a subclass rebuilds as itself, as copy() does, when pickle can find it by name:
        # one defined in a function would make the network unpicklable)
        cls = type(self)
        found = sys.modules.get(cls.__module__)
        for part in cls.__qualname__.split("."):
            found = getattr(found, part, None)
        if cls is Network or found is not cls:
            cls = None
        return (_rebuild, (self.get_config(), self._flat.copy(), self.training_summary, cls))

    def __deepcopy__(self, memo):
        return self.copy()

    # ---- the interface Trainer uses ---------------------------------------------------------
    # prepared_input, prepared_labels, c_net and c_keep are what a training loop needs of
    # a Network: validated data in the C layout and the C view of the parameters. Trainer
    # is their user; they are documented, stable within a version, and not end-user API.

    def prepared_input(self, x, name="x"):
        """(x2d, scale, shift): x validated and as a C-contiguous (n, features) uint8 or
        float32 array, with the conversion ``x * scale + shift`` the kernels apply (pixel
        scaling and the input standardisation). Errors name ``name``."""
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except Exception:
                raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from None
        if x.dtype == np.uint8:
            scale = 1.0 / 255.0
        elif x.dtype.kind == "f" or x.dtype.kind in "iu":
            if x.dtype.kind in "iu":
                raise TypeError(f"{name} has integer dtype {x.dtype}: pass uint8 pixels (0-255) "
                                f"or floats scaled to [0, 1]")
            with np.errstate(over="ignore"):  # (past float32's range: said below)
                x32 = x.astype(np.float32, copy=False)
            if not all_finite(x32):
                if x.dtype != np.float32 and all_finite(x):
                    raise ValueError(FLOAT32_RANGE.format(name=name) + ": scale them down")
                raise ValueError(f"{name} contains NaN or infinite values")
            x = x32
            scale = 1.0
        else:
            raise TypeError(f"{name} must be uint8 or floating point, got dtype {x.dtype}")
        if x.ndim == 1 and x.size == self.n_features:
            raise ValueError(f"{name} must have shape (n, features) or (n, height, width), "
                             f"got {x.shape}; one image as a flat vector? pass a batch of "
                             f"one: {name}[None]")
        shape = x.shape
        one = x.ndim == 2 and x.size == self.n_features and x.shape[1] != self.n_features
        x = samples_2d(x, name)
        if x.shape[1] != self.n_features:
            side = math.isqrt(self.n_features)
            if one:
                hint = (f"; one {shape[0]}x{shape[1]} image? pass a batch of one: "
                        f"{name}[None]")
            elif side * side != self.n_features:
                hint = ""
            elif len(shape) == 3 and shape[2] in (3, 4):
                hint = (f"; one colour picture ({shape[0]}x{shape[1]}, {shape[2]} channels)? "
                        f"predict_image converts it to grey and to {side}x{side}")
            elif len(shape) == 2 and shape[0] == shape[1]:
                hint = (f"; one {shape[0]}x{shape[1]} picture? predict_image (or "
                        f"digitcore.preprocess_image) brings a picture of any size to "
                        f"{side}x{side}")
            else:
                hint = ""
            raise ValueError(f"{name} has {x.shape[1]} features per sample, the network "
                             f"expects {self.n_features} (layer_sizes[0]){hint}")
        # (aligned too: a float32 view at an odd offset is copied, as C expects)
        x = np.require(x, requirements="CA")
        return x, scale / self.input_std, -self.input_mean / self.input_std

    def _reading(self, x):
        """prepared_input for an answer (predict, evaluate): floats refused where they
        can only be 0-255 pixels (check_pixel_floats)."""
        x2, scale, shift = self.prepared_input(x)
        check_pixel_floats(x2, self.training_summary)
        check_pixel_images(x2, self.training_summary)
        return x2, scale, shift

    def c_net(self, dropout=0.0):
        """The C view of this network (``_ops._Net`` over the flat parameters: train,
        forward, evaluate), with this dropout; cached, rebuilt when the dropout differs."""
        k = self._c_net_cache
        if k is None or k[0] != dropout:
            net = _ops()._Net(np.asarray(self.layer_sizes, dtype=np.int64), self._flat,
                              self.activation, LEAKY_SLOPE, dropout)
            self._c_net_cache = k = (dropout, net)
        return k[1]

    @staticmethod
    def c_keep():
        """A new ``_ops._Keep``: passed to every ``c_net().train`` call of a full-batch
        run, it keeps layer 0's sparse input between calls, so each step does not gather
        the whole data set anew (same bits). Tied to one array: ``clear()`` it after the
        array's contents change."""
        return _ops()._Keep()

    # ---- inference ------------------------------------------------------------------------

    def predict_proba(self, x, *, tta=None):
        """Class probabilities.

        Parameters
        ----------
        x : array, shape (n, height, width) or (n, features), uint8 or float
        tta : None or str
            Test-time augmentation: a name of :data:`digitcore.augment.TTA` ("shift":
            the mean of the probabilities of each image and its four one-pixel shifts;
            x must then be images, (n, H, W) or (n, F) with F a square). For networks
            trained on deformed digits; 5x the time.

        Returns
        -------
        ndarray, float32, shape (n, n_classes); rows sum to 1.

        Raises
        ------
        FloatingPointError if the output layer overflows float32 on this input (an
        infinite or NaN logit: weights or input scaling far too large), rather than
        returning NaN; :meth:`logits` shows the values.
        """
        if tta is not None and check_tta(tta) is not None:  # (tta=None: no call)
            return tta_mean_proba(self.predict_proba, x, tta)
        # (uint8 pixels are checked by the binding itself, see _Net.infer_pixels)
        out = self.c_net().infer_pixels(x, self.input_mean, self.input_std, 1,
                                        self.training_summary)
        if type(out) is int:  # (uint8 images it would misread: see check_pixel_images)
            raise image_refusal(out, self.training_summary)
        if out is None:
            x2, scale, shift = self._reading(x)
            out = self.c_net().forward(x2, scale, shift, True)
        return out

    def logits(self, x):
        """Output-layer values before the softmax, float32 (n, n_classes)."""
        out = self.c_net().infer_pixels(x, self.input_mean, self.input_std, 0,
                                        self.training_summary)
        if type(out) is int:  # (uint8 images it would misread: see check_pixel_images)
            raise image_refusal(out, self.training_summary)
        if out is None:
            x2, scale, shift = self._reading(x)
            out = self.c_net().forward(x2, scale, shift, False)
        return out

    def predict(self, x, *, tta=None):
        """Predicted labels, int64 (n,): each row's largest logit, an infinite one too;
        ``tta`` as in :meth:`predict_proba`. FloatingPointError for a NaN logit (NaN or
        overflowing parameters) rather than a guess."""
        if tta is not None and check_tta(tta) is not None:
            return np.argmax(self.predict_proba(x, tta=tta), axis=1).astype(np.int64)
        out = self.c_net().infer_pixels(x, self.input_mean, self.input_std, 2,
                                        self.training_summary)
        if type(out) is int:  # (uint8 images it would misread: see check_pixel_images)
            raise image_refusal(out, self.training_summary)
        if out is None:
            x2, scale, shift = self._reading(x)
            out = self.c_net().predict(x2, scale, shift)
        return out

    def evaluate(self, x, y, *, tta=None):
        """(mean cross-entropy loss, accuracy) on ``x`` with integer labels ``y``; with
        ``tta`` (see :meth:`predict_proba`), of the views' mean probabilities.
        FloatingPointError when the output overflows (an infinite or NaN logit), as
        :meth:`predict_proba`."""
        x2, scale, shift = self._reading(x)
        labels = self.prepared_labels(y, x2.shape[0])
        if x2.shape[0] == 0:
            raise ValueError("cannot evaluate on zero samples")
        if check_tta(tta) is not None:  # (each view's forward pass serves both figures)
            proba, logp = tta_answers(self._answers, x, tta)
            loss = -float(np.mean(logp[np.arange(len(labels)), labels]))
            return loss, int(np.count_nonzero(proba.argmax(axis=1) == labels)) / len(labels)
        loss, correct = self.c_net().evaluate(x2, labels, scale, shift)
        if not math.isfinite(loss):  # (finite logits give a finite loss, in double)
            raise FloatingPointError(
                "evaluate: the network's output overflowed float32 for this input (a logit "
                "is infinite or NaN), so it has no loss to give: its parameters are NaN or "
                "infinite, or they or its input scaling are far too large; logits() shows "
                "the values")
        return float(loss), correct / x2.shape[0]

    def _answers(self, x):
        """One forward pass's (probabilities, float32 as :meth:`predict_proba` gives them
        (the same bits), and their logs, float64 (n, n_classes), taken from the logits so
        that they stay finite where a probability underflows to 0)."""
        z = self.logits(x)
        if not all_finite(z):  # (as predict_proba refuses them)
            raise FloatingPointError(
                "the network's output overflowed float32 for this input (a logit is "
                "infinite or NaN), so it has no probabilities to give; logits() shows the "
                "values")
        return _ops().softmax(z), log_softmax(z)

    def score(self, x, y, *, tta=None):
        """Accuracy (fraction of correct predictions) on ``x`` with labels ``y``; ``tta``
        as in :meth:`predict_proba`."""
        return self.evaluate(x, y, tta=tta)[1]

    def prepared_labels(self, y, n, name="y"):
        """y validated as n int64 class indices in [0, n_classes). Errors name ``name``."""
        # (contiguous and aligned: a view at an odd offset is copied, as C expects)
        return np.require(class_indices(y, n, self.n_classes, name=name,
                                        integral_floats=True), requirements="CA")

    def predict_image(self, image, *, reject_non_digits=True, tta=None):
        """Read a digit from an image file or array, prepared like MNIST
        (:func:`digitcore.imaging.preprocess_image`).

        ``reject_non_digits=False`` skips preprocess_image's shape check, which refuses
        stroke drawings that are not digits (for a model of other 28x28 strokes: letters).
        ``tta`` as in :meth:`predict_proba`, on the prepared 28x28 image;
        ``tta=digitcore.augment.model_tta(model)`` reads with the one the model was
        trained to be scored with, as ``digitcore predict`` and ``serve`` do.

        Returns
        -------
        (digit, probabilities) : (int, ndarray float32 (n_classes,))

        Raises
        ------
        NoDigitError (a ValueError)
            When the picture holds no digit (its ``reason`` says why).
        """
        from digitcore.imaging import FIELD, preprocess_image

        if self.n_features != FIELD * FIELD:  # (before any picture is read)
            raise ValueError(f"predict_image prepares pictures as {FIELD}x{FIELD} = "
                             f"{FIELD * FIELD} pixels, and this model takes "
                             f"{self.n_features} inputs")
        img = preprocess_image(image, reject_non_digits=reject_non_digits)
        proba = self.predict_proba(picture_row(self, img), tta=tta)[0]
        return int(np.argmax(proba)), proba

    # ---- files -------------------------------------------------------------------------------

    def save(self, path, metadata=None, dtype="float32"):
        """Write the network to a safetensors file (atomically); ``metadata`` defaults to
        ``training_summary`` (a dict of your own replaces it, and with it the record of
        uint8 training input unless it has ``"input": "uint8"``); ``dtype="float16"``
        stores the parameters rounded to half precision (half the bytes). ``digitcore.load_model(path)`` reads it back.

        The file format lives in :mod:`digitcore._modelfile`, below this module;
        :mod:`digitcore.modelio` (save_model, load_model) sits above it: no import cycle.
        """
        if metadata is None:
            metadata = self.training_summary
        write_model(path, self.get_config(), self.weights, self.biases, metadata, dtype=dtype)

    def to_onnx(self, path, input_dtype="float32"):
        """Write the network as an ONNX model (needs the ``onnx`` package), atomically.

        The graph includes the input scaling and ends in Softmax: with
        ``input_dtype="uint8"`` it takes pixels 0-255, with ``"float32"`` floats in
        [0, 1], and returns what :meth:`predict_proba` returns. Opset 17, float32
        weights; see :mod:`digitcore.onnxio`.
        """
        from digitcore.onnxio import to_onnx  # lazy: it imports onnx; it never imports us

        return to_onnx(self, path, input_dtype=input_dtype)

    def __repr__(self):
        arch = "-".join(str(s) for s in self.layer_sizes)
        extra = f", dropout={self.dropout}" if self.dropout else ""
        return (f"Network({arch}, activation={self.activation!r}{extra}, "
                f"params={self.n_params:,})")
