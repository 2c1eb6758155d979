"""The `tripletlab` command through typer's runner, on 2,000 real MNIST images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
import typer
import yaml
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import SET_TEST_PART
from tripletlab import Embedder
from tripletlab.cli.main import app
from tripletlab.config import PhaseConfig, RunConfig
from tripletlab.data import load_mnist

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    config = run_dir.parent / "run.yaml"
    config.write_text("train:\n  epochs: 3\n  batch_size: 64\nloss:\n  margin: 0.5\n")
    result = runner.invoke(
        app,
        ["train", "--limit", "2000", "--epochs", "1", "--config", str(config),
         "--sampler", "pk", "--run-dir", str(run_dir), *SET_TEST_PART],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return run_dir, result


@pytest.mark.slow
def test_train_writes_metrics_and_a_resolved_config(trained_run):
    run_dir, result = trained_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("precision_at_1", "r_precision", "map_at_r", "knn_accuracy", "train_seconds"):
        assert key in metrics
    assert metrics["num_test"] == 2_000  # 20% of each class
    # One epoch on 1,800 images already embeds digits far better than chance.
    assert metrics["precision_at_1"] > 0.8
    assert "Precision@1" in result.output
    resolved = (run_dir / "config.yaml").read_text()
    assert "epochs: 1" in resolved and "margin: 0.5" in resolved and "batch_size: 64" in resolved


@pytest.mark.slow
def test_evaluate_recomputes_the_same_metrics(trained_run):
    run_dir, _ = trained_run
    before = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**before, "map_at_r": -1.0}))
    result = runner.invoke(app, ["evaluate", str(run_dir)])
    assert result.exit_code == 0, result.output
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["map_at_r"] == pytest.approx(before["map_at_r"])
    assert after["train_seconds"] == before["train_seconds"]


@pytest.mark.slow
def test_embed_image_files_matches_the_python_api(trained_run, tmp_path):
    run_dir, _ = trained_run
    digits = load_mnist("test").images[:4]
    paths = []
    for i, digit in enumerate(digits):
        path = tmp_path / f"digit{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(digit).save(path, quality=100)
        paths.append(path)
    out = tmp_path / "vecs.npy"
    result = runner.invoke(app, ["embed", str(run_dir), *map(str, paths), "--out", str(out)])
    assert result.exit_code == 0, result.output
    vectors = np.load(out)
    expected = Embedder.from_pretrained(run_dir).embed(digits)
    assert vectors.shape == expected.shape
    np.testing.assert_allclose(vectors[1::2], expected[1::2], atol=1e-5)  # PNG is lossless
    assert np.all(np.sum(vectors[0::2] * expected[0::2], axis=1) > 0.95)  # JPEG nearly so
    # A data set's images by reference, as search and match take them, in the order given.
    result = runner.invoke(app, ["embed", str(run_dir), "mnist:test:3", str(paths[1]),
                                 "mnist:test:0", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), expected[[3, 1, 0]], atol=1e-5)
    result = runner.invoke(app, ["embed", str(run_dir), "mnist:test:10000", "--out", str(out)])
    assert result.exit_code == 1 and "MNIST test has 10000 images" in result.output


@pytest.mark.slow
def test_user_errors_are_one_line_and_non_zero(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = runner.invoke(
        app, ["train", "--loss", "contrastive", "--run-dir", str(tmp_path / "x")]
    )
    assert result.exit_code == 1
    assert "loss.name must be one of semihard, hard, batch-all, cross-entropy" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["train", "--run-dir", str(run_dir)])
    assert result.exit_code == 1 and "not empty" in result.output
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    result = runner.invoke(app, ["embed", str(run_dir), str(bad), "--out", str(tmp_path / "v.npy")])
    assert result.exit_code == 1 and "cannot read image" in result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1 and "not a tripletlab run folder" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.ema=1.5"], "train.ema must be in [0.0, 1.0), got 1.5"),
        (["--set", "model.tta_shift=40"], "model.tta_shift must be smaller than the image"),
        (["--set", "train.schedule=cosin"], "train.schedule must be one of constant, cosine"),
        (["--set", "phases=[{epochs: 1, freeze: all}]"], "phases[1].freeze must be one of"),
        (["--backbone", "spike_cnn", "--image-size", "8", "--dataset", "."],
         "spike_cnn needs images of at least 10 x 10"),
        (["--backbone-weights", "missing.safetensors"], "backbone weights not found"),
        (["--backbone-weights", "missing.pth", "--loss", "cross-entropy"],
         "backbone weights not found"),  # a classifier's run reads its data before the model
        (["--backbone-weights", "weights.h5"], "weights.h5: expected a run folder, .safetensors"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_before_any_data_is_read_or_file_written(
    tmp_path, monkeypatch, args, message
):
    import tripletlab.training.run as run_module

    def no_data(config):  # the data must not even be asked for
        raise AssertionError("data was read")

    monkeypatch.setattr(run_module, "run_data", no_data)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.h5").write_bytes(b"Keras")
    result = runner.invoke(app, ["train", *args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_data_prepare_reports_the_cache():
    result = runner.invoke(app, ["data", "prepare", "mnist"])
    assert result.exit_code == 0 and "MNIST ready" in result.output
    result = runner.invoke(app, ["data", "prepare", "cifar"])
    assert result.exit_code == 1 and "unknown data set" in result.output


@pytest.mark.slow
def test_train_writes_the_report_and_prints_the_per_class_blocks(trained_run):
    run_dir, result = trained_run
    for name in ("loss", "distances", "umap", "neighbours"):
        with Image.open(run_dir / "plots" / f"{name}.png") as image:
            assert image.size[0] > 400 and image.size[1] > 300
    report = (run_dir / "report.md").read_text()
    for link in ("plots/loss.png", "plots/distances.png", "plots/umap.png", "plots/neighbours.png"):
        assert f"]({link})" in report
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [row["class"] for row in metrics["per_class"]] == list(range(10))
    assert sum(row["triplets"] for row in metrics["per_class"]) == 2_000
    assert 0.5 < metrics["verification"]["roc_auc"] <= 1.0
    assert f"| {metrics['per_class'][3]['acc']:.4f} |" in report
    assert "class 7 (206 test triplets)" in result.output and "acc: " in result.output


@pytest.mark.slow
def test_tensorboard_scalars_are_logged_during_training(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = trained_run
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/images_per_second"} <= tags
    assert {"val/precision_at_1", "val/map_at_r", "epoch/loss"} <= tags
    assert events.Scalars("train/lr")[0].value == pytest.approx(1e-3)
    steps = len(json.loads((run_dir / "history.json").read_text())["step_losses"])
    assert len(events.Scalars("train/loss")) == steps // 10  # every 10th step


@pytest.mark.slow
def test_benchmark_measures_and_records_throughput(trained_run):
    run_dir, _ = trained_run
    result = runner.invoke(
        app, ["benchmark", str(run_dir), "--batch-size", "64", "--seconds", "0.5"]
    )
    assert result.exit_code == 0, result.output
    assert "images/s" in result.output and "batch size 64" in result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["embeddings_per_second"] > 100
    assert metrics["throughput"]["seconds"] >= 0.5 and metrics["throughput"]["batch_size"] == 64


@pytest.mark.slow
def test_export_projector_command(trained_run, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "proj"
    result = runner.invoke(app, ["export", "projector", str(run_dir), "--limit", "300",
                                 "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len((out / "vecs.tsv").read_text().splitlines()) == 300
    assert len((out / "meta.tsv").read_text().splitlines()) == 300
    result = runner.invoke(app, ["export", "projector", str(run_dir), "--split", "nope"])
    assert result.exit_code == 1 and "unknown split" in result.output


@pytest.mark.slow
def test_no_report_skips_the_plots(tmp_path):
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", "--limit", "600", "--epochs", "1", "--no-report",
                                 "--run-dir", str(run_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (run_dir / "report.md").exists()
    assert [p.name for p in (run_dir / "plots").iterdir()] == ["samples.png"]  # at the start
    assert "verification" in json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_explicit_triplets_run_end_to_end_and_embed_like_online_runs(tmp_path):
    run_dir = tmp_path / "spike"
    result = runner.invoke(app, ["train", "--preset", "spike", "--triplets", "semihard",
                                 "--set", "train.mine_every=20", "--limit", "2000", "--epochs", "1",
                                 "--no-report", "--run-dir", str(run_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["precision_at_1"] > 0.8 and len(metrics["per_class"]) == 10
    embedder = Embedder.from_pretrained(run_dir)
    assert embedder.config.backbone == "spike_cnn" and not embedder.config.normalize
    assert embedder.embed(load_mnist("test").images[:5]).shape == (5, 128)
    resolved = (run_dir / "config.yaml").read_text()
    assert "mode: triplets" in resolved and "triplets: semihard" in resolved


def _shapes_folder(root, per_class=30):
    """Circles, squares and triangles in colour, PNG and JPEG, plus one corrupt file."""
    from PIL import ImageDraw

    rng = np.random.default_rng(0)
    for name in ("circle", "square", "triangle"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = Image.new("RGB", (40, 40), tuple(int(v) for v in rng.integers(0, 80, 3)))
            draw = ImageDraw.Draw(image)
            x, y, s = (int(v) for v in rng.integers([2, 2, 14], [14, 14, 24]))
            colour = tuple(int(v) for v in rng.integers(150, 255, 3))
            if name == "circle":
                draw.ellipse([x, y, x + s, y + s], fill=colour)
            elif name == "square":
                draw.rectangle([x, y, x + s, y + s], fill=colour)
            else:
                draw.polygon([(x, y + s), (x + s, y + s), (x + s // 2, y)], fill=colour)
            image.save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "circle" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")


@pytest.mark.slow
def test_image_folder_transfer_with_phases(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIPLETLAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "shapes"
    _shapes_folder(folder)
    common = ["--dataset", str(folder), "--image-size", "32", "--channels", "3",
              "--backbone", "resnet_small", "--embedding-dim", "16", "--no-report"]  # fmt: skip
    base = tmp_path / "base"
    result = runner.invoke(app, ["train", *common, "--epochs", "1", "--batch-size", "16",
                                 "--set", "model.flip=true", "--set", "model.rotation=10",
                                 "--run-dir", str(base)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (base / "augment.png").is_file()
    metrics = json.loads((base / "metrics.json").read_text())
    assert metrics["num_test"] == 9  # 10% of 89 usable images, stratified: 3 per class
    # A folder's split is in class order: --limit used to export its first class alone.
    result = runner.invoke(app, ["export", "projector", str(base), "--split", "train",
                                 "--limit", "9", "--out", str(tmp_path / "proj")])  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = (tmp_path / "proj" / "meta.tsv").read_text().splitlines()
    assert len(shown) == 9 and set(shown) == {"circle", "square", "triangle"}
    yaml_file = tmp_path / "transfer.yaml"
    yaml_file.write_text("phases:\n  - {epochs: 1, lr: 1.0e-3, freeze: backbone}\n"
                         "  - {epochs: 1, lr: 1.0e-5}\n")  # fmt: skip
    tuned = tmp_path / "tuned"
    result = runner.invoke(app, ["train", *common, "--config", str(yaml_file), "--batch-size", "16",
                                 "--backbone-weights", str(base),
                                 "--set", "data.train_split=train[:60%]",
                                 "--set", "data.val_split=train[60%:80%]",
                                 "--set", "data.test_split=train[80%:]",
                                 "--run-dir", str(tuned)])  # fmt: skip
    assert result.exit_code == 0, result.output
    history = json.loads((tuned / "history.json").read_text())
    assert [e["phase"] for e in history["epochs"]] == [1, 2]
    assert [e["lr"] for e in history["epochs"]] == [1e-3, 1e-5]
    # Fine-tuning kept BatchNorm in inference mode: the statistics are the base run's.
    base_state = Embedder.from_pretrained(base).state_dict()
    tuned_state = Embedder.from_pretrained(tuned, "last").state_dict()
    key = "backbone.stem.1.running_mean"
    assert torch.equal(base_state[key], tuned_state[key])
    assert not torch.equal(
        base_state["backbone.stem.0.weight"], tuned_state["backbone.stem.0.weight"]
    )


@pytest.mark.slow
def test_onnx_export_embed_and_benchmark(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = runner.invoke(app, ["export", "onnx", str(run_dir), "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    assert (run_dir / "model.onnx").is_file() and (run_dir / "model.int8.onnx").is_file()
    assert "Precision@1" in result.output
    digits = load_mnist("test").images[:3]
    paths = []
    for i, digit in enumerate(digits):
        Image.fromarray(digit).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    out = tmp_path / "v.npy"
    result = runner.invoke(
        app, ["embed", str(run_dir), *paths, "--engine", "onnx", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(
        np.load(out), Embedder.from_pretrained(run_dir).embed(digits), atol=1e-5
    )
    result = runner.invoke(app, ["benchmark", str(run_dir), "--engine", "onnx", "--seconds", "0.3"])
    assert result.exit_code == 0 and "ONNX Runtime" in result.output
    assert json.loads((run_dir / "metrics.json").read_text())["onnx_embeddings_per_second"] > 100


def _config_keys() -> set[str]:
    sections = {f.name: f.type for f in dataclasses.fields(RunConfig)}
    keys = {"phases"}
    for name in ("data", "model", "loss", "train"):
        section = getattr(RunConfig(), name)
        keys |= {f"{name}.{field.name}" for field in dataclasses.fields(section)}
    assert set(sections) == {"data", "model", "loss", "train", "phases"}
    return keys


def test_flags_are_named_as_their_config_keys():
    command = typer.main.get_command(app).commands["train"]
    keys = _config_keys()
    flags = [p.name for p in command.params if p.name not in _NOT_CONFIG]
    assert len(flags) >= 15
    for name in flags:
        key = "loss.name" if name == "loss" else None
        key = key or next((k for k in keys if k.endswith(f".{name}")), None)
        assert key is not None, f"--{name.replace('_', '-')} names no config key"


_NOT_CONFIG = {"preset_name", "config", "assignments", "run_dir", "dry_run", "report", "resume",
               "nproc"}  # fmt: skip

# Every flag set to a value that is not its default, in two commands whose values fit
# together: online mining, and explicit triplets.
_EVERY_FLAG = [
    {"--dataset": ".", "--limit": "500", "--val-fraction": "0.2", "--backbone": "spike_cnn",
     "--embedding-dim": "32", "--image-size": "32", "--channels": "3",
     "--backbone-weights": "w.pt", "--loss": "hard+ce", "--margin": "0.3",
     "--distance": "angular", "--epochs": "2", "--batch-size": "16", "--sampler": "pk",
     "--samples-per-class": "2", "--lr": "0.01", "--schedule": "cosine", "--seed": "3",
     "--checkpoint-every": "50", "--input-scaling": "symmetric", "--head-dropout": "0.2",
     "--ce-weight": "0.5", "--patience": "2", "--monitor": "val_loss",
     "--train-classes": "0-2,5", "--test-classes": "3,4"},
    {"--mode": "triplets", "--triplets": "hard"},
]  # fmt: skip


def _dry_run(args: list[str]) -> dict:
    result = runner.invoke(app, ["train", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


def test_every_flag_reaches_its_config_key():
    command = typer.main.get_command(app).commands["train"]
    flags = {f"--{p.name.replace('_', '-')}" for p in command.params if p.name not in _NOT_CONFIG}
    assert flags == {flag for group in _EVERY_FLAG for flag in group}  # a new flag: a value here
    default = RunConfig().to_dict()
    for group in _EVERY_FLAG:
        resolved = _dry_run([word for item in group.items() for word in item])
        for flag, value in group.items():
            name = flag[2:].replace("-", "_")
            key = "name" if name == "loss" else name
            section = next(s for s in ("data", "model", "loss", "train") if key in default[s])
            section = "loss" if name == "loss" else section
            expected = yaml.safe_load(value)
            expected = [expected, expected] if key == "image_size" else expected
            expected = {"0-2,5": [0, 1, 2, 5], "3,4": [3, 4]}.get(value, expected)
            assert resolved[section][key] == expected != default[section][key], flag


# A value for every config key, none of them the default, in groups whose values fit together
# (online mining; explicit mined triplets; phases, which replace train.epochs, lr, schedule).
_EVERY_KEY = [
    {"data.dataset": "mnist", "data.limit": "500", "data.val_fraction": "0.2",
     "data.train_split": "train[:50%]", "data.val_split": "train[50%:60%]",
     "data.test_split": "test", "data.split_order": "global", "data.classes": "[1, 2]",
     "data.per_class": "9", "data.train_classes": "[1]", "data.test_classes": "[2, 3]",
     "model.backbone": "spike_cnn", "model.embedding_dim": "32", "model.head": "false",
     "model.normalize": "false", "model.channels": "1", "model.image_size": "28",
     "model.backbone_weights": "w.pt", "model.imports": "[json]", "model.flip": "true",
     "model.rotation": "5", "model.translate": "0.1", "model.tta_shift": "1",
     "model.tta_flip": "true",
     "model.input_scaling": "mean-std", "model.input_mean": "[0.5]", "model.input_std": "[0.25]",
     "model.head_dropout": "0.1", "model.classes": "[1, 2]", "model.class_names": "[one, two]",
     "loss.name": "hard+ce", "loss.margin": "0.3", "loss.distance": "angular",
     "loss.soft": "true", "loss.ce_weight": "0.5", "train.epochs": "2", "train.batch_size": "16",
     "train.sampler": "pk", "train.samples_per_class": "2", "train.lr": "1e-4",
     "train.schedule": "cosine", "train.seed": "3", "train.eval_batch_size": "64",
     "train.ema": "0.99", "train.bn_train": "true", "train.checkpoint_every": "50",
     "train.patience": "3", "train.monitor": "val_accuracy", "train.feature_cache": "false"},
    {"train.mode": "triplets", "train.triplets": "hard", "train.mine_every": "3",
     "train.precision": "bfloat16"},
    {"phases": "[{epochs: 2, lr: 0.01, freeze: backbone}, {epochs: 1, optimizer: sgd}]"},
]  # fmt: skip


def test_set_reaches_every_config_key():
    assert {k for group in _EVERY_KEY for k in group} == _config_keys()  # a new key: a value here
    for group in _EVERY_KEY:
        resolved = _dry_run([word for key, value in group.items()
                             for word in ("--set", f"{key}={value}")])  # fmt: skip
        for key, value in group.items():
            section, _, name = key.partition(".")
            got = resolved[section][name] if name else resolved[section]
            expected = yaml.safe_load(value)
            if key == "model.image_size":
                expected = [28, 28]
            if key == "train.lr":
                expected = 1e-4  # PyYAML reads 1e-4 (no dot) as text; the config: a number
            if key == "phases":
                expected = [{**dataclasses.asdict(PhaseConfig()), **phase} for phase in expected]
            assert got == expected, key


def test_the_fashion_preset_brings_its_data_set_and_a_flag_replaces_it():
    fashion = _dry_run(["--preset", "fashion"])
    assert fashion["data"]["dataset"] == "fashion-mnist"
    # A tenth held out: validation each epoch, and the part `index calibrate` searches.
    assert (fashion["data"]["val_fraction"], fashion["train"]["epochs"]) == (0.1, 20)
    assert _dry_run(["--preset", "fashion", "--dataset", "mnist"])["data"]["dataset"] == "mnist"
    assert _dry_run(["--preset", "accurate"])["data"]["dataset"] == "mnist"


def test_flags_and_set_are_refused_together_and_set_needs_a_key():
    result = runner.invoke(app, ["train", "--dry-run", "--lr", "1e-3", "--set", "train.lr=2e-3"])
    assert result.exit_code == 1 and "train.lr is given both as a flag and with --set" in (
        result.output
    )
    for bad in ("train.lr", "lr=3", "train.=3", "=3"):
        result = runner.invoke(app, ["train", "--dry-run", "--set", bad])
        assert result.exit_code == 1 and "expected section.key=value" in result.output, bad
    result = runner.invoke(app, ["train", "--dry-run", "--set", "train.epoch=3"])
    assert result.exit_code == 1 and "unknown key train.epoch" in result.output


def test_version_and_completion():
    from tripletlab import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"tripletlab {__version__}"
    with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as handle:
        assert __version__ == tomllib.load(handle)["project"]["version"]
    result = runner.invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == 0 and "complete" in result.output and "tripletlab" in result.output


def test_python_dash_m_runs_the_command():
    import subprocess
    import sys

    from tripletlab import __version__

    done = subprocess.run([sys.executable, "-m", "tripletlab", "--version"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == f"tripletlab {__version__}"


def test_summary_shows_what_each_phase_trains(tmp_path):
    phases = "phases=[{epochs: 1, freeze: backbone}, {epochs: 1, freeze: {until: layer3}}]"
    result = runner.invoke(app, ["train", "--backbone", "resnet_small", "--embedding-dim", "8",
                                 "--limit", "300", "--no-report", "--set", phases,
                                 "--run-dir", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "backbone features: 270 images" in result.output  # the frozen phase's cache

    def counts(*args):
        out = runner.invoke(app, ["summary", str(tmp_path / "run"), *args])
        assert out.exit_code == 0, out.output
        lines = dict(line.split(": ", 1) for line in out.output.splitlines() if "params: " in line)
        return int(lines["Trainable params"].replace(",", "")), out.output

    everything, _ = counts()
    head, first = counts("--phase", "1")
    top, second = counts("--phase", "2")
    assert "phase 1 of 2: freeze backbone" in first and "freeze until:layer3" in second
    assert head == 8 * 128 + 8  # the head alone: Linear(128 -> 8)
    assert head < top < everything
    wrong = runner.invoke(app, ["summary", str(tmp_path / "run"), "--phase", "3"])
    assert wrong.exit_code == 1 and "--phase must be in 1..2" in wrong.output


def test_nproc_is_checked_and_not_nested_in_torchrun(monkeypatch):
    result = runner.invoke(app, ["train", "--nproc", "0"])
    assert result.exit_code == 1 and "--nproc must be at least 1" in result.output
    assert "seed_cnn" in runner.invoke(app, ["train", "--nproc", "2", "--dry-run"]).output
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it in its children
    result = runner.invoke(app, ["train", "--nproc", "2", "--limit", "100"])
    assert result.exit_code == 1 and "inside a torchrun job leave it out" in result.output
    monkeypatch.setenv("WORLD_SIZE", "two")
    result = runner.invoke(app, ["train", "--limit", "100"])
    assert result.exit_code == 1 and "WORLD_SIZE='two' is not a number" in result.output
