from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch

from tripletlab import Embedder
from tripletlab.config import RunConfig, merge
from tripletlab.runs import RunDir, read_checkpoint, resolve_checkpoint


def test_run_folders_are_never_reused(tmp_path):
    config = RunConfig()
    first = RunDir.create(config, base=tmp_path)
    second = RunDir.create(config, base=tmp_path)
    assert first.path != second.path and first.path.is_dir() and second.path.is_dir()
    assert first.path.name.endswith("-seed_cnn-semihard")
    with pytest.raises(ValueError, match="not empty"):
        RunDir.create(config, first.path)


def test_a_refused_start_leaves_the_folder_as_it_was(tmp_path):
    """Refused under the lock (the folder filled while the data loaded): the lock file it had
    made stayed in the user's folder."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    with pytest.raises(ValueError, match="not empty"), RunDir.start(RunConfig(), tmp_path / "mine"):
        pass
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    with RunDir.start(RunConfig(), base=tmp_path / "runs") as run:
        assert sorted(p.name for p in run.path.iterdir()) == [".lock", "config.yaml"]


def test_a_run_records_its_config_and_reopens(tmp_path):
    config = merge(RunConfig(), {"train": {"lr": 3e-3}, "model": {"image_size": 28}})
    run = RunDir.create(config, tmp_path / "run")
    assert run.config_file == tmp_path / "run" / "config.yaml"
    assert RunDir.open(tmp_path / "run").read_config() == config
    with pytest.raises(FileNotFoundError, match="not a tripletlab run folder"):
        RunDir.open(tmp_path)


def test_every_file_of_a_run_has_its_name_here(tmp_path):
    run = RunDir(tmp_path)
    names = {
        run.config_file: "config.yaml", run.checkpoints: "checkpoints",
        run.history_file: "history.json", run.metrics_file: "metrics.json",
        run.report_file: "report.md", run.plots: "plots", run.augment_file: "augment.png",
        run.tensorboard: "tensorboard", run.projector: "projector", run.index: "index",
        run.onnx_file(): "model.onnx", run.onnx_file("int8"): "model.int8.onnx",
    }  # fmt: skip
    for path, name in names.items():
        assert path == tmp_path / name


def test_metrics_are_merged_not_replaced(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_metrics() == {}
    run.write_metrics({"map_at_r": 0.5, "train_seconds": 3.0})
    merged = run.write_metrics({"map_at_r": 0.6})
    assert merged == {"map_at_r": 0.6, "train_seconds": 3.0}
    assert json.loads(run.metrics_file.read_text()) == merged


def test_checkpoint_round_trip_and_index(tmp_path):
    run = RunDir(tmp_path)
    embedders = {}
    for epoch in (1, 2, 3):
        torch.manual_seed(epoch)
        embedders[epoch] = Embedder()
        embedders[epoch].save(run.checkpoints / f"epoch-000{epoch}", {"epoch": epoch})
    run.point_checkpoints(last="epoch-0003", best="epoch-0001")
    kept = sorted(p.name for p in run.checkpoints.iterdir() if p.is_dir())
    assert kept == ["epoch-0001", "epoch-0003"]  # epoch 2 is named by nothing: deleted
    assert run.checkpoint() == resolve_checkpoint(tmp_path) == run.checkpoints / "epoch-0001"
    assert run.checkpoint("last").name == "epoch-0003"
    state, config = read_checkpoint(tmp_path, "last")
    assert config["epoch"] == 3
    for name, tensor in embedders[3].state_dict().items():
        assert torch.equal(state[name], tensor)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint(tmp_path / "checkpoints")


def test_no_module_but_runs_writes_a_run_file_name():
    """Every file name of a run folder is tripletlab.runs's: a literal elsewhere would be a
    second owner (docstrings and comments aside)."""
    import ast

    import tripletlab
    from tripletlab import runs

    names = {getattr(runs, constant) for constant in dir(runs) if constant.isupper()}
    names = {name for name in names if isinstance(name, str)}
    assert {"config.yaml", "metrics.json", "model.onnx", "checkpoints"} <= names
    source = Path(tripletlab.__file__).parent
    found = []
    for path in source.rglob("*.py"):
        if path.relative_to(source).parts[0] == "runs":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}  # fmt: skip
        # `name=` of a call, a dict key or a subscript name something else (the `tripletlab
        # index` command group, an "index" field of the API's JSON).
        docstrings |= {id(node.value) for node in ast.walk(tree)
                       if isinstance(node, ast.keyword) and node.arg == "name"}  # fmt: skip
        docstrings |= {id(key) for node in ast.walk(tree) if isinstance(node, ast.Dict)
                       for key in node.keys if key is not None}  # fmt: skip
        docstrings |= {id(node.slice) for node in ast.walk(tree)
                       if isinstance(node, ast.Subscript)}  # fmt: skip
        for node in ast.walk(tree):
            literal = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if literal and id(node) not in docstrings and node.value.strip("/ ") in names:
                found.append(f"{path.relative_to(source)}:{node.lineno} {node.value!r}")
    assert found == []


def test_partial_writes_of_a_killed_process_are_removed(tmp_path):
    run = RunDir(tmp_path)
    (run.checkpoints / "epoch-0001").mkdir(parents=True)
    stale = [run.checkpoints / ".epoch-0002.k3j2", tmp_path / ".history.json.a1b2.tmp",
             run.checkpoints / ".index.json.c3d4.tmp"]  # fmt: skip
    stale[0].mkdir()
    (stale[0] / "model.safetensors").write_bytes(b"half")
    for path in stale[1:]:
        path.write_text("half")
    (tmp_path / ".keep-me").write_text("not ours")
    assert sorted(run.remove_partial_writes()) == sorted(stale)
    assert not any(path.exists() for path in stale)
    assert (run.checkpoints / "epoch-0001").is_dir() and (tmp_path / ".keep-me").exists()


@pytest.mark.parametrize(
    "index",
    [{"best": "../../elsewhere"}, {"best": {"a": 1}}, {"best": ".hidden"}, [1, 2], {"best": ""}],
)
def test_a_damaged_checkpoint_index_is_refused(tmp_path, index):
    """An index may only name folders beside it: a path leading elsewhere is refused."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="is damaged"):
        resolve_checkpoint(tmp_path)


