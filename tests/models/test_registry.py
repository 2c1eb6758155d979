"""Custom backbones: registered by the user's module (`--import`) or by an installed package's
`tripletlab.backbones` entry point, and found again by every later command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import SET_TEST_PART
from tripletlab.data import load_mnist
from tripletlab.models import backbone_names, build_backbone, check_backbone

TRIPLETLAB = str(Path(sys.executable).with_name("tripletlab"))

_MODULE = """
from torch import nn
from tripletlab.models import register_backbone


@register_backbone("my_net")
def my_net(channels, image_size):
    return nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Flatten())


def build(channels, image_size):  # an entry point naming a factory
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size[0] * image_size[1], 16))
"""


def _run(args, cwd, env=None):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_unknown_backbone_says_how_to_add_one():
    with pytest.raises(ValueError, match="--import MODULE") as error:
        check_backbone("my_net")
    assert "seed_cnn" in str(error.value) and "tripletlab.backbones" in str(error.value)
    with pytest.raises(ValueError, match="cannot import backbone module 'no_such_module'"):
        check_backbone("my_net", ["no_such_module"])


def test_entry_points_register_factories_and_modules(tmp_path):
    (tmp_path / "my_backbones.py").write_text(_MODULE)
    info = tmp_path / "my_backbones-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-backbones\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[tripletlab.backbones]\nfactory_net = my_backbones:build\nmy_net = my_backbones\n"
    )
    code = textwrap.dedent("""
        from tripletlab.models import backbone_names, build_backbone
        print(backbone_names())
        print(build_backbone("factory_net", image_size=(28, 28)))
        print(type(build_backbone("my_net")).__name__)
    """)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = _run([sys.executable, "-c", code], cwd="/", env=env)
    assert result.returncode == 0, result.stderr
    assert "'factory_net'" in result.stdout and "'my_net'" in result.stdout
    assert "Linear(in_features=784, out_features=16" in result.stdout
    assert "Sequential" in result.stdout
    assert "factory_net" not in backbone_names()  # not installed here: nothing leaks
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("factory_net")


@pytest.mark.slow
def test_an_imported_backbone_works_in_commands_run_as_new_processes(tmp_path):
    (tmp_path / "my_backbones.py").write_text(_MODULE)
    train = [TRIPLETLAB, "--import", "my_backbones", "train", "--backbone", "my_net",
             "--limit", "400", "--epochs", "1", "--no-report", "--run-dir", "run",
             *SET_TEST_PART]  # fmt: skip
    result = _run(train, tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_test"] == 2_000  # a stratified fifth of the test split
    assert "imports:\n  - my_backbones" in (tmp_path / "run" / "config.yaml").read_text()
    Image.fromarray(load_mnist("test").images[0]).save(tmp_path / "digit.png")
    # (`report` loads the model as `evaluate` does, through evaluation.load_run: left out here,
    # as a new process spends 20 s compiling UMAP's numba code.)
    commands = [
        ["evaluate", "run"], ["summary", "run"], ["benchmark", "run", "--seconds", "0.2"],
        ["embed", "run", "digit.png", "--out", "v.npy"],
        ["export", "projector", "run", "--limit", "50"], ["export", "onnx", "run"],
    ]  # fmt: skip
    # New processes. A module of the working directory is imported only when named on the
    # command line; the run's record says which.
    result = _run([TRIPLETLAB, "evaluate", "run"], tmp_path)
    assert result.returncode == 1 and "run `tripletlab --import my_backbones ...`" in result.stderr
    for command in commands:
        result = _run([TRIPLETLAB, "--import", "my_backbones", *command], tmp_path)
        assert result.returncode == 0, (command, result.stderr)
    assert (tmp_path / "run" / "model.onnx").is_file() and (tmp_path / "v.npy").is_file()
    # Installed (here: on PYTHONPATH), the recorded module is imported again by itself.
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = _run([TRIPLETLAB, "summary", str(tmp_path / "run")], "/", env=env)
    assert result.returncode == 0 and "Conv2d" in result.stdout, result.stderr


def test_loading_a_run_never_imports_code_from_the_working_directory(tmp_path):
    """A checkpoint whose config names a module, with that module beside it: loading the
    checkpoint must not run it (it writes a marker when imported)."""
    from tripletlab.runs import write_checkpoint

    (tmp_path / "planted.py").write_text(
        f"open({str(tmp_path / 'ran')!r}, 'w').write('imported')\n"
        "from tripletlab.models import register_backbone\n"
        "from torch import nn\n"
        "register_backbone('planted_net')(lambda channels, size: nn.Flatten())\n"
    )
    model = {"backbone": "planted_net", "imports": ["planted"], "head": False}
    write_checkpoint(tmp_path / "ckpt", {}, {"model": model})
    code = "from tripletlab import Embedder; Embedder.from_pretrained('ckpt')"
    # -P: no working directory on sys.path (python -c would add it; the command does not)
    result = _run([sys.executable, "-P", "-c", code], tmp_path)
    assert result.returncode != 0 and "unknown backbone 'planted_net'" in result.stderr
    assert "--import planted" in result.stderr
    assert not (tmp_path / "ran").exists()
    result = _run([TRIPLETLAB, "summary", "ckpt"], tmp_path)
    assert result.returncode == 1 and not (tmp_path / "ran").exists()
