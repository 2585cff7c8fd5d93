"""``digitcore serve``: a local page where you draw a digit and watch the network read it.

From Python, with a trained network ``net``::

    import threading
    from digitcore.serve import make_server

    server = make_server(net, "127.0.0.1", 0)  # port 0: any free port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.url)  # http://127.0.0.1:40123/
    server.shutdown(); server.server_close()

The page (``static/``) is plain HTML, CSS and JavaScript with no external resources.
It sends the drawing as grey pixels, so no image library is needed; the API also takes
PNG data URLs (see :mod:`digitcore.serve.app`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from digitcore.serve.app import MAX_BODY, DigitServer, is_loopback, make_server

__all__ = ["serve", "make_server", "default_model", "pretrained_model", "DigitServer",
           "MAX_BODY", "DEFAULT_MODEL_NAME"]

DEFAULT_MODEL_NAME = "serve-default.safetensors"


def _say(msg, quiet=False):
    if not quiet:
        print(f"digitcore serve: {msg}", file=sys.stderr, flush=True)


def pretrained_model(*, quiet=False):
    """The model ``digitcore serve`` uses when no model file is given: the bundled
    pretrained model (:func:`digitcore.load_pretrained`, a Network or a Committee), at once.

    If that file is missing or damaged (a broken installation), it says so in one line
    and falls back to :func:`default_model`, which trains a model once and caches it.

    Returns
    -------
    (Network or Committee, dict)
        The model and a ``model_info`` dict for :func:`make_server`.
    """
    from digitcore.errors import ModelFormatError
    from digitcore.modelio import read_model_info
    from digitcore.pretrained import load_pretrained, pretrained_path

    try:
        net = load_pretrained()
    except (ModelFormatError, OSError) as exc:
        _say(f"warning: cannot use the bundled pretrained model ({exc}); falling back to "
             "training the default model", quiet)
        return default_model(quiet=quiet)
    info = read_model_info(pretrained_path())
    info["source"] = "pretrained model (bundled)"
    return net, info


def default_model(*, quiet=False, preset_overrides=None):
    """The network ``digitcore serve`` trains when no model file is given and the bundled
    pretrained model cannot be read (see :func:`pretrained_model`).

    Loaded from ``get_cache_dir() / "serve-default.safetensors"`` when that file exists
    and is valid; otherwise the ``default`` preset is trained (seed 0) on the default
    data (full MNIST if found locally, else the bundled mnist-mini: a few seconds, no
    network access) and saved there atomically for next time. If the cache cannot be
    written, the trained network is still returned.

    Returns
    -------
    (Network, dict)
        The network and a ``model_info`` dict for :func:`make_server`.
    """
    from digitcore import datasets
    from digitcore.errors import ModelFormatError
    from digitcore.modelio import load_model, read_model_info
    from digitcore.presets import build

    path = datasets.get_cache_dir() / DEFAULT_MODEL_NAME
    if path.is_file():
        try:
            net = load_model(path)
            if net.n_features == 784:
                info = read_model_info(path)
                info["source"] = "default model (cached)"
                _say(f"using the cached default model {path}", quiet)
                return net, info
            _say(f"{path} does not read 28x28 images; training a new default model", quiet)
        except (ModelFormatError, OSError, ValueError) as exc:
            _say(f"ignoring the unreadable cached model ({exc}); training a new one", quiet)

    name, (x_tr, y_tr), (x_te, y_te), notice = datasets.resolve_default_dataset()
    if notice and not quiet:
        print(notice, file=sys.stderr)
    net, trainer = build("default", 0, len(x_tr), trainer_kw=dict(verbose=0),
                         **(preset_overrides or {}))
    _say(f"training the default model ({'-'.join(map(str, net.layer_sizes))}) on {name}, "
         f"{trainer.epochs} epochs; this happens once", quiet)
    t0 = time.perf_counter()
    history = trainer.fit(x_tr, y_tr)
    if history.interrupted:
        # the Trainer turns Ctrl-C into an early stop; here it means "don't serve", and a
        # half-trained network must not be cached as the default model
        raise KeyboardInterrupt
    wall = time.perf_counter() - t0
    _, acc = net.evaluate(x_te, y_te)
    net.training_summary = {"dataset": name, "preset": "default", "epochs": trainer.epochs,
                            "seed": 0, "test_accuracy": acc, "wall_seconds": wall}
    _say(f"trained in {wall:.1f} s, test accuracy {acc:.2%} ({name})", quiet)
    info = {"source": "default model, trained just now", "metadata": {
        "training": net.training_summary}}
    try:
        os.makedirs(path.parent, exist_ok=True)
        net.save(path)
        info["path"] = str(path)
        info["source"] = "default model (cached)"
        _say(f"saved it to {path}", quiet)
    except OSError as exc:
        _say(f"warning: could not cache the default model in {path}: {exc}", quiet)
    return net, info


def serve(model=None, host="127.0.0.1", port=8000, open_browser=False, debug=False,
          tta=None, allowed_hosts=()) -> int:
    """Serve the drawing page until Ctrl-C; returns the exit status (0).

    Parameters
    ----------
    model : str or os.PathLike or None
        A digitcore model file; None uses the bundled pretrained model
        (:func:`pretrained_model`).
    host : str
        Address to bind. The default, 127.0.0.1, keeps the page on this machine;
        any other address prints a warning (there is no authentication).
    port : int
        TCP port; 0 picks a free one.
    open_browser : bool
        Open the page in the default web browser once the server listens.
    debug : bool
        Tracebacks instead of one-line messages for clients that disconnect mid-request.
    tta : None or str
        Test-time augmentation of each drawing ("none", or a name of
        ``digitcore.augment.TTA``); None: the one the model was trained to be scored
        with (the bundled model's: "shift").
    allowed_hosts : iterable of str
        Host names answered besides localhost (a reverse proxy's, which passes its own
        Host header); see :func:`make_server`.
    """
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--port must be from 0 to 65535, got {port}")
    if model is None:
        net, info = pretrained_model()
    else:
        from digitcore.modelio import load_model, read_model_info

        model = os.fspath(model)
        if not os.path.exists(model):
            raise FileNotFoundError(f"{model}: no such file")
        net = load_model(model)
        info = read_model_info(model)
        info["source"] = os.path.basename(model)
    from digitcore.augment import model_tta

    try:  # (None: the model's own test-time augmentation, if this version knows it)
        tta = model_tta(net, tta) or "none"  # (make_server reads None as the model's own)
    except ValueError as exc:
        if tta is not None or model is None:
            raise
        raise ValueError(f"{model}: {exc} (recorded in the file); serve it with --tta none"
                         ) from None
    if host.startswith("[") and host.endswith("]"):  # (an IPv6 address as URLs write it)
        host = host[1:-1]
    try:
        server = make_server(net, host, port, model_info=info, debug=debug, tta=tta,
                             allowed_hosts=allowed_hosts)
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    url = server.url
    if not is_loopback(host):
        _say(f"warning: listening on {host or 'every address'}, so other machines on the "
             f"network can reach "
             f"this page and its API (there is no authentication); use --host 127.0.0.1 "
             f"to keep it local")
        if host in ("0.0.0.0", "::", ""):
            url = f"http://127.0.0.1:{server.server_address[1]}/"
    how = f", test-time augmentation {server.tta!r}" if server.tta else ""
    print(f"digitcore serve: {server.model_info['architecture']}{how} at {url}  "
          f"(Ctrl-C to stop)", flush=True)
    if open_browser:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    previous = None
    if threading.current_thread() is threading.main_thread():
        def _terminate(signum, frame):
            raise KeyboardInterrupt
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        _say("stopped")
    finally:
        server.server_close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
