"""Every CLI command end to end in a subprocess, including error paths and exit codes."""

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

import digitcore


def run(*args, cwd=None, env=None):
    full_env = dict(os.environ, DIGITCORE_NUM_THREADS="2", **(env or {}))
    r = subprocess.run([sys.executable, "-m", "digitcore", *map(str, args)], capture_output=True,
                       text=True, cwd=cwd, env=full_env, timeout=600)
    return r


def assert_one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mini.safetensors"
    r = run("train", "--dataset", "mnist-mini", "--hidden", "64", "--epochs", "3", "--seed", "1",
            "--out", path, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["model"] == str(path)
    return path, summary


def test_train_json_summary(model):
    _, s = model
    assert s["dataset"] == "mnist-mini" and s["n_train"] == 6000 and s["n_test"] == 1000
    assert s["architecture"] == [784, 64, 10] and s["epochs"] == 3
    assert 0.85 < s["test_accuracy"] <= 1.0
    assert s["wall_seconds"] > 0 and s["samples_per_second"] > 0


def test_train_default_is_the_main_job(tmp_path):
    """No arguments: offline, bundled subset when full MNIST is absent, prints accuracy."""
    # (an empty data dir and cache: full MNIST is absent, whatever this machine has)
    r = run("train", cwd=tmp_path, env={"DIGITCORE_DATA": str(tmp_path),
                                        "DIGITCORE_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    assert "test accuracy:" in r.stdout and "mnist-mini" in r.stdout, r.stdout
    assert "mnist-mini" in r.stderr  # the one-line notice about the fallback
    acc = float(r.stdout.split("test accuracy:")[1].split("%")[0])
    assert acc >= 94.0


def test_train_progress_and_options(tmp_path):
    r = run("train", "--dataset", "mnist-mini", "--hidden", "32,16", "--activation", "tanh",
            "--optimizer", "nesterov", "--lr", "0.05", "--epochs", "2", "--batch-size", "64",
            "--dropout", "0.1", "--l2", "1e-4", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "Epoch 1/2" in r.stderr and "Epoch 2/2" in r.stderr
    assert "784-32-16-10" in r.stderr


def test_info(model):
    path, _ = model
    r = run("info", path)
    assert r.returncode == 0, r.stderr
    assert "784-64-10" in r.stdout and "n_params" in r.stdout
    r = run("info", path, "--json")
    info = json.loads(r.stdout)
    assert info["layer_sizes"] == [784, 64, 10]


def test_info_json_is_strict_json_when_the_metadata_holds_nan(tmp_path):
    # json.dumps wrote NaN and Infinity, which JSON has not (jq and JavaScript refuse them)
    import digitcore

    digitcore.Network([4, 3], seed=0).save(
        tmp_path / "n.safetensors", metadata={"note": "kept", "loss": [1.5, float("nan")],
                                              "best": float("inf")})
    r = run("info", tmp_path / "n.safetensors", "--json")
    assert r.returncode == 0, r.stderr

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    training = json.loads(r.stdout, parse_constant=refuse)["metadata"]["training"]
    assert training == {"note": "kept", "loss": [1.5, None], "best": None}


def test_evaluate(model, tmp_path):
    path, summary = model
    r = run("evaluate", path, "--dataset", "mnist-mini", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert np.array(out["confusion_matrix"]).sum() == 1000
    r = run("evaluate", path, "--dataset", "mnist-mini")
    assert "precision" in r.stdout and "confusion matrix" in r.stdout


def test_evaluate_plots(model, tmp_path):
    pytest.importorskip("matplotlib")
    path, _ = model
    r = run("evaluate", path, "--dataset", "mnist-mini", "--plots", tmp_path / "plots")
    assert r.returncode == 0, r.stderr
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["confusion_matrix.png", "first_layer.png", "mistakes.png"]
    assert all((tmp_path / "plots" / p).stat().st_size > 5000 for p in pngs)


def test_predict_images(model, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    import digitcore

    path, _ = model
    (_, _), (xt, yt) = digitcore.load_dataset("mnist-mini")
    net = digitcore.load_model(path)
    files, labels = [], []
    for i in range(40):
        # dark ink on white paper, larger than 28x28: what a user's scan looks like
        img = Image.fromarray(255 - xt[i]).resize((112, 112), Image.BILINEAR)
        f = tmp_path / f"digit{i}.png"
        img.save(f)
        files.append(f)
        labels.append(int(yt[i]))
    r = run("predict", path, *files, "--top-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    preds = json.loads(r.stdout)["predictions"]
    assert len(preds) == 40 and all(len(p["top"]) == 3 for p in preds)
    correct = sum(p["digit"] == y for p, y in zip(preds, labels))
    assert correct >= 32, f"{correct}/40"
    direct = [net.predict_image(f)[0] for f in files[:5]]
    assert direct == [p["digit"] for p in preds[:5]]
    r = run("predict", path, files[0])
    assert r.stdout.startswith(str(files[0]))


@pytest.mark.skipif(not os.path.exists("/dev/stdin") or os.name != "posix",
                    reason="needs /dev/stdin and FIFOs")
def test_predict_reads_a_picture_from_a_pipe(tmp_path):
    """With no model named, the first path is peeked at only when it is a regular file: a
    pipe's bytes would be lost to the peek (or a FIFO's second open would wait forever)."""
    Image = pytest.importorskip("PIL.Image")
    import digitcore

    (_, _), (xt, yt) = digitcore.load_dataset("mnist-mini")
    png = tmp_path / "d.png"
    Image.fromarray(255 - xt[0]).resize((112, 112), Image.BILINEAR).save(png)
    want = run("predict", png, "--json")
    assert want.returncode == 0, want.stderr
    digit = json.loads(want.stdout)["predictions"][0]["digit"]
    env = dict(os.environ, DIGITCORE_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "digitcore", "predict", "/dev/stdin", "--json"],
                       input=png.read_bytes(), capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictions"][0]["digit"] == digit
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    p = subprocess.Popen([sys.executable, "-m", "digitcore", "predict", str(fifo), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    import threading

    def feed():  # blocks until predict opens the FIFO (a daemon: never holds the test)
        with open(fifo, "wb") as f:
            f.write(png.read_bytes())

    threading.Thread(target=feed, daemon=True).start()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert json.loads(out)["predictions"][0]["digit"] == digit


def test_bench_and_config():
    r = run("bench", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["gemm_gflops"] > 0 and out["train_samples_per_second"] > 0
    r = run("config")
    assert r.returncode == 0 and "kernel" in r.stdout


# ---- error paths: one line on stderr, exit status 2 ----------------------------------------

def test_missing_model_file(tmp_path):
    assert_one_line_error(run("info", tmp_path / "nope.safetensors"), "nope.safetensors")
    assert_one_line_error(run("evaluate", tmp_path / "nope.safetensors"))


def test_malformed_model_file(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    assert_one_line_error(run("info", bad), "bad.safetensors")
    r = run("info", bad, "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_predict_reports_each_unreadable_picture_and_reads_the_rest(model, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    import digitcore

    path, _ = model
    (_, _), (xt, _) = digitcore.load_dataset("mnist-mini")
    good = tmp_path / "good.png"
    Image.fromarray(255 - xt[0]).resize((84, 84)).save(good)
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    missing = tmp_path / "none.png"
    r = run("predict", path, missing, good, blank, junk)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stdout.startswith(str(good)) and len(r.stdout.strip().splitlines()) == 1
    errs = r.stderr.strip().splitlines()
    assert len(errs) == 3 and all(ln.startswith("digitcore predict: ") for ln in errs), errs
    assert [str(p) in ln for p, ln in zip((missing, blank, junk), errs)] == [True] * 3, errs
    r = run("predict", path, missing, good, blank, "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["failed"] == 2 and [("error" in p) for p in out["predictions"]] == [True, False, True]
    assert out["predictions"][2]["reason"] == "blank"
    assert out["predictions"][1]["digit"] == net_digit(path, good)
    assert run("predict", path, good).returncode == 0


def test_predict_names_a_drawing_that_is_not_a_digit(model, tmp_path):
    """A plus sign drawn on paper: refused with its reason, not read as a 4."""
    Image = pytest.importorskip("PIL.Image")
    from photo_digits import non_digit_strokes

    path, _ = model
    plus = tmp_path / "plus.png"
    Image.fromarray(non_digit_strokes(seed=3, shapes=["plus"], clean=1.0)[0][1]).save(plus)
    r = run("predict", path, plus, "--json")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    (entry,) = json.loads(r.stdout)["predictions"]
    assert entry["reason"] == "not_a_digit" and "do not look like a digit" in entry["error"]
    assert str(plus) in entry["error"]
    # a model of other strokes asks for no shape check: the plus is read
    r = run("predict", path, plus, "--any-strokes", "--json")
    assert r.returncode == 0, r.stderr
    (entry,) = json.loads(r.stdout)["predictions"]
    assert 0 <= entry["digit"] <= 9 and "error" not in entry


def net_digit(model_path, image):
    import digitcore
    return digitcore.load_model(model_path).predict_image(image)[0]


def test_download_without_dataset_downloads_mnist_and_says_all_on_one_line(tmp_path):
    # `train --download` trained on mnist-mini without trying; with --dataset mnist, the
    # one-line rule cut its error after "tried:" (the mirrors and the manual install lost)
    env = {"DIGITCORE_CACHE_DIR": str(tmp_path / "cache"),
           "DIGITCORE_MNIST_MIRRORS": "http://127.0.0.1:9/"}  # (the discard port: refused)
    for args in (["train", "--download"], ["train", "--dataset", "mnist", "--download"]):
        r = run(*args, "--epochs", "1", env=env)
        assert_one_line_error(r, "could not download MNIST file", "tried: http://127.0.0.1:9/",
                              "To install MNIST by hand", str(tmp_path / "cache"))
        assert "mnist-mini" not in r.stdout + r.stderr


def test_dataset_without_files_is_an_error_not_a_fallback(tmp_path):
    r = run("train", "--dataset", "mnist", "--data-dir", tmp_path,
            env={"DIGITCORE_CACHE_DIR": str(tmp_path / "cache")})
    assert_one_line_error(r, "MNIST")


@pytest.mark.parametrize("args", [["train", "--hidden", "a,b"], ["train", "--epochs", "0"],
                                  ["train", "--seed", "-1"], ["train", "--hidden", ",,,"],
                                  ["train", "--hidden", "64,"], ["train", "--out", ""],
                                  ["train", "--checkpoint", ""], ["train", "--data-dir", ""],
                                  ["train", "--augment", "rotate=10,rotate=20"],
                                  ["train", "--preset", "nope"], ["nosuchcommand"], []])
def test_bad_arguments_exit_2(args):
    r = run(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    if not args:  # no command: the help, on stderr
        assert "COMMAND" in r.stderr and r.stdout == ""


@pytest.mark.parametrize("where", ["missing_dir", "directory", "device"])
def test_train_refuses_an_unwritable_out_before_training(tmp_path, where):
    # an --out into a missing directory used to train every epoch, then fail naming a
    # hidden temporary file, the model lost
    out = {"missing_dir": tmp_path / "nope" / "m.safetensors", "directory": tmp_path,
           "device": os.devnull}[where]
    if where == "device" and os.name != "posix":
        pytest.skip("POSIX devices")
    r = run("train", "--dataset", "mnist-mini", "--hidden", "8", "--epochs", "50",
            "--out", out)
    assert_one_line_error(r, f"cannot write {out}")
    assert "Epoch" not in r.stdout and "Epoch" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_an_onnx_out_before_training(tmp_path):
    """--out m.onnx wrote a safetensors file under that name (onnxruntime then failed
    with INVALID_PROTOBUF)."""
    r = run("train", "--dataset", "mnist-mini", "--hidden", "8", "--epochs", "50",
            "--out", tmp_path / "m.ONNX")
    assert_one_line_error(r, "not ONNX; save it as .safetensors, then 'digitcore export")
    assert "Epoch" not in r.stdout and list(tmp_path.iterdir()) == []


def test_more_threads_than_cpus_is_warned_of():
    """--threads 999 on 2 CPUs trained ~25x slower without a word."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    for n, warned in ((cpus + 1, True), (1, False)):
        r = run("train", "--dataset", "mnist-mini", "--hidden", "8", "--epochs", "1",
                "--threads", n)
        assert r.returncode == 0, r.stderr
        assert (f"warning: --threads {n} is more than the {cpus} CPUs" in r.stderr) == warned


def test_an_out_path_ending_in_a_slash_names_a_directory(tmp_path, model):
    """realpath drops the slash: `--out newdir/` wrote a file named newdir."""
    for args in (["train", "--dataset", "mnist-mini", "--hidden", "8", "--epochs", "1",
                  "--out", f"{tmp_path / 'newdir'}{os.sep}"],
                 ["export", model[0], f"{tmp_path / 'newdir2'}{os.sep}"]):
        r = run(*args)
        assert_one_line_error(r, "names a directory")
    assert list(tmp_path.iterdir()) == []


def test_export_over_its_own_model_is_refused(tmp_path, model):
    path = tmp_path / "m.safetensors"
    path.write_bytes(model[0].read_bytes())
    for out in (path, tmp_path / "." / "m.safetensors"):
        r = run("export", path, out)
        assert_one_line_error(r, "is the model file itself")
    assert path.read_bytes() == model[0].read_bytes()


def test_interrupted_training_saves_no_model_and_says_so(tmp_path, model, monkeypatch,
                                                         capsys):
    """Ctrl-C ends the trainer's fit with the history so far: the CLI saved that half-
    trained model over --out and exited 0. Now --out is left as it was, exit 130."""
    import digitcore
    from digitcore import cli

    out = tmp_path / "keep.safetensors"
    out.write_bytes(model[0].read_bytes())
    real_fit = digitcore.Trainer.fit

    def stopped_fit(self, *args, **kwargs):  # (as a Ctrl-C in epoch 2 leaves it)
        self.epochs = 1
        history = real_fit(self, *args, **kwargs)
        history.interrupted = True
        return history

    monkeypatch.setattr(digitcore.Trainer, "fit", stopped_fit)
    for members in ("1", "2"):
        code = cli.main(["train", "--dataset", "mnist-mini", "--hidden", "8", "--epochs", "3",
                         "--members", members, "--out", str(out), "--json"])
        assert code == 130
        err = capsys.readouterr().err
        assert "interrupted" in err
        assert ("no model saved" if members == "1" else "no committee saved") in err
        assert out.read_bytes() == model[0].read_bytes()


def test_evaluate_refuses_a_model_of_fewer_classes(tmp_path):
    """A 3-class model on mnist-mini's 10 classes printed a 3x3 matrix of a third of the
    images."""
    d = _own_idx(tmp_path / "own", side=28)
    path = tmp_path / "three.safetensors"
    r = run("train", "--data-dir", d, "--no-verify", "--epochs", "1", "--hidden", "8",
            "--out", path)
    assert r.returncode == 0, r.stderr
    r = run("evaluate", path, "--dataset", "mnist-mini")
    assert_one_line_error(r, "answers 3 classes", "labels go up to 9")


def test_a_data_dir_with_some_of_the_files_names_the_missing_ones(tmp_path, model):
    """A folder with only the test files: evaluate (which reads only those) fell back to
    mnist-mini with a notice and reported its accuracy on that instead; it reads them
    now, and train names the training files it lacks."""
    from digitcore.datasets import FILES

    d = _own_idx(tmp_path / "own", side=28, classes=10)
    for f in FILES[:2]:
        (d / (f + ".gz")).unlink()
    r = run("evaluate", model[0], "--data-dir", d, "--no-verify", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dataset"] == f"IDX files in {d}"
    assert json.loads(r.stdout)["n_test"] == 60 and "mnist-mini" not in r.stderr
    for args in (["train", "--data-dir", d, "--epochs", "1"],
                 ["train", "--dataset", "mnist", "--data-dir", d, "--epochs", "1"]):
        r = run(*args)
        assert_one_line_error(r, f"lacks {FILES[0]}, {FILES[1]}")
        assert "mnist-mini" not in r.stdout

    # a complete set in the folder (or its mnist/ subfolder) is read, a stray file beside
    # it or in the other notwithstanding
    from digitcore.datasets import incomplete_dataset_files

    full = _own_idx(tmp_path / "full")
    (full / "mnist").mkdir()
    (full / "mnist" / (FILES[0] + ".gz")).write_bytes(b"")
    assert incomplete_dataset_files("mnist", full) is None
    assert incomplete_dataset_files("mnist", d) == (d, list(FILES[:2]))
    (d / (FILES[3] + ".gz")).unlink()  # (a test image file without its labels)
    assert_one_line_error(run("evaluate", model[0], "--data-dir", d, "--no-verify"),
                          f"lacks {FILES[3]}")


def test_predict_hides_pillow_s_bomb_warning(monkeypatch, tmp_path, model, capsys):
    """Pillow warns (two lines naming its source) of a picture past 89M pixels and still
    reads it: `digitcore predict` printed that before its answer."""
    import warnings

    Image = pytest.importorskip("PIL.Image")
    from digitcore import cli

    path = tmp_path / "big.png"
    Image.fromarray(np.full((40, 40), 200, np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # (1,600 pixels: warned of)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cli.main(["predict", str(model[0]), str(path)])
    assert not [w for w in seen if "exceeds limit" in str(w.message)]
    assert "big.png" in capsys.readouterr().err  # (a blank picture: its line says so)


def test_samples_per_second_counts_the_samples_trained_on(monkeypatch, capsys):
    """With --validation-fraction f, the speed counted the held-out images too."""
    import digitcore
    from digitcore import cli

    real_fit = digitcore.Trainer.fit

    def timed_fit(self, *args, **kwargs):  # (each epoch said to take one second)
        history = real_fit(self, *args, **kwargs)
        history.history["seconds"] = [1.0] * len(history)
        return history

    monkeypatch.setattr(digitcore.Trainer, "fit", timed_fit)
    assert cli.main(["train", "--dataset", "mnist-mini", "--hidden", "8", "--epochs", "2",
                     "--validation-fraction", "0.25", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n_train"] == 6000 and s["samples_per_second"] == 4500


@pytest.mark.skipif(os.name != "posix", reason="POSIX pipes and file names")
def test_a_closed_pipe_and_a_file_name_not_in_utf8(tmp_path, model):
    # `info m | head -1` printed "error: [Errno 32] Broken pipe"; a file name that is
    # not UTF-8 failed every line on a strict UTF-8 stdout
    if sys.platform != "darwin":  # (APFS refuses file names that are not UTF-8)
        odd = os.path.join(os.fsencode(tmp_path), b"n\xffx.safetensors")
        with open(odd, "wb") as f:
            f.write(model[0].read_bytes())
        env = dict(os.environ, DIGITCORE_NUM_THREADS="1", PYTHONIOENCODING="utf-8:strict")
        r = subprocess.run([sys.executable, "-m", "digitcore", "info", os.fsdecode(odd)],
                           capture_output=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        assert b"n\xffx.safetensors" in r.stdout
    r = subprocess.run(f"{shlex.quote(sys.executable)} -m digitcore info "
                       f"{shlex.quote(str(model[0]))} --json | head -c 1",
                       shell=True, capture_output=True, text=True, timeout=300)
    assert "Broken pipe" not in r.stderr and "Traceback" not in r.stderr


def test_evaluate_plots_without_matplotlib_fails_before_the_evaluation(tmp_path, model):
    # it evaluated, made the directory, and only then said matplotlib was missing
    code = ("import sys; sys.modules['matplotlib'] = None; from digitcore import cli; "
            f"sys.exit(cli.main(['evaluate', {str(model[0])!r}, '--dataset', 'mnist-mini', "
            f"'--plots', {str(tmp_path / 'plots')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert_one_line_error(r, "needs matplotlib")
    assert "accuracy" not in r.stdout and not (tmp_path / "plots").exists()


def test_export_and_evaluate_plots_name_a_bad_path(tmp_path, model):
    model, _ = model
    r = run("export", model, tmp_path / "nope" / "m.onnx")
    assert_one_line_error(r, f"cannot write {tmp_path / 'nope' / 'm.onnx'}: there is no "
                             "directory")
    afile = tmp_path / "plots.png"
    afile.write_bytes(b"keep")
    r = run("evaluate", model, "--dataset", "mnist-mini", "--plots", afile)
    assert_one_line_error(r, "--plots", "takes a directory")
    assert afile.read_bytes() == b"keep"


def test_predict_takes_pictures_after_options(tmp_path, model):
    # `predict MODEL --top-k 2 IMAGE` failed: "unrecognized arguments: IMAGE"
    from PIL import Image

    import digitcore

    path, _ = model
    (x, _), _ = digitcore.load_dataset("mnist-mini")
    pics = [tmp_path / f"{i}.png" for i in range(3)]
    for i, p in enumerate(pics):
        Image.fromarray(255 - x[i]).save(p)
    r = run("predict", path, "--top-k", "2", pics[0], "--json", pics[1], pics[2])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [e["image"] for e in out["predictions"]] == [str(p) for p in pics]
    assert all(len(e["top"]) == 2 for e in out["predictions"])
    r = run("predict", path, pics[0], "--no-such-option")
    assert r.returncode == 2 and "unrecognized arguments: --no-such-option" in r.stderr
    # "--" after an option ends them: what follows is pictures, a "-7.png" too (it was
    # refused as "unrecognized arguments: -- ...")
    dash = tmp_path / "-7.png"
    dash.write_bytes(pics[2].read_bytes())
    r = run("predict", path, "--json", "--", pics[0], "-7.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [e["image"] for e in json.loads(r.stdout)["predictions"]] == [str(pics[0]), "-7.png"]
    r = run("predict", path, "--bad", "--", pics[0])
    assert r.returncode == 2 and "unrecognized arguments: --bad" in r.stderr
    # the model after a picture was read as a picture (an error), and the pretrained
    # model read the rest without a word
    r = run("predict", pics[0], path)
    assert r.returncode == 2 and f"{path} is a model file, given after an image" in r.stderr
    assert r.stdout == ""


def test_predict_with_a_model_of_other_inputs_is_one_error(tmp_path):
    # each picture used to fail alone: "x has 784 features per sample, the network
    # expects 16"
    import digitcore

    model = tmp_path / "tiny.safetensors"
    digitcore.Network([16, 4], seed=0).save(model)
    r = run("predict", model, tmp_path / "a.png", tmp_path / "b.png")
    assert_one_line_error(r, "takes 16 inputs per sample", "28x28 = 784 pixels")


def test_a_network_too_big_for_memory_is_one_line():
    # a MemoryError printed NumPy's traceback
    r = run("train", "--dataset", "mnist-mini", "--hidden", "1000000000000", "--epochs", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "Unable to allocate" in r.stderr.strip().splitlines()[-1]


def test_a_bad_env_setting_is_not_blamed_on_threads():
    # --threads' check loaded the compiled module, whose environment check then failed
    # inside argparse: "argument --threads: invalid _threads value: '2'"
    env = dict(os.environ, DIGITCORE_NUM_THREADS="2000")
    r = subprocess.run([sys.executable, "-m", "digitcore", "bench", "--threads", "2"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert_one_line_error(r, "DIGITCORE_NUM_THREADS must be in [1, 1024], got 2000")


def test_predict_reports_a_bad_env_setting_once(tmp_path, model):
    # it read as an error of each picture: "a.png: DIGITCORE_NUM_THREADS must be ..." per file
    Image = pytest.importorskip("PIL.Image")
    import digitcore

    (_, _), (xt, _) = digitcore.load_dataset("mnist-mini")
    files = []
    for i in range(2):
        files.append(tmp_path / f"d{i}.png")
        Image.fromarray(255 - xt[i]).save(files[-1])
    env = dict(os.environ, DIGITCORE_NUM_THREADS="abc")
    r = subprocess.run([sys.executable, "-m", "digitcore", "predict", model[0], *map(str, files)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert_one_line_error(r, "DIGITCORE_NUM_THREADS must be a positive integer, got 'abc'")


def test_an_overflowing_model_is_one_line(tmp_path):
    # FloatingPointError (predict_proba, predict, evaluate) printed a traceback
    import digitcore

    model = tmp_path / "big.safetensors"
    net = digitcore.Network([784, 8, 10], seed=0)
    for w in net.weights:
        w[...] = 3e38
    net.save(model)
    r = run("evaluate", model, "--dataset", "mnist-mini")
    assert_one_line_error(r, "overflowed float32")


@pytest.mark.parametrize("command", ["train", "bench"])
def test_threads_past_the_cap_is_a_usage_error(command):
    # (--threads 100000 crashed training in libgomp, SIGSEGV)
    r = run(command, "--threads", "100000")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "at most 1024 threads, got 100000" in r.stderr


def test_python_dash_m_matches_console_script_help():
    r = run("--help")
    assert r.returncode == 0 and "train" in r.stdout


# ---------------------------------------------------------------------------
# a user's own IDX files (not the official checksums): --no-verify

def _own_idx(directory, n_train=300, n_test=60, side=12, classes=3, seed=0, width=None):
    """A learnable dataset in the MNIST file layout: class k lights up band k of the image
    (side x side, or side x width)."""
    from digitcore.datasets import FILES
    from digitcore.idx import write_idx

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    band = side // classes
    for images, labels, n in ((FILES[0], FILES[1], n_train), (FILES[2], FILES[3], n_test)):
        y = (np.arange(n) % classes).astype(np.uint8)
        x = rng.integers(0, 60, (n, side, side if width is None else width), dtype=np.uint8)
        for i, k in enumerate(y):
            x[i, k * band:(k + 1) * band] += 150
        write_idx(directory / (images + ".gz"), x)
        write_idx(directory / (labels + ".gz"), y)
    return directory


def test_own_idx_files_need_no_verify(tmp_path):
    d = _own_idx(tmp_path / "own")
    r = run("train", "--data-dir", d, "--epochs", "2", "--hidden", "16")
    assert_one_line_error(r, "train-images-idx3-ubyte.gz", "--no-verify")
    r = run("train", "--data-dir", d, "--no-verify", "--epochs", "4", "--hidden", "16",
            "--out", tmp_path / "own.safetensors", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["dataset"] == f"IDX files in {d}"
    assert s["n_train"] == 300 and s["n_test"] == 60
    assert s["architecture"] == [144, 16, 3]
    assert s["test_accuracy"] > 0.9  # it learned the user's data, not MNIST
    # the small-data deformation is for 28x28 digits: 12x12 images train as given
    assert s["augment"] is None
    r = run("evaluate", tmp_path / "own.safetensors", "--data-dir", d, "--no-verify", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] == pytest.approx(s["test_accuracy"])
    # with an explicit --dataset too
    r = run("train", "--dataset", "mnist", "--data-dir", d, "--no-verify", "--epochs", "1",
            "--hidden", "8", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["architecture"] == [144, 8, 3]


def test_augment_none_also_drops_the_presets_test_time_shifts(tmp_path):
    """`--preset augmented --augment none` scored, and recorded, the preset's test-time
    shifts, which are for networks trained on deformed digits."""
    common = ("train", "--dataset", "mnist-mini", "--preset", "augmented", "--epochs", "1",
              "--hidden", "8", "--json")
    for extra, tta in ((("--augment", "none"), None), (("--augment", "none", "--tta", "shift"),
                                                      "shift")):
        r = run(*common, *extra)
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        assert (s["augment"], s["tta"]) == (None, tta)


def test_no_verify_errors_name_the_problem(tmp_path):
    from digitcore.datasets import FILES
    from digitcore.idx import write_idx

    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run("train", "--data-dir", empty, "--no-verify"),
                          "no IDX files found", "--data-dir")
    assert_one_line_error(run("train", "--data-dir", tmp_path / "nope", "--no-verify"),
                          "nope", "no such directory")
    # truncated image file
    d = _own_idx(tmp_path / "trunc")
    p = d / (FILES[0] + ".gz")
    import gzip

    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw[:len(raw) // 2]))
    assert_one_line_error(run("train", "--data-dir", d, "--no-verify"), FILES[0])
    # not IDX at all
    d = _own_idx(tmp_path / "junk")
    (d / (FILES[1] + ".gz")).unlink()
    (d / FILES[1]).write_bytes(b"label,image\n1,2\n")
    assert_one_line_error(run("train", "--data-dir", d, "--no-verify"), FILES[1])
    # label count differs from image count
    d = _own_idx(tmp_path / "count")
    write_idx(d / (FILES[3] + ".gz"), np.zeros(59, dtype=np.uint8))
    assert_one_line_error(run("train", "--data-dir", d, "--no-verify"), "59 labels", "60 images")
    # test images of another size than the training images
    d = _own_idx(tmp_path / "size")
    write_idx(d / (FILES[2] + ".gz"), np.zeros((60, 10, 12), dtype=np.uint8))
    assert_one_line_error(run("train", "--data-dir", d, "--no-verify"), "(10, 12)", "same size")
    # labels stored as images
    d = _own_idx(tmp_path / "labels")
    write_idx(d / (FILES[1] + ".gz"), np.zeros((300, 2, 2), dtype=np.uint8))
    assert_one_line_error(run("train", "--data-dir", d, "--no-verify"), FILES[1], "labels")


def test_predict_without_pillow_reads_pngs_and_reports_other_files(tmp_path, hide_pillow,
                                                                    capsys):
    """A JPEG without Pillow gets one line saying how to get Pillow; the PNG after it is
    still read (by digitcore.png), and the exit status is 1."""
    from digitcore.cli import main
    from digitcore.datasets import load_mnist_mini
    from digitcore.png import encode_png

    _, (xt, _) = load_mnist_mini()
    (tmp_path / "d.png").write_bytes(encode_png(255 - xt[0]))
    (tmp_path / "d.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    hide_pillow()
    assert main(["predict", str(tmp_path / "d.jpg"), str(tmp_path / "d.png")]) == 1
    out, err = capsys.readouterr()
    assert "d.jpg" in err and "digitcore[image]" in err and "Traceback" not in err
    assert "d.png" in out


def test_evaluate_plots_for_images_that_are_not_square(tmp_path):
    """--no-verify trains on any image size; evaluate --plots drew the first layer as a
    square and failed after writing the other plots, printing no accuracy."""
    pytest.importorskip("matplotlib")
    d = _own_idx(tmp_path / "own", side=12, width=9)
    r = run("train", "--data-dir", d, "--no-verify", "--epochs", "2", "--hidden", "8",
            "--augment", "none", "--out", tmp_path / "m.safetensors")
    assert r.returncode == 0, r.stderr
    r = run("evaluate", tmp_path / "m.safetensors", "--data-dir", d, "--no-verify", "--json",
            "--plots", tmp_path / "plots")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert len(s["plots"]) == 3 and all(os.path.getsize(p) > 1000 for p in s["plots"])
    assert 0 <= s["accuracy"] <= 1


def test_a_failed_evaluate_leaves_no_plots_folder_of_its_making(tmp_path):
    pytest.importorskip("matplotlib")
    r = run("evaluate", tmp_path / "missing.safetensors", "--plots", tmp_path / "p")
    assert r.returncode == 2 and not (tmp_path / "p").exists(), r.stderr
    (tmp_path / "mine").mkdir()  # one that was there stays
    run("evaluate", tmp_path / "missing.safetensors", "--plots", tmp_path / "mine")
    assert (tmp_path / "mine").is_dir()
    # the parents it made go too (pa and pa/b were left behind)
    r = run("evaluate", tmp_path / "missing.safetensors", "--plots", tmp_path / "pa" / "b" / "c")
    assert r.returncode == 2 and not (tmp_path / "pa").exists(), r.stderr
    r = run("evaluate", tmp_path / "missing.safetensors", "--plots", tmp_path / "mine" / "b")
    assert (tmp_path / "mine").is_dir() and not (tmp_path / "mine" / "b").exists()


def test_evaluate_plots_under_a_file_is_refused_before_evaluating(tmp_path, model):
    (tmp_path / "a_file").write_text("x")
    assert_one_line_error(run("evaluate", model[0], "--plots", tmp_path / "a_file" / "sub"),
                          "--plots", "cannot make that directory")


def test_a_named_data_dir_without_the_files_is_an_error_not_a_fallback(tmp_path, model):
    """The search went on from an empty --data-dir to $DIGITCORE_DATA, the cache or the
    bundled subset, without a word (evaluate reported 'mnist-mini')."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"DIGITCORE_CACHE_DIR": str(tmp_path / "cache")}
    for args in (["evaluate", model[0], "--data-dir", empty],
                 ["train", "--data-dir", empty, "--epochs", "1"]):
        assert_one_line_error(run(*args, env=env), f"--data-dir {empty}", "no MNIST files")
    for args in (["train", "--dataset", "mnist-mini", "--data-dir", empty],
                 ["train", "--dataset", "mnist-mini", "--download"]):
        assert_one_line_error(run(*args, env=env), "mnist-mini is bundled")


def test_predict_top_k_ranks_ties_as_the_answer_does(tmp_path):
    """A tie: the answer is the lowest digit (argmax), and --top-k listed the highest
    first (its JSON's top[0] was not the answer, and its text repeated one digit)."""
    from digitcore.png import encode_png

    (_, _), (xt, _) = digitcore.load_dataset("mnist-mini")
    (tmp_path / "d.png").write_bytes(encode_png(xt[0]))
    net = digitcore.Network([784, 10], seed=0)
    net.flat_parameters[:] = 0  # every class 0.1
    net.save(tmp_path / "zero.safetensors")
    r = run("predict", tmp_path / "zero.safetensors", tmp_path / "d.png", "--top-k", "3",
            "--json", "--any-strokes")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)["predictions"][0]
    assert p["digit"] == 0 and [t["digit"] for t in p["top"]] == [0, 1, 2]
    r = run("predict", tmp_path / "zero.safetensors", tmp_path / "d.png", "--top-k", "3",
            "--any-strokes")
    assert r.returncode == 0 and "0 (10.0%); then 1 (10.0%), 2 (10.0%)" in r.stdout, r.stdout


def test_a_data_dir_whose_files_are_symlinks_is_read(tmp_path):
    """The folder check compared resolved paths: files symlinked into a shared store
    (a symlink farm, DVC, git-annex) were refused as 'no files there'."""
    store = _own_idx(tmp_path / "store")
    farm = tmp_path / "farm"
    farm.mkdir()
    for f in store.iterdir():
        try:
            (farm / f.name).symlink_to(f)
        except OSError as exc:  # (Windows without the privilege or developer mode)
            pytest.skip(f"cannot create symbolic links here: {exc}")
    r = run("train", "--data-dir", farm, "--no-verify", "--epochs", "1", "--hidden", "8",
            "--augment", "none", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_train"] == 300


def test_small_data_rule_counts_the_images_left_after_the_validation_split(tmp_path):
    """The default preset deforms training sets under 10,000 images: 10,500 with a fifth
    held out leave 8,400 to train on, deformed; the CLI counted the 10,500 before the
    split and trained them plain."""
    d = _own_idx(tmp_path / "own", n_train=10_500, n_test=30, side=28)
    common = ("train", "--data-dir", d, "--no-verify", "--epochs", "1", "--hidden", "4",
              "--json")
    held = json.loads(run(*common, "--validation-fraction", "0.2").stdout)
    assert held["augment"] is not None
    assert json.loads(run(*common).stdout)["augment"] is None
    assert_one_line_error(run(*common, "--validation-fraction", "1.5"),
                          "--validation-fraction must be in (0, 1), got 1.5")
