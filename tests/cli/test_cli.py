"""The `tripletlab` command through typer's runner, on 2,000 real MNIST images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tripletlab import Embedder
from tripletlab.cli.main import app
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
         "--sampler", "pk", "--run-dir", str(run_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return run_dir, result


@pytest.mark.slow
def test_train_writes_metrics_and_a_resolved_config(trained_run):
    run_dir, result = trained_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("precision_at_1", "r_precision", "map_at_r", "knn_accuracy", "train_seconds"):
        assert key in metrics
    assert metrics["num_test"] == 10_000
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


@pytest.mark.slow
def test_user_errors_are_one_line_and_non_zero(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = runner.invoke(
        app, ["train", "--loss", "contrastive", "--run-dir", str(tmp_path / "x")]
    )
    assert result.exit_code == 1
    assert "unknown loss 'contrastive'" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["train", "--run-dir", str(run_dir)])
    assert result.exit_code == 1 and "not empty" in result.output
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    result = runner.invoke(app, ["embed", str(run_dir), str(bad), "--out", str(tmp_path / "v.npy")])
    assert result.exit_code == 1 and "cannot read image" in result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1 and "not a tripletlab run folder" in result.output


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
    assert sum(row["triplets"] for row in metrics["per_class"]) == 10_000
    assert 0.5 < metrics["verification"]["roc_auc"] <= 1.0
    assert f"| {metrics['per_class'][3]['acc']:.4f} |" in report
    assert "class 7 (1028 test triplets)" in result.output and "acc: " in result.output


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
    assert not (run_dir / "report.md").exists() and not (run_dir / "plots").exists()
    assert "verification" in json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_explicit_triplets_run_end_to_end_and_embed_like_online_runs(tmp_path):
    run_dir = tmp_path / "spike"
    result = runner.invoke(app, ["train", "--preset", "spike", "--triplets", "semihard",
                                 "--mine-every", "20", "--limit", "2000", "--epochs", "1",
                                 "--no-report", "--run-dir", str(run_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["precision_at_1"] > 0.8 and len(metrics["per_class"]) == 10
    embedder = Embedder.from_pretrained(run_dir)
    assert embedder.config.backbone == "spike_cnn" and not embedder.config.normalize
    assert embedder.embed(load_mnist("test").images[:5]).shape == (5, 128)
    resolved = (run_dir / "config.yaml").read_text()
    assert "mode: triplets" in resolved and "triplets: semihard" in resolved
