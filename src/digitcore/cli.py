"""The ``digitcore`` command line (also ``python -m digitcore``).

User errors (missing file, bad argument, malformed model or data) print one line to
stderr and exit with status 2; ``--debug`` shows the traceback instead. Options the
parser itself refuses print its usage line first, as argparse does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings

from digitcore._atomic import writable_target

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # (128 + SIGINT, as a shell reports a process Ctrl-C stopped)
_UNSET = object()
# digitcore.augment.TTA's views, in words (not imported here: `--help` needs no NumPy)
_TTA_WHAT = {"shift": "the mean over each image and its four one-pixel shifts"}


class UsageError(Exception):
    """A problem with what the user asked for: reported in one line, exit status 2."""


def _int_from(text, minimum, what):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def _positive_int(text):
    return _int_from(text, 1, "a positive integer")


def _seed(text):
    return _int_from(text, 0, "an integer >= 0")


def _threads(text):
    from digitcore._config import MAX_THREADS  # (not the compiled module: parsing stays light)

    value = _positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"digitcore runs at most {MAX_THREADS} threads, "
                                         f"got {value}")
    return value


def _set_threads(n: int) -> None:
    """--threads: set, with a warning past the CPUs this process may run on (threads
    beyond them wait for each other at every step: an epoch took ~25x longer with 999)."""
    import digitcore

    digitcore.set_num_threads(n)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # (not Linux)
        cpus = os.cpu_count() or n
    if n > cpus:
        print(f"warning: --threads {n} is more than the {cpus} CPUs this process may run "
              f"on: the threads past them wait for each other at every step, which is "
              f"slower than {cpus}", file=sys.stderr)


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _hidden(text):
    text = text.strip()
    if text in ("", "none", "0"):
        return []
    try:
        sizes = [int(s) for s in text.split(",")]  # (",," and "256," name no width)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden takes comma-separated layer widths like 256,128, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return sizes


def _path(text):
    """A file or folder path: an empty one (`--out "$UNSET"`) is an error, not "none"."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def _augment(text):
    """NAME (affine, elastic, thickness, full, none) or key=value,... of Augment fields."""
    from digitcore.augment import parse_augment

    try:
        return parse_augment(text) or "none"
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _batch_size(text):
    if text.lower() in ("full", "none"):
        return None
    return _positive_int(text)


