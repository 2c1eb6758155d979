"""`tripletlab index ...`, `search` and `match` through the command's runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tripletlab.cli.main import app
from tripletlab.data import load_mnist
from tripletlab.index import EmbeddingIndex

pytestmark = pytest.mark.slow
runner = CliRunner()
TRIPLETLAB = str(Path(sys.executable).with_name("tripletlab"))


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"{args}\n{result.output}"
    return result.output


def _fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, f"{args}\n{result.output}"
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def indexed(run_04, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ix"
    _ok("index", "build", str(run_04.path), "--out", str(out))
    return run_04, out


def test_build_info_calibrate_search_match(indexed, tmp_path):
    run, out = indexed
    info = _ok("index", "info", str(out))
    assert "3,600" in info and "not calibrated" in info and "0: " in info
    table = _ok("index", "calibrate", str(out), "--precision", "0.9", "--precision", "0.99")
    assert "recall" in table and "0.99" in table and "let in" in table
    digit = tmp_path / "digit.png"
    Image.fromarray(load_mnist("test").images[3]).save(digit)  # a 0
    lines = _ok("search", str(run.path), str(digit), "mnist:test:1", "-k", "3", "--index",
                str(out), "--json").splitlines()  # fmt: skip
    first, second = (json.loads(line) for line in lines)
    assert first["query"] == str(digit) and len(first["neighbours"]) == 3
    assert first["neighbours"][0]["label"] == "0" and second["neighbours"][0]["label"] == "2"
    distances = [n["distance"] for n in first["neighbours"]]
    assert distances == sorted(distances)
    assert "mnist:train:" in _ok("search", str(run.path), str(digit), "--index", str(out))
    _ok("search", str(run.path), "mnist:test:1", "--index", str(out), "--grid",
        str(tmp_path / "grid.png"))  # fmt: skip
    assert Image.open(tmp_path / "grid.png").size[0] > 300
    verdicts = [json.loads(line) for line in _ok(
        "match", str(run.path), "mnist:test:3", "mnist:test:0", "--index", str(out), "--json",
        "--threshold", "0.3").splitlines()]  # fmt: skip
    assert verdicts[0]["label"] == "0" and verdicts[0]["threshold"] == 0.3
    assert "threshold" in _ok("match", str(run.path), "mnist:test:0", "--index", str(out))
    assert "not calibrated for" not in _ok("match", str(run.path), "mnist:test:0", "--index",
                                           str(out), "--precision", "0.9")  # fmt: skip
    assert "precision 0.95 was not calibrated" in _fails(
        "match", str(run.path), "mnist:test:0", "--index", str(out), "--precision", "0.95"
    )
    for bad in ("nan", "-1"):  # never NaN in the JSON lines, never every query unknown
        assert "a distance threshold is a finite number >= 0" in _fails(
            "match", str(run.path), "mnist:test:0", "--index", str(out), "--json",
            "--threshold", bad)  # fmt: skip
    empty = EmbeddingIndex(EmbeddingIndex.load(out).dim, "L2")
    empty.save(tmp_path / "empty")
    line = _ok("match", str(run.path), "mnist:test:0", "--index", str(tmp_path / "empty"),
               "--threshold", "1", "--json")  # fmt: skip
    verdict = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert verdict["label"] == "unknown" and verdict["distance"] is None


def test_add_remove_and_the_errors_a_user_can_make(indexed, tmp_path, monkeypatch):
    run, built = indexed
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # what rich would take for a terminal
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "ix"
    made = _ok("index", "build", str(run.path), "--out", str(out), "--split", "test")
    assert "" not in made.splitlines()  # not a terminal: no bar, and no line a bar left
    folder = tmp_path / "new" / "seven"
    folder.mkdir(parents=True)
    for i, image in enumerate(load_mnist("test").images[[0, 17]]):
        Image.fromarray(image).save(folder / f"{i}.png")
    (folder / "bad.png").write_text("not an image")
    added = _ok("index", "add", str(out), str(tmp_path / "new"))
    assert "added 2 images" in added and "1 unreadable files skipped" in added
    ids = added.split("ids ")[1].split(" ")[0].split("..")
    assert "removed 2 items" in _ok("index", "remove", str(out), *ids)
    assert "no item with id" in _fails("index", "remove", str(out), ids[0])
    assert "need a label" in _fails("index", "add", str(out), str(folder / "0.png"))
    sevens = tmp_path / "sevens"  # a gallery of a class the run's data does not have
    decoded = _ok("index", "build", str(run.path), "--dataset", str(tmp_path / "new"), "--out",
                  str(sevens))  # fmt: skip
    assert "" not in decoded.splitlines()  # decoding the folder, then embedding it
    assert "none of the classes" in _fails("index", "calibrate", str(sevens))
    one = _ok("index", "add", str(out), str(folder / "0.png"), "--label", "seven")
    assert "added 1 image as id " in one
    assert "removed 1 item\n" in _ok("index", "remove", str(out), one.split("as id ")[1].split()[0])
    # Errors: no index, a damaged one, another model's, a bad image, a bad k.
    # (a folder without an index: RUN_DIR/index may exist, the service tests build one there)
    assert "tripletlab index build" in _fails("search", str(run.path), "mnist:test:0",
                                              "--index", str(tmp_path / "none"))  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["model_sha256"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert "--force" in _fails("search", str(run.path), "mnist:test:0", "--index", str(out))
    _ok("search", str(run.path), "mnist:test:0", "--index", str(out), "--force")
    (tmp_path / "x.png").write_bytes(b"\x89PNG truncated")
    assert "cannot read image" in _fails("search", str(run.path), str(tmp_path / "x.png"),
                                         "--index", str(built))  # fmt: skip
    assert "k must be" in _fails("search", str(run.path), "mnist:test:0", "-k", "0", "--index",
                                 str(built))  # fmt: skip
    assert "MNIST test has 10000" in _fails("search", str(run.path), "mnist:test:10000",
                                            "--index", str(built))  # fmt: skip
    assert "unknown index kind" in _fails("index", "build", str(run.path), "--kind", "annoy",
                                          "--out", str(tmp_path / "other"))  # fmt: skip
    assert "not an index folder" in _fails("index", "build", str(run.path), "--out",
                                           str(run.path))  # a run is never replaced  # fmt: skip
    assert (run.path / "config.yaml").is_file()
    (out / "faiss.index").write_bytes(b"garbage")
    assert "damaged" in _fails("index", "info", str(out))


def test_a_source_that_is_not_utf8_is_printed_in_any_locale(indexed, tmp_path):
    """A gallery file named in Latin-1, through the console script with Python's strict
    UTF-8 streams (any UTF-8 locale but C): the table and the JSON were a traceback."""
    run, built = indexed
    out = tmp_path / "ix"
    shutil.copytree(built, out)
    latin = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.png")
    Image.fromarray(load_mnist("test").images[3]).save(latin)
    _ok("index", "add", str(out), latin, "--label", "0")
    command = [TRIPLETLAB, "search", str(run.path), latin, "-k", "1", "--index", str(out)]
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "300"}
    for as_json in (False, True):
        done = subprocess.run(command + ["--json"] * as_json, capture_output=True,
                              env=environment, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        if as_json:  # U+FFFD, as the service shows it, in ASCII whatever the locale
            assert done.stdout.isascii()
            hit = json.loads(done.stdout)["neighbours"][0]
            assert hit["source"] == f"{tmp_path}/caf\ufffd.png" and hit["distance"] < 1e-4
        else:
            assert b"caf\\udce9.png" in done.stdout
