"""ONNX export: a Network as a self-contained ONNX graph (needs the ``onnx`` package).

The graph computes what :meth:`Network.predict_proba` computes::

    x       input "pixels", (N, n_features), uint8 (0-255) or float32 (already in [0, 1])
    h0      Cast(x, float32) * scale + shift        scale = 1/255/input_std (uint8) or
                                                    1/input_std (float32), shift =
                                                    -input_mean/input_std; a Mul or Add
                                                    whose constant is 1 or 0 is left out
    h{l+1}  act(MatMul(h{l}, W{l}^T) + b{l})        hidden layers: Relu, LeakyRelu(0.01),
                                                    Sigmoid or Tanh
    out     Softmax(MatMul(h{L}, W{L}^T) + b{L}, axis=1)
            output "probabilities", (N, n_classes), float32

A :class:`~digitcore.committee.Committee` becomes one graph that runs each member j as
above (its nodes and weights named ``m{j}.``, the uint8 Cast shared), ending in its own
Softmax ``m{j}.probabilities``, and averages them with Mean into ``probabilities``: what
:meth:`Committee.predict_proba` computes.

All weights are float32 initializers; ``W{l}^T`` is stored (in, out) so the graph is
plain MatMul + Add (ONNX's MatMul takes any leading batch size N, named "N" in the
declared shapes). An ONNX graph has one input dtype, so the caller picks uint8 or float32
when exporting. Opset :data:`OPSET` (default domain only), IR version :data:`IR_VERSION`:
every operator used exists unchanged since opset 13, and IR 8 / opset 17 loads in
onnxruntime 1.13 and later. The network's config and the digitcore version travel in the
model's ``metadata_props``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from digitcore._atomic import atomic_write_bytes
from digitcore._version import __version__

__all__ = ["to_onnx", "OPSET", "IR_VERSION", "INPUT_DTYPES"]

OPSET = 17
IR_VERSION = 8
INPUT_DTYPES = ("float32", "uint8")
_ACTIVATIONS = {"relu": "Relu", "leaky_relu": "LeakyRelu", "sigmoid": "Sigmoid",
                "tanh": "Tanh", "identity": "Identity"}


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise ImportError("ONNX export needs the onnx package: pip install "
                          "'digitcore[onnx]' (or pip install onnx)") from exc
    return onnx, helper, numpy_helper


def _is_network(obj):
    return all(hasattr(obj, a) for a in ("get_config", "flat_parameters", "leaky_slope"))


def build_onnx_model(network, input_dtype="float32"):
    """The network (or committee) as an in-memory ``onnx.ModelProto`` (checked with
    ``onnx.checker``).

    See :func:`to_onnx` for the parameters.
    """
    # duck-typed: Network.to_onnx and Committee.to_onnx call this module, so it imports
    # neither
    members = getattr(network, "members", None)
    if members is not None:
        if not members or not all(_is_network(m) for m in members):
            raise TypeError("a committee's members must be digitcore.Network objects")
    elif not _is_network(network):
        raise TypeError(f"network must be a digitcore.Network or Committee, got "
                        f"{type(network).__name__}")
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
    for j, net in enumerate(members if members is not None else [network]):
        if not np.isfinite(net.flat_parameters).all():
            which = f"member {j}'s" if members is not None else "the network's"
            raise ValueError(f"{which} parameters contain NaN or infinite values")
    onnx, helper, numpy_helper = _import_onnx()
    TP = onnx.TensorProto
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    h = "pixels"
    if input_dtype == "uint8":
        nodes.append(helper.make_node("Cast", [h], ["pixels_f32"], to=TP.FLOAT))
        h = "pixels_f32"
    if members is None:
        _member_nodes(network, h, "", "probabilities", input_dtype, nodes, const, helper)
    else:
        outs = [_member_nodes(net, h, f"m{j}.", f"m{j}.probabilities", input_dtype, nodes,
                              const, helper) for j, net in enumerate(members)]
        nodes.append(helper.make_node("Mean", outs, ["probabilities"]))
    elem = TP.UINT8 if input_dtype == "uint8" else TP.FLOAT
    graph = helper.make_graph(
        nodes, "digitcore_committee" if members is not None else "digitcore_mlp",
        [helper.make_tensor_value_info("pixels", elem, ["N", network.n_features])],
        [helper.make_tensor_value_info("probabilities", TP.FLOAT, ["N", network.n_classes])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="digitcore", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = (f"digitcore {network!r}: input 'pixels' {input_dtype} "
                        f"(N, {network.n_features}) "
                        + ("0-255" if input_dtype == "uint8" else "in [0, 1]")
                        + f", output 'probabilities' float32 (N, {network.n_classes})")
    helper.set_model_props(model, {
        "digitcore_config": json.dumps(network.get_config()),
        "digitcore_version": __version__,
        "input_dtype": input_dtype,
    })
    onnx.checker.check_model(model, full_check=True)
    return model


def _member_nodes(network, h, prefix, output, input_dtype, nodes, const, helper):
    """Append one network's nodes, reading float32 pixels ``h`` (0-255 for uint8 input)
    and writing its probabilities to ``output``; names start with ``prefix``."""
    # The same float32 constants the C kernels get (_mlp.pxi takes float scale/shift).
    unit = 1.0 / 255.0 if input_dtype == "uint8" else 1.0
    scale = np.float32(unit / network.input_std)
    shift = np.float32(-network.input_mean / network.input_std)
    if scale != np.float32(1.0):
        nodes.append(helper.make_node("Mul", [h, const(f"{prefix}input_scale", scale)],
                                      [f"{prefix}scaled"]))
        h = f"{prefix}scaled"
    if shift != np.float32(0.0):
        nodes.append(helper.make_node("Add", [h, const(f"{prefix}input_shift", shift)],
                                      [f"{prefix}shifted"]))
        h = f"{prefix}shifted"
    last = len(network.weights) - 1
    for i, (w, b) in enumerate(zip(network.weights, network.biases)):
        mm, lin = f"{prefix}layer{i}_matmul", f"{prefix}layer{i}_linear"
        nodes.append(helper.make_node("MatMul", [h, const(f"{prefix}{2 * i}.weight_t", w.T)],
                                      [mm]))
        nodes.append(helper.make_node("Add", [mm, const(f"{prefix}{2 * i}.bias", b)], [lin]))
        if i < last:
            out = f"{prefix}layer{i}_out"
            kw = {"alpha": network.leaky_slope} if network.activation == "leaky_relu" else {}
            nodes.append(helper.make_node(_ACTIVATIONS[network.activation], [lin], [out], **kw))
            h = out
        else:
            nodes.append(helper.make_node("Softmax", [lin], [output], axis=1))
    return output


def to_onnx(network, path, input_dtype="float32"):
    """Write ``network`` to ``path`` as an ONNX model, atomically.

    Parameters
    ----------
    network : Network or Committee
        A committee's graph averages its members' probabilities (see the module's text).
    path : str or os.PathLike
        Destination (conventionally ``.onnx``); an existing file is replaced only once
        the new one is completely written.
    input_dtype : {"float32", "uint8"}
        The graph's input type: float32 pixels already scaled to [0, 1], or uint8
        pixels 0-255 (scaled inside the graph). Either way the output matches
        ``network.predict_proba`` on the same array to float32 rounding.

    Returns
    -------
    str : the path written.

    Raises
    ------
    ImportError if the onnx package is missing; ValueError/TypeError for a bad argument
    or non-finite parameters; OSError if the file cannot be written (an old file is kept).
    """
    model = build_onnx_model(network, input_dtype)
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; give a file name like model.onnx")
    atomic_write_bytes(path, model.SerializeToString())
    return path