def _parser():
    from digitcore._version import __version__
    from digitcore.network import ACTIVATIONS
    from digitcore.optim import OPTIMIZERS, SCHEDULES
    from digitcore.presets import PRESETS

    p = argparse.ArgumentParser(
        prog="digitcore",
        description="Train and run neural networks that read handwritten digits.")
    p.add_argument("--version", action="version", version=f"digitcore {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    # --debug is accepted before or after the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    _add = sub.add_parser

    def add_parser(name, **kw):
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser

    t = sub.add_parser("train", help="train a network and print its test accuracy")
    t.add_argument("--dataset", choices=["mnist", "fashion-mnist", "mnist-mini"], default=None,
                   help="default: full MNIST if found locally, else the bundled mnist-mini")
    t.add_argument("--data-dir", type=_path, default=None, help="folder holding the IDX files")
    t.add_argument("--download", action="store_true",
                   help="download the dataset (full MNIST without --dataset) if it is not "
                        "found locally")
    t.add_argument("--no-verify", dest="verify", action="store_false",
                   help="use IDX files that are not the official ones (no SHA-256 check): "
                        "your own data in the MNIST file layout")
    t.add_argument("--preset", choices=sorted(PRESETS), default="default")
    t.add_argument("--hidden", type=_hidden, help="hidden layer widths, e.g. 256,128")
    t.add_argument("--activation", choices=ACTIVATIONS)
    t.add_argument("--optimizer", choices=sorted(OPTIMIZERS))
    t.add_argument("--lr", type=_float)
    t.add_argument("--lr-schedule", choices=list(SCHEDULES))
    t.add_argument("--epochs", type=_positive_int)
    t.add_argument("--batch-size", type=_batch_size, default=_UNSET,
                   help="a positive int, or 'full' for full-batch gradient descent")
    t.add_argument("--dropout", type=_float)
    t.add_argument("--l2", type=_float, help="L2 penalty on the weights (default 0)")
    t.add_argument("--l1", type=_float, help="L1 penalty on the weights (default 0)")
    t.add_argument("--augment", type=_augment, metavar="NAME|KEY=V,...",
                   help="deform training images: affine, elastic, thickness, full, none, or "
                        "Augment fields such as rotate=10,alpha=34 (default: the preset's)")
    t.add_argument("--members", type=_positive_int, metavar="K",
                   help="train K networks (seeds SEED, SEED+1, ...) and save their "
                        "committee: the mean of their probabilities answers (default: "
                        "the preset's, 1 but for --preset committee)")
    t.add_argument("--tta", choices=["none", *_TTA_WHAT], default=None,
                   help="score the test images with test-time augmentation: shift = the "
                        "mean over each image and its four one-pixel shifts (default: the "
                        "preset's, shift for --preset augmented and committee, none with "
                        "--augment none); kept in the saved model")
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--threads", type=_threads)
    t.add_argument("--validation-fraction", type=_float, default=0.0)
    t.add_argument("--out", type=_path, default=None, help="save the trained model to this .safetensors file")
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    t.add_argument("--checkpoint", type=_path, metavar="DIR", default=None,
                   help="write the run's state to DIR every epoch (and on Ctrl-C); a "
                        "committee's members each in DIR/member-J")
    t.add_argument("--checkpoint-seconds", type=_float, default=None, metavar="N",
                   help="with --checkpoint: also every N seconds within an epoch")
    t.add_argument("--resume", action="store_true",
                   help="with --checkpoint: continue the run saved in DIR (same arguments)")

    e = sub.add_parser("evaluate", help="accuracy, report and confusion matrix of a model")
    e.add_argument("model")
    e.add_argument("--dataset", choices=["mnist", "fashion-mnist", "mnist-mini"], default=None)
    e.add_argument("--data-dir", type=_path, default=None)
    e.add_argument("--no-verify", dest="verify", action="store_false",
                   help="use IDX files that are not the official ones (no SHA-256 check)")
    e.add_argument("--plots", type=_path, default=None, metavar="DIR", help="write PNG plots here")
    e.add_argument("--tta", choices=["none", *_TTA_WHAT], default=None,
                   help="test-time augmentation (shift: the mean over each image and its "
                        "four one-pixel shifts; default: the one the model was trained to "
                        "be scored with, digitcore train's --tta, else none)")
    e.add_argument("--json", action="store_true")

    pr = sub.add_parser("predict", help="read digits from image files (a picture that cannot "
                        "be read is reported on stderr, the others are still read; exit "
                        "status 1 if any failed)",
                        description="Read digits from image files with MODEL, or without "
                        "one with the bundled pretrained model. MODEL is taken to be the "
                        "first argument when it is a .safetensors file (or --model).")
    pr.add_argument("paths", nargs="+", metavar="IMAGE",
                    help="image files, after an optional MODEL file first "
                         "(predict [MODEL] IMAGE [IMAGE ...])")
    pr.add_argument("--model", type=_path, default=None,
                    help="model file (default: the first argument if it is a model file, "
                         "else the bundled pretrained model)")
    pr.add_argument("--top-k", type=_positive_int, default=1)
    pr.add_argument("--json", action="store_true")
    pr.add_argument("--tta", choices=["none", *_TTA_WHAT], default=None,
                    help="test-time augmentation of each prepared 28x28 image (default: "
                         "the one the model was trained to be scored with, else none)")
    pr.add_argument("--any-strokes", action="store_true",
                    help="do not refuse stroke drawings that are not digits (preprocess_image's "
                         "shape check): for a model of other 28x28 strokes, such as letters")

    i = sub.add_parser("info", help="architecture, parameters and metadata of a model")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")

    x = sub.add_parser("export", help="write a model as ONNX (needs the onnx package)")
    x.add_argument("model")
    x.add_argument("out", metavar="OUT.onnx")
    x.add_argument("--input-dtype", choices=["float32", "uint8"], default="float32",
                   help="the graph's input: floats in [0, 1] (default) or uint8 pixels 0-255")

    b = sub.add_parser("bench", help="a short throughput benchmark of this machine")
    b.add_argument("--threads", type=_threads)
    b.add_argument("--json", action="store_true")

    s = sub.add_parser("serve", help="a page where you draw a digit and watch the network read it")
    s.add_argument("model", nargs="?", help="model file (default: the bundled pretrained model)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--open", action="store_true", help="open the page in a browser")
    s.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (a reverse proxy's host "
                        "name, passed on in its Host header); repeatable")
    s.add_argument("--tta", choices=["none", *_TTA_WHAT], default=None,
                   help="test-time augmentation of each drawing (default: the one the "
                        "model was trained to be scored with, else none)")

    sub.add_parser("config", help="print version, kernel path, OpenMP and threads")
    return p


def _one_line(message):
    """A multi-line message as one line, nothing dropped (a dataset error's mirrors and the
    way to install the files by hand): lines joined by "; ", or by a space after a colon."""
    out = ""
    for line in (ln.strip() for ln in message.strip().splitlines()):
        if line:
            out += ("" if not out else " " if out.endswith(":") else "; ") + line
    return out


def _load_data(dataset, data_dir, download=False, verify=True, test_only=False):
    """(name, train pair, test pair); with ``test_only`` (evaluate) the two test files
    alone are looked for and read, and the train pair is None."""
    from digitcore import datasets

    files = datasets.FILES[2:] if test_only else datasets.FILES
    if dataset == "mnist-mini" and (data_dir is not None or download):
        raise UsageError("--dataset mnist-mini is bundled with digitcore: --data-dir and "
                         "--download do not apply to it")
    if data_dir is not None and not download and not os.path.isdir(data_dir):
        raise UsageError(f"--data-dir {data_dir}: no such directory")
    if dataset is None and download:  # (the default's mnist-mini fallback never downloads)
        dataset = "mnist"
    partial = datasets.incomplete_dataset_files(dataset or "mnist", data_dir, files) \
        if dataset != "mnist-mini" and not download else None
    if partial is not None:  # (else the search passes it over: other files, or mnist-mini)
        folder, missing = partial
        raise UsageError(f"--data-dir {data_dir}: {folder} lacks " + ", ".join(missing)
                         + " (raw or .gz): " + ("evaluate reads the two test files"
                                                if test_only else "training reads the four files"))
    if dataset is None:
        if not verify and datasets.find_dataset_files("mnist", data_dir, files) is None:
            # without this, --no-verify would quietly use the bundled subset
            raise UsageError(
                "--no-verify: no IDX files found; put " + ", ".join(files)
                + " (raw or .gz) in the folder given with --data-dir")
    if data_dir is not None and not download:
        # a folder given by name is the one read: without this, the search went on to
        # $DIGITCORE_DATA, the cache or the bundled subset without a word about it
        if not datasets.folder_has_dataset(dataset or "mnist", data_dir, files):
            raise UsageError(f"--data-dir {data_dir}: no "
                             f"{datasets.dataset_title(dataset or 'mnist')} files there ("
                             + ", ".join(files) + ", raw or .gz, in it or in its dataset "
                             "subfolder)")
    if data_dir is not None and not download:  # (that folder only, as checked above)
        train, test, folder = datasets.read_folder(dataset or "mnist", data_dir,
                                                   verify=verify, test_only=test_only)
        name = dataset or ("mnist" if verify else f"IDX files in {folder}")
        return name, train, test
    if dataset is None:
        name, train, test, notice = datasets.resolve_default_dataset(
            data_dir, verify=verify, test_only=test_only)
        if notice:
            print(notice, file=sys.stderr)
        return name, train, test
    if test_only:
        return dataset, None, datasets.load_test_split(dataset, data_dir, verify=verify)
    train, test = datasets.load_dataset(dataset, data_dir, download=download, verify=verify)
    return dataset, train, test


def _json_text(obj, default=None) -> str:
    """``obj`` as strict JSON: NaN and infinities (a model's metadata may hold them;
    json.dumps writes the invalid tokens NaN and Infinity) become null."""
    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(u) for k, u in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(u) for u in v]
        return v

    return json.dumps(finite(obj), default=default, allow_nan=False)


