"""A run stopped (or killed) and resumed ends exactly as the run that never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SET_TEST_PART, TEST_PART
from tripletlab import Embedder
from tripletlab.config import RunConfig, merge, preset
from tripletlab.data import load_mnist
from tripletlab.runs import RunDir
from tripletlab.training import (
    Callback,
    Trainer,
    load_state,
    resume_run,
    train_run,
)

TRIPLETLAB = str(Path(sys.executable).with_name("tripletlab"))


class _StopError(Exception):
    """Stands for a stop from outside (Ctrl-C, a killed job) at a chosen moment."""


class _StopAt(Callback):
    def __init__(self, epoch: int | None = None, step: int | None = None):
        self.epoch, self.step = epoch, step

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            raise _StopError

    def on_step_end(self, step, loss, images_per_second):
        if step == self.step:
            raise _StopError


@pytest.fixture(scope="module")
def parts():
    train = load_mnist("train")
    return train.subset(np.arange(640)), train.subset(np.arange(640, 800))


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    if trainer.ema is not None:
        state |= {f"ema.{k}": v.clone() for k, v in trainer.ema.model.state_dict().items()}
    return state


def _train(config, parts, folder, stop=None, resume=False):
    train, val = parts
    trainer = Trainer(config, callbacks=[stop] if stop else [])
    state = load_state(RunDir(folder)) if resume else None
    trainer.fit(train, val, run_dir=folder, resume=state)
    return trainer


def _same_run(config, parts, tmp_path, stop):
    whole = _train(config, parts, tmp_path / "whole")
    with pytest.raises(_StopError):
        _train(config, parts, tmp_path / "stopped", stop)
    resumed = _train(config, parts, tmp_path / "stopped", resume=True)
    expected, got = _weights(whole), _weights(resumed)
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), name
    assert resumed.history.step_losses == whole.history.step_losses
    drop = ("seconds", "images_per_second")
    strip = [{k: v for k, v in e.items() if k not in drop} for e in whole.history.epochs]
    assert [{k: v for k, v in e.items() if k not in drop} for e in resumed.history.epochs] == strip
    assert resumed.history.best_epoch == whole.history.best_epoch
    files = [json.loads((tmp_path / name / "history.json").read_text())
             for name in ("whole", "stopped")]  # fmt: skip
    for saved in files:
        saved["epochs"] = [{k: v for k, v in e.items() if k not in drop} for e in saved["epochs"]]
        saved.pop("train_seconds")
    assert files[0] == files[1]
    return whole, resumed


def _config(**sections):
    base = {"train": {"epochs": 3, "batch_size": 64}}
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values} if isinstance(values, dict) else values
    return merge(RunConfig(), base)


def test_stopped_after_an_epoch(parts, tmp_path):
    """The default network (dropout draws from PyTorch's generator) stopped after epoch 2."""
    _same_run(_config(), parts, tmp_path, _StopAt(epoch=1))


def test_stopped_mid_epoch_with_a_weight_average_and_a_cosine_schedule(parts, tmp_path):
    config = _config(train={"checkpoint_every": 4, "ema": 0.9, "schedule": "cosine",
                            "sampler": "pk", "samples_per_class": 8})  # fmt: skip
    _same_run(config, parts, tmp_path, _StopAt(step=15))  # after the save at step 12
    index = json.loads((tmp_path / "whole" / "checkpoints" / "index.json").read_text())
    assert index["resume"] == index["last"] == "epoch-0003"  # step saves are replaced
    assert sorted(p.name for p in (tmp_path / "whole" / "checkpoints").iterdir()) == sorted(
        {*index.values(), "index.json"}
    )


def test_a_mid_epoch_checkpoint_keeps_the_time_trained(parts, tmp_path):
    """The training time was only counted at epoch ends: a run resumed from a step checkpoint
    of its first epoch started counting again from 0."""
    config = _config(data={"limit": 800, "test_split": TEST_PART},
                     train={"epochs": 1, "checkpoint_every": 4})  # fmt: skip
    steps = []

    class _Steps(Callback):
        def on_epoch_start(self, epoch, num_steps):
            steps.append(num_steps)

    with pytest.raises(_StopError):
        train_run(config, tmp_path / "run", callbacks=[_Steps(), _StopAt(step=6)])
    state = load_state(RunDir.open(tmp_path / "run"))
    assert state.step == 4 and state.meta["history"]["train_seconds"] > 0
    resume_run(tmp_path / "run", callbacks=[_Steps()])
    assert steps == [steps[0], steps[0] - 4]  # the progress bar's total: it never completed


def test_stopped_mid_epoch_with_mined_explicit_triplets(parts, tmp_path):
    """Semi-hard triplets re-mined every 3 steps with the model of then: the resumed epoch
    goes on with the triplets and generator saved, not a new mining."""
    config = merge(merge(RunConfig(), preset("spike")), {
        "train": {"epochs": 2, "triplets": "semihard", "mine_every": 3, "checkpoint_every": 5,
                  "batch_size": 32},
    })  # fmt: skip
    _same_run(config, parts, tmp_path, _StopAt(step=13))


def test_stopped_between_phases(parts, tmp_path):
    """Frozen backbone, then fine-tuning: the second phase builds a fresh optimizer."""
    config = _config(
        model={"backbone": "resnet_small", "embedding_dim": 16},
        phases=[{"epochs": 1, "lr": 1e-3, "freeze": "backbone"},
                {"epochs": 2, "lr": 1e-4, "optimizer": "sgd"}],
    )  # fmt: skip
    _same_run(config, parts, tmp_path, _StopAt(epoch=0))
    _same_run(config, parts, tmp_path / "later", _StopAt(epoch=1))


def test_stopped_in_a_feature_cache_phase_and_after_an_early_stop(parts, tmp_path):
    """A classifier on cached features of a frozen backbone, stopped mid-epoch; then a phase
    that stops early (a rate too small to change a weight: no epoch improves), stopped right
    after its last epoch: the resumed run skips what the whole run skipped."""
    names = [str(d) for d in range(10)]
    config = _config(
        model={"backbone": "resnet_small", "embedding_dim": 16, "classes": list(range(10)),
               "class_names": names},
        loss={"name": "semihard+ce"},
        train={"checkpoint_every": 4, "patience": 1, "monitor": "val_loss", "bn_train": False},
        phases=[{"epochs": 2, "lr": 1e-3, "freeze": "backbone"}, {"epochs": 3, "lr": 1e-30}],
    )  # fmt: skip
    whole, _ = _same_run(config, parts, tmp_path, _StopAt(step=15))
    assert [e["epoch"] for e in whole.history.epochs] == [1, 2, 3, 4]  # epoch 5 skipped
    _same_run(config, parts, tmp_path / "later", _StopAt(epoch=3))


def test_a_write_cut_short_by_a_kill_is_cleaned_up_and_resumed(parts, tmp_path):
    """What a kill -9 inside the checkpoint write leaves: a hidden half-written folder beside
    the whole checkpoints; the index still names the last whole one."""
    config = _config()
    with pytest.raises(_StopError):
        _train(config, parts, tmp_path / "run", _StopAt(epoch=0))
    half = tmp_path / "run" / "checkpoints" / ".epoch-0002.x1y2"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\x00" * 10)
    (tmp_path / "run" / ".history.json.q9.tmp").write_text("{")
    resumed = _train(config, parts, tmp_path / "run", resume=True)
    assert not half.exists() and not (tmp_path / "run" / ".history.json.q9.tmp").exists()
    assert len(resumed.history.epochs) == 3


def test_resume_needs_a_state(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a tripletlab run folder"):
        resume_run(tmp_path)
    run = RunDir.create(RunConfig(), tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_state(run)
    Embedder().save(run.checkpoints / "epoch-0001")  # as older versions wrote them
    run.point_checkpoints(last="epoch-0001", best="epoch-0001")
    with pytest.raises(ValueError, match="holds no training state"):
        load_state(run)


def _scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


@pytest.mark.slow
def test_a_run_stopped_and_resumed_reports_the_same_metrics(tmp_path):
    """Also its TensorBoard curves: what the stopped process logged past its checkpoint is
    dropped, and the loss points average the same steps."""
    config = merge(RunConfig(), {"data": {"limit": 800, "test_split": TEST_PART},
                                 "train": {"epochs": 3}})  # fmt: skip
    whole = train_run(config, tmp_path / "whole")
    with pytest.raises(_StopError):
        # Stopped at step 46, in the middle of a TensorBoard point's 10 steps.
        train_run(config, tmp_path / "stopped", callbacks=[_StopAt(epoch=1)])
    resumed = resume_run(tmp_path / "stopped")
    for key in ("precision_at_1", "r_precision", "map_at_r", "knn_accuracy", "best_epoch"):
        assert resumed.metrics[key] == whole.metrics[key], key
    for tag in ("train/loss", "train/lr", "epoch/loss"):
        expected, got = _scalars(tmp_path / "whole", tag), _scalars(tmp_path / "stopped", tag)
        assert [step for step, _ in got] == [step for step, _ in expected], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6), tag


def test_one_process_at_a_time(tmp_path):
    run = RunDir.create(RunConfig(), tmp_path / "run")
    with (
        run.lock(),
        pytest.raises(ValueError, match="being trained by another"),
        RunDir(run.path).lock(),
    ):
        pass
    with run.lock():  # released
        pass


def test_a_start_that_finds_the_folder_claimed_removes_nothing(tmp_path):
    """Another training holds the new folder's lock but has written nothing else yet: this
    start stops and removes nothing. (Before, a start claimed the folder by writing
    config.yaml and locked it after: of two starts that both got past that write, the one
    that then lost the lock removed the other's files. The lock now comes first.)"""
    folder = tmp_path / "run"
    with RunDir(folder).lock():
        (folder / ".other.tmp").write_text("the other start's write")
        config = merge(RunConfig(), {"data": {"limit": 300}, "train": {"epochs": 1}})
        with pytest.raises(ValueError, match="being trained by another"):
            train_run(config, folder)
        assert sorted(child.name for child in folder.iterdir()) == [".lock", ".other.tmp"]


def _kill_when(process: subprocess.Popen, condition, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"training ended before the kill: {process.stderr.read()}")
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_kill_9_at_any_moment_loses_only_the_steps_since_the_last_checkpoint(tmp_path):
    """The command, killed three times (first inside a checkpoint write, after an earlier
    checkpoint), resumed each time: the same weights and metrics as a run that was never
    killed, in other processes."""
    args = ["train", "--limit", "600", "--epochs", "3", "--batch-size", "32",
            "--checkpoint-every", "4", "--no-report",
            *SET_TEST_PART]  # fmt: skip
    subprocess.run([TRIPLETLAB, *args, "--run-dir", "whole"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    checkpoints = tmp_path / "killed" / "checkpoints"
    process = subprocess.Popen([TRIPLETLAB, *args, "--run-dir", "killed"], cwd=tmp_path,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip

    def writing() -> bool:  # a write in progress (a hidden folder) after an earlier checkpoint
        return (checkpoints / "index.json").is_file() and any(
            p.name.startswith(".") and p.is_dir() for p in checkpoints.iterdir()
        )

    _kill_when(process, writing)
    index = checkpoints / "index.json"

    def read_index() -> str:
        return index.read_text() if index.is_file() else ""

    for _ in range(2):  # killed right after it wrote its next checkpoint
        resume = [TRIPLETLAB, "train", "--resume", "killed", "--no-report"]
        process = subprocess.Popen(resume, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
        before = read_index()
        _kill_when(process, lambda before=before: read_index() not in (before, ""))
    result = subprocess.run([TRIPLETLAB, "train", "--resume", "killed", "--no-report"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    whole = Embedder.from_pretrained(tmp_path / "whole", "last").state_dict()
    killed = Embedder.from_pretrained(tmp_path / "killed", "last").state_dict()
    for name, tensor in whole.items():
        assert torch.equal(tensor, killed[name]), name
    metrics = [json.loads((tmp_path / name / "metrics.json").read_text())
               for name in ("whole", "killed")]  # fmt: skip
    assert metrics[0]["map_at_r"] == metrics[1]["map_at_r"]