def test_a_missing_folder_named_by_the_index_falls_back_to_last(tmp_path):
    run = RunDir(tmp_path)
    for epoch in (1, 2):
        Embedder().save(run.checkpoints / f"epoch-000{epoch}")
    run.point_checkpoints(last="epoch-0002", best="epoch-0001")
    import shutil

    shutil.rmtree(run.checkpoints / "epoch-0001")  # e.g. a rename lost in a power cut
    assert run.checkpoint("best").name == "epoch-0002"


def test_a_run_with_only_a_mid_epoch_checkpoint_says_how_to_go_on(tmp_path):
    run = RunDir.create(RunConfig(), tmp_path / "my run")
    Embedder().save(run.checkpoints / "step-0000010")
    run.point_checkpoints(resume="step-0000010")
    assert run.checkpoint("resume").name == "step-0000010"
    with pytest.raises(FileNotFoundError, match=r"no finished epoch yet.*train --resume") as error:
        Embedder.from_pretrained(run.path)
    command = str(error.value).split(": ", 1)[1]  # a path with a space, quoted to be pasted
    assert shlex.split(command) == ["tripletlab", "train", "--resume", str(run.path)]


def test_runs_saved_before_newer_rules_still_load(tmp_path):
    """A saved config with settings later versions refuse before training, or without keys
    whose defaults changed, loads as it ran."""
    run = RunDir.create(RunConfig(), tmp_path / "run")
    run.config_file.write_text(
        "data: {dataset: mnist, train_split: 'train[:80%]'}\n"
        "train: {mode: triplets, sampler: pk, batch_size: 32, samples_per_class: 4}\n"
    )
    config = RunDir.open(run.path).read_config()
    assert config.train.sampler == "pk"  # ignored by explicit triplets, refused for new runs
    assert config.data.split_order == "global"  # the order its parts were cut in
