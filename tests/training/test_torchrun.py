"""`tripletlab train` under torchrun: real processes on this machine (gloo), against one
process training the same global batches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from tests.conftest import SET_TEST_PART
from tripletlab.cli.main import app

HERE = Path(__file__).parent
# 711 images: 640 training images, 20 steps of 32; resumable checkpoints after steps 5, 10, 15;
# evaluated on a stratified fifth of the test split (2,000 images).
ARGS = ["--limit", "711", "--epochs", "1", "--checkpoint-every", "5", "--no-report",
        *SET_TEST_PART]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def _weights(run: Path, checkpoint: str) -> dict[str, np.ndarray]:
    state = load_file(run / "checkpoints" / checkpoint / "state.safetensors")
    return {k: v for k, v in state.items() if k.startswith(("model.", "history."))}


def _assert_same_training(single: Path, distributed: Path) -> None:
    """Same step losses and, to float32 rounding, the same weights after 20 steps.

    "Float32 rounding" is judged per tensor and per element. Per tensor, ||theirs - ours|| /
    ||ours|| must stay below 1e-5 (measured: at most 1.2e-6). Per element, a weight may differ by at
    most 1% of one Adam step (lr = 1e-3): ranks of 16 and one process of 32 sum in different orders
    inside the CPU kernels, and Adam divides each gradient by its own running size, so an element
    whose gradient is near zero turns that rounding into up to 2.8e-6 of weight (measured), which a
    bound relative to the tensor's largest weight (7e-7 for the head) wrongly called a mismatch. A
    real fault (a batch in another order, a rank mining only its own half) changes the step losses
    and moves whole tensors. Adam hides a wrong gradient scale, so the float64 tests in
    test_distributed.py prove the losses and gradients themselves equal to 1e-10.
    """
    ours, theirs = _weights(single, "epoch-0001"), _weights(distributed, "epoch-0001")
    assert ours.keys() == theirs.keys() and len(ours["history.step_losses"]) == 20
    np.testing.assert_allclose(theirs["history.step_losses"], ours["history.step_losses"],
                               rtol=1e-5)  # fmt: skip
    for key, value in ours.items():
        mine, other = value.astype(np.float64), theirs[key].astype(np.float64)
        assert np.linalg.norm(other - mine) <= 1e-5 * np.linalg.norm(mine), key
        if key.startswith("model."):
            np.testing.assert_allclose(other, mine, rtol=0, atol=0.01 * 1e-3, err_msg=key)
    mine = json.loads((single / "metrics.json").read_text())
    other = json.loads((distributed / "metrics.json").read_text())
    assert abs(other["map_at_r"] - mine["map_at_r"]) < 1e-3


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The default network trained by one process, 20 steps of batch 32."""
    folder = tmp_path_factory.mktemp("single") / "run"
    result = CliRunner().invoke(app, ["train", *ARGS, "--run-dir", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_nodes_of_one_process_train_what_one_process_trains(single, tmp_path):
    """The multi-node launch, as the README shows it, with both "nodes" on this machine: two
    torchrun agents meeting at a c10d rendezvous on 127.0.0.1."""
    port, run = _free_port(), tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "test",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "tripletlab", "train", *ARGS,
               "--run-dir", str(run)]  # fmt: skip
    nodes = [subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert sum("metrics written to" in output for output in outputs) == 1  # rank 0 alone
    _assert_same_training(single, run)


def test_a_rank_that_fails_stops_every_rank_and_the_run_resumes(single, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "failed"
    base = [sys.executable, "-m", "tripletlab", "--import", "flaky_backbone", "train"]
    env = _env() | {"FLAKY_MARKER": str(marker)}
    failed = subprocess.run([*base, *ARGS, "--backbone", "flaky_seed_cnn", "--nproc", "2",
                             "--run-dir", str(run)], env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert failed.returncode != 0 and marker.exists()
    said = failed.stdout + failed.stderr
    assert "rank 1 failed on purpose" in said and "ChildFailedError" not in said
    assert "error: process 1 of the job failed first (exit code 1)" in said
    index = json.loads((run / "checkpoints" / "index.json").read_text())
    assert index["resume"] == "step-0000010"  # the last one before step 12, intact
    assert not (run / "metrics.json").exists()
    resumed = subprocess.run([*base, "--resume", str(run), "--nproc", "2"], env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming" in resumed.stderr and "epoch 1, step 10" in resumed.stderr
    _assert_same_training(single, run)