def _emit(args, summary, lines):
    if args.json:
        print(_json_text(summary))
    else:
        for line in lines:
            print(line)


def _check_checkpoint_kind(directory, members):
    """A checkpoint directory holds one network's run (its checkpoint file) or a
    committee's (a subdirectory per member, presets.build_committee): refuse to resume
    one as the other, which would silently start afresh."""
    from digitcore.checkpoint import FILE_NAME
    from digitcore.presets import member_checkpoint

    single = os.path.exists(os.path.join(directory, FILE_NAME))
    committee = os.path.isdir(member_checkpoint(directory, 0))
    if members > 1 and single:
        raise UsageError(f"{directory} holds one network's checkpoint, not a committee's: "
                         f"choose another directory for {members} members")
    if members == 1 and committee:
        raise UsageError(f"{directory} holds a committee's checkpoints (member-1, ...): "
                         "give its --members, or choose another directory")


def cmd_train(args):
    import digitcore
    from digitcore import presets
    from digitcore._prepare import validation_count
    from digitcore.augment import check_tta

    if args.threads:
        _set_threads(args.threads)
    cfg = presets.get_preset(args.preset)
    overrides = {}
    for key in ("hidden", "activation", "optimizer", "lr", "lr_schedule", "epochs", "dropout",
                "l2", "l1"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    if args.batch_size is not _UNSET:
        overrides["batch_size"] = args.batch_size
    if args.augment is not None:
        overrides["augment"] = None if args.augment == "none" else args.augment
    if (args.resume or args.checkpoint_seconds is not None) and not args.checkpoint:
        raise UsageError("--resume and --checkpoint-seconds need --checkpoint DIR")
    if args.validation_fraction and not 0 < args.validation_fraction < 1:
        raise UsageError(f"--validation-fraction must be in (0, 1), got "
                         f"{args.validation_fraction:g}")
    members = args.members or presets.members_of(cfg)
    # (the preset's test-time shifts are for networks trained on deformed digits: with
    # --augment none, none unless --tta asks)
    tta = check_tta(args.tta if args.tta is not None
                    else None if args.augment == "none" else presets.tta_of(cfg))
    if args.checkpoint:
        _check_checkpoint_kind(args.checkpoint, members)
    if args.out:  # (before the training, which a bad path would otherwise throw away)
        if str(args.out).lower().endswith(".onnx"):
            raise UsageError(f"--out {args.out}: train writes a digitcore model file "
                             f"(safetensors), not ONNX; save it as .safetensors, then "
                             f"'digitcore export MODEL {args.out}'")
        writable_target(args.out)
    name, (x_tr, y_tr), (x_te, y_te) = _load_data(args.dataset, args.data_dir, args.download,
                                                       args.verify)
    if "augment" not in overrides and (x_tr.ndim != 3 or x_tr.shape[1:] != (28, 28)):
        # the small-data rule (presets.augment_for) is for 28x28 digits, where it was
        # chosen: its shifts and turns, in pixels, cost 8x8 digits accuracy (and flat
        # features are no pictures); other data train with the preset's own augmentation
        overrides["augment"] = cfg.get("augment")
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    # the images each network trains on: the small-data rules (epochs, augmentation)
    # count them after the validation split
    n_fit = len(x_tr)
    if args.validation_fraction and len(x_tr) >= 2:
        n_fit -= validation_count(len(x_tr), args.validation_fraction)
    runs = presets.build_committee(
        cfg, args.seed, n_fit, members, n_features=int(x_tr[0].size),
        n_classes=max(n_classes, 2),
        trainer_kw=dict(verbose=0 if (args.quiet or args.json) else 1,
                        checkpoint=args.checkpoint,
                        checkpoint_seconds=args.checkpoint_seconds), **overrides)
    net, trainer = runs[0]
    for _, tr in runs:
        if tr.verbose and tr.epochs > 50:
            tr.verbose = 2  # a line per epoch: a bar is no use over a long run
    if not (args.quiet or args.json):
        deformed = "" if trainer.augment is None else ", deforming the training images"
        what = repr(net) if members == 1 else f"a committee of {members} x {net!r}"
        print(f"digitcore {digitcore.__version__}: training {what} on {name} "
              f"({len(x_tr):,} train / {len(x_te):,} test images{deformed}), "
              f"{digitcore.kernel_path()} kernels, {digitcore.get_num_threads()} threads",
              file=sys.stderr)
    t0 = time.perf_counter()
    histories = []
    for j, (_, tr) in enumerate(runs):
        if members > 1 and not (args.quiet or args.json):
            print(f"member {j + 1}/{members} (seed {args.seed + j})", file=sys.stderr)
        history = tr.fit(x_tr, y_tr, validation_fraction=args.validation_fraction,
                         resume=args.resume)
        histories.append(history)
        if history.interrupted:
            break
    wall = time.perf_counter() - t0
    # the speed of the run's epochs from their own times: a resumed run's history holds
    # the epochs trained before it too, which this process's wall time does not
    train_s = sum(sum(h.seconds) for h in histories)
    member_acc = [m.evaluate(x_te, y_te)[1] for m, _ in runs] if members > 1 else []
    if history.interrupted and args.checkpoint:
        print(f"checkpoint saved in {args.checkpoint}: run the same command with --resume "
              f"to continue", file=sys.stderr)
    if members > 1:
        if history.interrupted:
            done = "member 1 is" if j == 1 else f"members 1-{j} are"
            kept = f"; {done} finished in {args.checkpoint}" if args.checkpoint and j else ""
            print(f"digitcore train: interrupted while training member {j + 1} of "
                  f"{members}: no committee saved{kept}", file=sys.stderr)
            return EXIT_INTERRUPTED
        from digitcore.committee import Committee

        model = Committee([m for m, _ in runs])
        model.training_summary = {"members": [m.training_summary for m, _ in runs]}
    else:
        model = net
    test_loss, test_acc = model.evaluate(x_te, y_te, tta=tta)
    plain_acc = model.evaluate(x_te, y_te)[1] if tta else test_acc
    summary = {
        "dataset": name, "n_train": int(len(x_tr)), "n_test": int(len(x_te)),
        "architecture": list(net.layer_sizes), "preset": args.preset,
        "epochs": len(history), "seed": args.seed, "train_loss": history.loss[-1] if len(history) else None,
        "test_loss": test_loss, "test_accuracy": test_acc, "wall_seconds": wall,
        # (the samples trained on: a validation split is held out of x_tr)
        "samples_per_second": (sum(h.n_train * len(h) for h in histories) / train_s
                               if train_s > 0 else None),
        "interrupted": history.interrupted, "model": None,
        "augment": None if trainer.augment is None else trainer.augment.to_dict(),
        "tta": tta, "test_accuracy_without_tta": plain_acc,
    }
    if members > 1:
        summary["members"] = members
        summary["member_test_accuracy"] = member_acc
    if args.out and not history.interrupted:  # (a half-trained model replaces nothing)
        # the trainer's summary (optimizer, batch size, l2, l1, ...) and the run's figures
        model.save(args.out, metadata=dict(model.training_summary or {}, **{k: summary[k] for k in (
            "dataset", "epochs", "seed", "test_accuracy", "wall_seconds", "tta")}))
        summary["model"] = os.path.abspath(args.out)
    lines = [f"test accuracy: {test_acc:.2%} ({name}, {len(x_te):,} test images)"]
    if tta:
        lines[0] += (f" with test-time augmentation {tta!r} ({_TTA_WHAT[tta]}); "
                     f"{plain_acc:.2%} without")
    if members > 1:
        lines[0] += (f", a committee of {members}; its members alone "
                     + ", ".join(f"{a:.2%}" for a in member_acc))
    sps = summary["samples_per_second"]
    resumed = any(h.resumed for h in histories)
    lines += [f"wall time: {wall:.1f} s for {len(history)} epochs"
              f"{f' x {members} members' if members > 1 else ''}"
              + (f" ({sps:,.0f} samples/s)" if sps else "")
              + (f"; resumed: its epochs trained in {train_s:.1f} s in all"
                 if resumed else "")]
    if args.resume and not resumed:
        print(f"digitcore train: --resume: {args.checkpoint} held no checkpoint, so the run "
              "started from its first epoch", file=sys.stderr)
    if args.out and not history.interrupted:
        lines.append(f"model saved to {summary['model']}")
    _emit(args, summary, lines)
    if history.interrupted:
        saved = f": no model saved to {args.out}" if args.out else ""
        print(f"digitcore train: interrupted after {len(history)} epochs{saved}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _model_tta(model, tta, name):
    """--tta, else the test-time augmentation ``model`` was trained to be scored with."""
    from digitcore.augment import model_tta

    try:
        return model_tta(model, tta)
    except ValueError as exc:  # (a file's recorded tta that this version does not know)
        raise UsageError(f"{name}: {exc}") from None


def _missing_dirs(path):
    """The folders os.makedirs(path) would create, deepest first."""
    out, p = [], os.path.abspath(path)
    while not os.path.exists(p):
        out.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return out


def cmd_evaluate(args):
    made = _missing_dirs(args.plots) if args.plots else []
    try:
        return _evaluate(args)
    except BaseException:
        # (a failed evaluate leaves no --plots folder of its own making, parents included)
        for folder in made:
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def _evaluate(args):
    from digitcore import metrics
    from digitcore.modelio import load_model

    if args.plots:  # (before the evaluation, not after it)
        from importlib.util import find_spec

        if find_spec("matplotlib") is None:
            raise UsageError("--plots needs matplotlib: pip install 'digitcore[plot]'")
        if os.path.exists(args.plots) and not os.path.isdir(args.plots):
            raise UsageError(f"--plots {args.plots}: it is a file; --plots takes a directory "
                             "(made if missing) to write the PNG files into")
        try:
            os.makedirs(args.plots, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--plots {args.plots}: cannot make that directory "
                             f"({exc.strerror or exc})") from None
    net = load_model(args.model)
    name, _, (x_te, y_te) = _load_data(args.dataset, args.data_dir, verify=args.verify,
                                       test_only=True)
    if x_te[0].size != net.n_features:
        raise UsageError(f"{args.model} expects {net.n_features} features, the {name} images "
                         f"have {x_te[0].size}")
    if len(y_te) and int(y_te.max()) >= net.n_classes:  # (its matrix would leave them out)
        raise UsageError(f"{args.model} answers {net.n_classes} classes (0-"
                         f"{net.n_classes - 1}), the {name} labels go up to {int(y_te.max())}")
    tta = _model_tta(net, args.tta, args.model)
    proba = net.predict_proba(x_te, tta=tta)
    pred = proba.argmax(axis=1)
    acc = metrics.accuracy(y_te, pred)
    cm = metrics.confusion_matrix(y_te, pred, labels=list(range(net.n_classes)))
    summary = {"model": args.model, "dataset": name, "n_test": int(len(x_te)), "accuracy": acc,
               "tta": tta,
               "report": metrics.classification_report(y_te, pred, output_dict=True, digits=4),
               "confusion_matrix": cm.tolist(), "plots": []}
    if args.plots:
        from digitcore import plots

        os.makedirs(args.plots, exist_ok=True)
        paths = {"confusion_matrix.png": lambda p: plots.plot_confusion_matrix(cm, path=p),
                 "mistakes.png": lambda p: plots.plot_mistakes(x_te, y_te, proba, 25, path=p),
                 "first_layer.png": lambda p: plots.plot_first_layer(
                     getattr(net, "members", [net])[0], path=p,
                     image_shape=x_te.shape[1:] if x_te.ndim == 3 else None)}
        for fname, draw in paths.items():
            target = os.path.join(args.plots, fname)
            draw(target)
            summary["plots"].append(target)
    what = f", test-time augmentation {tta!r} ({_TTA_WHAT[tta]})" if tta else ""
    lines = [f"accuracy: {acc:.2%} on {name} ({len(x_te):,} test images{what})", "",
             metrics.classification_report(y_te, pred, digits=4), "confusion matrix:",
             *("  " + " ".join(f"{v:5d}" for v in row) for row in cm)]
    lines += [f"plot: {p}" for p in summary["plots"]]
    _emit(args, summary, lines)
    return 0


def _looks_like_model(path):
    """A .safetensors name, or a file that starts as one (8-byte header length, then '{'):
    no picture format starts that way."""
    if str(path).lower().endswith(".safetensors"):
        return True
    if not os.path.isfile(path):
        # only a regular file is peeked at: a pipe (`predict /dev/stdin`, `<(...)`, a
        # FIFO) would lose the bytes read here, or block when opened a second time
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") < 1 << 24 \
        and head[8:] == b"{"


def cmd_predict(args):
    """Read each picture; one that cannot be read (no such file, not an image, no digit in
    it) is reported on its own and the others are still read. Exit status 1 if any failed.
    Without a model, the bundled pretrained one reads them."""
    # Pillow warns (two lines naming its own source) of a picture past 89M pixels when it
    # opens it; imaging then refuses it (past MAX_PIXELS), which the picture's line says
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
    import numpy as np

    from digitcore.errors import NoDigitError
    from digitcore.modelio import load_model

    model, images = args.model, list(args.paths)
    if model is None and _looks_like_model(images[0]):
        model, images = images[0], images[1:]
    if not images:
        raise UsageError(f"no IMAGE given after the model {model}")
    late = [p for p in images if _looks_like_model(p)]
    if late:  # (read as a picture, it failed, and another model read the rest)
        raise UsageError(f"{late[0]} is a model file, given after an image: give the model "
                         f"first (digitcore predict MODEL IMAGE...) or as --model "
                         f"{late[0]}")
    if model is None:
        from digitcore.pretrained import load_pretrained

        net = load_pretrained()
    else:
        net = load_model(model)
    from digitcore.imaging import FIELD

    if net.n_features != FIELD * FIELD:  # (one error, not Network.predict_image's per picture)
        raise UsageError(f"{model} takes {net.n_features} inputs per sample: predict reads "
                         f"pictures as {FIELD}x{FIELD} = {FIELD * FIELD} pixels")
    tta = _model_tta(net, args.tta, model or "the pretrained model")
    if not args.any_strokes:
        from digitcore.imaging import shape_check_ready

        shape_check_ready()  # a broken installation fails once, not once per picture
    from digitcore._config import _ops

    _ops()  # a bad DIGITCORE_* setting fails once too (it read as each picture's error)
    k = min(args.top_k, net.n_classes)
    results, lines, failed = [], [], 0
    for path in images:
        try:
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path}: no such file")
            digit, proba = net.predict_image(path, reject_non_digits=not args.any_strokes,
                                             tta=tta)
        except (NoDigitError, ValueError, OSError, ImportError) as exc:
            # (ImportError: a JPEG without Pillow, whose message says how to get it)
            failed += 1
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            entry = {"image": path, "error": message}
            if isinstance(exc, NoDigitError):
                entry["reason"] = exc.reason
            results.append(entry)
            print(f"digitcore predict: {message}", file=sys.stderr)
            continue
        # most probable first, ties by the lower digit, as the answer's argmax takes them
        top = np.argsort(-proba, kind="stable")[:k]
        results.append({"image": path, "digit": digit, "confidence": float(proba[digit]),
                        "top": [{"digit": int(d), "probability": float(proba[d])} for d in top]})
        alts = ", ".join(f"{int(d)} ({proba[d]:.1%})" for d in top if d != digit)
        lines.append(f"{path}: {digit} ({proba[digit]:.1%})" + (f"; then {alts}" if alts else ""))
    _emit(args, {"model": model or "pretrained", "tta": tta, "predictions": results,
                 "failed": failed}, lines)
    return 1 if failed else 0


def cmd_info(args):
    from digitcore.modelio import read_model_info

    info = read_model_info(args.model)
    if args.json:
        print(_json_text(info, default=str))
        return 0
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k2, v2 in value.items():
                print(f"  {k2}: {v2}")
        else:
            print(f"{key}: {value}")
    return 0


def cmd_export(args):
    from digitcore.modelio import load_model
    from digitcore.onnxio import OPSET

    target = writable_target(args.out)
    if os.path.exists(target) and os.path.exists(args.model) \
            and os.path.samefile(target, args.model):
        raise UsageError(f"{args.out} is the model file itself: give the ONNX file another "
                         "name")
    net = load_model(args.model)  # a Network or a Committee (its members averaged)
    unknown = None
    try:  # (asked before writing: the note must not fail after the file is written)
        tta = _model_tta(net, None, args.model)
    except UsageError as exc:  # a test-time augmentation this version does not know
        tta, unknown = None, exc
    path = net.to_onnx(args.out, input_dtype=args.input_dtype)
    print(f"wrote {path}: {net!r}, ONNX opset {OPSET}, input 'pixels' {args.input_dtype} "
          f"(N, {net.n_features}), output 'probabilities' float32 (N, {net.n_classes})")
    if unknown is not None:
        print(f"note: {unknown}: digitcore predict, evaluate and serve refuse the file "
              f"unless given --tta none; the ONNX graph reads each image once, as "
              f"predict_proba(x) does", file=sys.stderr)
    if tta is not None:  # (the graph computes one view: its answers are predict_proba's)
        print(f"note: {args.model} is read with test-time augmentation {tta!r} by digitcore "
              f"predict, evaluate and serve; the ONNX graph reads each image once, as "
              f"predict_proba(x) does, so its probabilities differ a little from theirs",
              file=sys.stderr)
    return 0


def cmd_bench(args):
    import numpy as np

    import digitcore
    from digitcore import ops

    if args.threads:
        _set_threads(args.threads)
    rng = np.random.default_rng(0)
    m, k, n = 512, 784, 512
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    ops.gemm(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.5:
        ops.gemm(a, b)
        reps += 1
    gflops = 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9
    x = rng.integers(0, 256, size=(20000, 784), dtype=np.uint8)
    y = rng.integers(0, 10, size=20000)
    net = digitcore.Network([784, 128, 10], seed=0)
    trainer = digitcore.Trainer(net, optimizer="sgd", lr=0.01, epochs=1, seed=0, verbose=0)
    trainer.fit(x[:2000], y[:2000])
    t0 = time.perf_counter()
    trainer.fit(x, y)
    sps = len(x) / (time.perf_counter() - t0)
    summary = {"kernel": digitcore.kernel_path(), "threads": digitcore.get_num_threads(),
               "gemm_gflops": gflops, "gemm_shape": [m, k, n],
               "train_samples_per_second": sps, "train_network": "784-128-10 batch 128"}
    _emit(args, summary, [
        f"kernel {summary['kernel']}, {summary['threads']} threads",
        f"GEMM {m}x{k}x{n}: {gflops:.1f} GFLOP/s",
        f"training 784-128-10, batch 128: {sps:,.0f} samples/s"])
    return 0


def cmd_serve(args):
    try:
        from digitcore.serve import serve
    except ImportError:
        raise UsageError("digitcore serve is not available in this build") from None
    return serve(args.model, host=args.host, port=args.port, open_browser=args.open,
                 debug=args.debug, tta=args.tta, allowed_hosts=args.allow_host)


def cmd_config(args):
    import digitcore

    digitcore.show_config()
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "info": cmd_info, "export": cmd_export, "bench": cmd_bench, "serve": cmd_serve, "config": cmd_config}


def main(argv=None):
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # pictures after an option (predict MODEL --top-k 2 IMAGE): argparse gives the
        # positionals only the run before the first option; after a "--" (predict MODEL
        # --json -- -7.png) every word is a picture, even one that starts with "-"
        head, tail = (extra[:extra.index("--")], extra[extra.index("--") + 1:]) \
            if "--" in extra else (extra, [])
        if args.command == "predict" and not any(e.startswith("-") for e in head):
            args.paths += head + tail
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:  # (a script's `digitcore && ...` must not take it for a run)
        parser.print_help(sys.stderr)
        return 2
    from digitcore.errors import DigitcoreError

    try:  # a file name that is not UTF-8 is printed as its own bytes, not an error
        sys.stdout.reconfigure(errors="surrogateescape")
    except (AttributeError, ValueError):  # (a stream replaced by one without it)
        pass
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # (`digitcore info m.safetensors | head -1`): nothing to say
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # (no file descriptor behind the stream)
            pass
        return 1
    except KeyboardInterrupt:
        print("digitcore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, DigitcoreError, ValueError, TypeError, OSError, ImportError,
            MemoryError, FloatingPointError) as exc:  # (MemoryError: e.g. --hidden 100000000;
        # FloatingPointError: a model whose output overflows or is NaN)
        if args.debug:
            raise
        msg = _one_line(str(exc)) or type(exc).__name__
        print(f"digitcore {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
