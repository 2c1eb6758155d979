"""The commands the README and the docs show run as shown.

Every `tripletlab ...` line of the README's code blocks runs, in order, in an empty folder,
through the command's runner; `train` gets a small `--limit`, one epoch (one per phase),
no report and a fifth of the test split, so that all of them take a couple of minutes. Every
`tripletlab train` line of docs/ runs with `--dry-run`, which checks every flag and setting
without training. The Python examples of the README and the docs run too; the Keras ones in
tests/keras, where a Keras backend is installed (the tutorial's own TensorFlow code there is
a copy in tests/keras/test_tutorial.py).
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import SET_TEST_PART
from tripletlab.cli.main import app
from tripletlab.data import load_mnist

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _commands(path: Path) -> list[list[str]]:
    """The `tripletlab` command lines of the file's bash code blocks, as argument lists."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["tripletlab"]:
                commands.append(words[1:])
    return commands


_SHORT_PHASES = "phases=[{epochs: 1, freeze: backbone}, {epochs: 1, lr: 1.0e-5}]"


def _small(args: list[str], limit: str = "400") -> list[str]:
    """A train command cut down: --limit N, one epoch (one per phase), no report, a stratified
    fifth of the test split (2,000 images)."""
    out, skip = [], False
    for i, word in enumerate(args):
        if skip:
            skip = False
            continue
        if word in ("--limit", "--epochs") and i + 1 < len(args):
            skip = True
            continue
        out.append(word)
    epochs = ["--set", _SHORT_PHASES] if "transfer" in out else ["--epochs", "1"]
    return [*out, "--limit", limit, *epochs, "--no-report", *SET_TEST_PART]


def test_the_readme_shows_the_two_commands_and_a_tour():
    text = (ROOT / "README.md").read_text()
    assert "make run" in text and "make test" in text
    assert len(text.splitlines()) <= 250
    kinds = {args[0] for args in _commands(ROOT / "README.md")}
    assert {
        "train",
        "evaluate",
        "embed",
        "report",
        "export",
        "benchmark",
        "summary",
        "index",
        "search",
        "match",
        "predict",
    } <= kinds


@pytest.mark.slow
def test_readme_commands_run_as_shown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(load_mnist("test").images[0]).save("digit.png")
    for args in _commands(ROOT / "README.md"):
        if args[0] == "serve":
            continue  # runs until stopped: tests/serve/test_server.py starts and stops one
        if args[0] == "train":
            args = _small(args)
        if args[0] == "benchmark":
            args = [*args, "--seconds", "0.2"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"tripletlab {shlex.join(args)}\n{result.output}"
    assert np.load("vecs.npy").shape == (1, 256)
    assert Path("runs/transfer/metrics.json").is_file()


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.slow
def test_python_examples_run_as_shown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(load_mnist("test").images[0]).save("digit.png")
    train = ["train", "--limit", "400", "--epochs", "1", "--no-report", *SET_TEST_PART]
    result = runner.invoke(app, [*train, "--run-dir", "runs/quick"])
    assert result.exit_code == 0, result.output
    # docs/training.md registers `my_net`: gone again after this test.
    from tripletlab.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = {  # what docs/search.md's example takes as given
        "vectors": vectors,
        "labels": np.arange(50) % 5,
        "sources": [f"item{i}.png" for i in range(50)],
        "queries": vectors[:3],
    }
    ran = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, block in enumerate(_python_blocks(page)):
            if "tripletlab.keras" in block or page.name == "keras.md":
                continue
            scope = dict(names) if page.name == "search.md" else {}
            exec(compile(block, f"{page.name}, example {number + 1}", "exec"), scope)
            ran.append((page.name, scope))
    assert [name for name, _ in ran] == [
        "README.md", "python.md", "python.md", "python.md", "search.md", "training.md"
    ]  # fmt: skip
    scopes = dict(ran)
    assert scopes["README.md"]["vectors"].shape == (10000, 256)
    search = scopes["search.md"]
    digit = str(load_mnist("test").labels[0])  # labels are class names
    assert search["hits"][0].label == digit  # a 7 (a model of one epoch on 360 images)
    assert search["verdict"].label in (digit, "unknown")
    assert search["index"].search(names["queries"], k=1)[1][:, 0].tolist() == [0, 1, 2]
    assert "my_net" in registry.backbone_names()


def _docs_yaml() -> str:
    text = (ROOT / "docs" / "training.md").read_text()
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.S)[0]


def test_every_train_command_of_the_docs_is_valid(tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    pets = tmp_path / "pets"
    for name in ("cats", "dogs"):
        (pets / name).mkdir(parents=True)
    Path("run.yaml").write_text(_docs_yaml())
    Path("my_backbones.py").write_text(
        "from torch import nn\nfrom tripletlab.models import register_backbone\n"
        "register_backbone('my_net')(lambda channels, size: nn.Flatten())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # The docs' `--import my_backbones` registers `my_net`: gone again after this test.
    from tripletlab.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    request.addfinalizer(lambda: sys.modules.pop("my_backbones", None))
    checked = 0
    for page in sorted((ROOT / "docs").glob("*.md")):
        for args in _commands(page):
            if "train" not in args or args[0] not in ("train", "--import") or "--resume" in args:
                continue  # --resume takes no settings, so no --dry-run either
            args = [str(pets) if word == "~/pets" else word for word in args]
            result = runner.invoke(app, [*args, "--dry-run"])
            assert result.exit_code == 0, f"{page.name}: tripletlab {shlex.join(args)}\n" + (
                result.output
            )
            checked += 1
    assert checked >= 15


def test_the_configuration_page_lists_every_key():
    import dataclasses

    from tripletlab.config import PhaseConfig, RunConfig

    text = (ROOT / "docs" / "configuration.md").read_text()
    pages = re.split(r"^## ", text, flags=re.M)
    for section in ("data", "model", "loss", "train", "phases"):
        page = next(p for p in pages if p.startswith(f"`{section}`"))
        kind = PhaseConfig if section == "phases" else type(getattr(RunConfig(), section))
        for field in dataclasses.fields(kind):
            assert f"`{field.name}`" in page, f"{section}.{field.name} is not documented"
