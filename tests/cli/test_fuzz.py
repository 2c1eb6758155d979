"""Fuzzing through the command's runner: 650 randomly damaged images, YAML configs, run
configs and checkpoint configs. Every command either works (and then writes only finite
numbers) or stops with one `error:` line and exit status 1; none raises past the command."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from tripletlab.cli.main import app
from tripletlab.data import load_mnist
from tripletlab.runs import RunDir

runner = CliRunner()
SEED = 20261130


def _damage(blob: bytes, rng: np.random.Generator) -> bytes:
    """One of: flipped bytes, a cut, bytes inserted, a header overwritten, random bytes."""
    data = bytearray(blob)
    kind = rng.integers(6)
    if kind == 0 and data:  # flip a few bytes anywhere
        for position in rng.integers(0, len(data), size=int(rng.integers(1, 8))):
            data[position] ^= int(rng.integers(1, 256))
    elif kind == 1:  # truncate
        data = data[: int(rng.integers(0, max(len(data), 1)))]
    elif kind == 2:  # insert junk
        position = int(rng.integers(0, len(data) + 1))
        data[position:position] = rng.integers(0, 256, size=int(rng.integers(1, 64))).tobytes()
    elif kind == 3:  # overwrite the start (magic numbers, sizes in headers)
        size = int(rng.integers(1, 32))
        data[:size] = rng.integers(0, 256, size=size).astype(np.uint8).tobytes()
    elif kind == 4:  # random bytes of a random length
        data = bytearray(rng.integers(0, 256, size=int(rng.integers(0, 4096))).astype(np.uint8))
    else:  # duplicate a chunk (repeated chunks, wrong lengths)
        start = int(rng.integers(0, max(len(data), 1)))
        data += data[start : start + int(rng.integers(1, 512))]
    return bytes(data)


def _check(result, output_file=None) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}"
    )
    if result.exit_code == 0:
        if output_file is not None:
            assert np.isfinite(np.load(output_file)).all()
    else:
        assert result.exit_code == 1 and result.output.startswith("error: "), result.output
        assert "Traceback" not in result.output


def _encodings() -> list[bytes]:
    """Valid files to damage: PNG, JPEG, GIF, BMP, TIFF, WebP; grey, colour, 16-bit."""
    digits = load_mnist("test").images[:4]
    blobs = []
    for index, (kind, mode) in enumerate([("PNG", "L"), ("JPEG", "L"), ("GIF", "L"),
                                          ("BMP", "RGB"), ("TIFF", "L"), ("WEBP", "RGB"),
                                          ("PNG", "I;16")]):  # fmt: skip
        image = Image.fromarray(digits[index % 4])
        image = image.convert(mode) if mode != "I;16" else Image.fromarray(
            digits[index % 4].astype(np.uint16) * 257)  # fmt: skip
        buffer = io.BytesIO()
        image.save(buffer, format=kind)
        blobs.append(buffer.getvalue())
    return blobs


@pytest.mark.slow
def test_damaged_images_through_embed(run, tmp_path):
    rng = np.random.default_rng(SEED)
    blobs = _encodings()
    worked = 0
    for case in range(300):
        path = tmp_path / f"case{case}.img"
        path.write_bytes(_damage(blobs[case % len(blobs)], rng))
        out = tmp_path / "vecs.npy"
        out.unlink(missing_ok=True)
        result = runner.invoke(app, ["embed", str(run.path), str(path), "--out", str(out)])
        _check(result, out)
        worked += result.exit_code == 0
    assert 0 < worked < 300  # some damage is harmless (a flipped byte in JPEG data), most not


_VALUES = [None, True, 0, -1, 1, 2.5, 1e309, float("nan"), "1e-3", "ten", "", "[abc]",
           [1, 2], {"a": 1}, "semihard", "cosine", 10**40, "!!python/name:os.system"]  # fmt: skip


def _random_config(rng: np.random.Generator, keys: dict[str, list[str]]) -> str:
    """A YAML config of random sections, keys (known and not) and values (any type)."""
    config: dict = {}
    for _ in range(int(rng.integers(1, 6))):
        section = str(rng.choice([*keys, "phases", "extra"]))
        if section == "phases":
            config["phases"] = [{str(rng.choice(["epochs", "lr", "freeze", "x"])):
                                 _VALUES[int(rng.integers(len(_VALUES)))]}]  # fmt: skip
            continue
        key = str(rng.choice([*keys.get(section, ["k"]), "unknown"]))
        config.setdefault(section, {})[key] = _VALUES[int(rng.integers(len(_VALUES)))]
    text = yaml.safe_dump(config, sort_keys=False)
    return _damage(text.encode(), rng).decode("latin1") if rng.random() < 0.5 else text


@pytest.mark.slow
def test_damaged_yaml_configs_through_train(tmp_path):
    from tripletlab.config import RunConfig

    keys = {section: list(values) for section, values in RunConfig().to_dict().items()
            if isinstance(values, dict)}  # fmt: skip
    rng = np.random.default_rng(SEED + 1)
    path = tmp_path / "config.yaml"
    for _ in range(250):
        path.write_text(_random_config(rng, keys), encoding="latin1")
        result = runner.invoke(app, ["train", "--config", str(path), "--dry-run"])
        _check(result)
        if result.exit_code == 0:  # what passed is a config that builds again
            assert RunConfig.from_dict(yaml.safe_load(result.output)) is not None


@pytest.mark.slow
def test_damaged_run_files_through_the_commands(run, tmp_path):
    """A run's config.yaml, and its checkpoint's config.json and index.json, damaged."""
    rng = np.random.default_rng(SEED + 2)
    copy = RunDir(tmp_path / "copy")
    shutil.copytree(run.path, copy.path)
    checkpoint = copy.checkpoint()
    originals = {name: path.read_bytes() for name, path in [
        ("config", copy.config_file), ("checkpoint", checkpoint / "config.json"),
        ("index", copy.checkpoints / "index.json")]}  # fmt: skip
    targets = {"config": copy.config_file, "checkpoint": checkpoint / "config.json",
               "index": copy.checkpoints / "index.json"}  # fmt: skip
    for case in range(100):
        name = ("config", "checkpoint", "index")[case % 3]
        for key, path in targets.items():
            path.write_bytes(originals[key])
        blob = originals[name]
        if name != "config" and rng.random() < 0.5:  # valid JSON, wrong content
            value = json.loads(blob)
            value[str(rng.choice(list(value)))] = _VALUES[int(rng.integers(len(_VALUES)))]
            blob = json.dumps(value, default=str).encode()
        else:
            blob = _damage(blob, rng)
        targets[name].write_bytes(blob)
        command = ["export", "projector", str(copy.path), "--limit", "5"] if name == "config" \
            else ["summary", str(copy.path)]  # fmt: skip
        _check(runner.invoke(app, command))


class _StopError(Exception):
    pass


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> RunDir:
    """A tiny image-folder run stopped after the first of its two epochs."""
    from tripletlab.config import RunConfig, merge
    from tripletlab.training import Callback, train_run

    class Stop(Callback):
        def on_epoch_end(self, epoch, logs):
            raise _StopError

    root = tmp_path_factory.mktemp("fuzzstate")
    rng = np.random.default_rng(0)
    for label in range(3):
        (root / "shapes" / f"c{label}").mkdir(parents=True)
        for i in range(20):
            pixels = np.clip(rng.normal(80 * label, 30, (12, 12)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "shapes" / f"c{label}" / f"{i}.png")
    config = merge(RunConfig(), {"data": {"dataset": str(root / "shapes")},
                                 "model": {"image_size": 12, "embedding_dim": 8},
                                 "train": {"epochs": 2, "batch_size": 16}})  # fmt: skip
    with pytest.raises(_StopError):
        train_run(config, root / "run", callbacks=[Stop()])
    return RunDir(root / "run")


@pytest.mark.slow
def test_damaged_training_states_through_resume(stopped_run, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIPLETLAB_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(SEED + 3)
    resumed = 0
    for case in range(60):
        copy = RunDir(tmp_path / f"case{case}")
        shutil.copytree(stopped_run.path, copy.path)
        folder = copy.checkpoint("resume")
        if case % 2:  # the tensors
            path = folder / "state.safetensors"
            path.write_bytes(_damage(path.read_bytes(), rng))
        else:  # the rest: damaged JSON, or valid JSON with a value of another kind
            path = folder / "state.json"
            meta = json.loads(path.read_text())
            if rng.random() < 0.5:
                key = str(rng.choice(list(meta)))
                meta[key] = _VALUES[int(rng.integers(len(_VALUES)))]
                path.write_text(json.dumps(meta, default=str))
            else:
                path.write_bytes(_damage(path.read_bytes(), rng))
        result = runner.invoke(app, ["train", "--resume", str(copy.path), "--no-report"])
        _check(result)
        resumed += result.exit_code == 0
        shutil.rmtree(copy.path)
    assert 0 < resumed < 60  # some damage leaves a usable state (a changed timing), most not
