"""Whole-folder swaps (`atomic_folder`) and their recovery (`restore_interrupted`)."""

from __future__ import annotations

import fcntl
import os
import threading

import pytest

from tripletlab.utils.io import atomic_folder, restore_interrupted


def _write(directory, text):
    with atomic_folder(directory) as temp:
        (temp / "file").write_text(text)


def _read(directory):
    return (directory / "file").read_text()


def test_a_swap_replaces_the_folder_and_leaves_nothing_aside(tmp_path):
    _write(tmp_path / "ix", "v1")
    with atomic_folder(tmp_path / "ix") as temp:
        (temp / "sub").mkdir()  # a folder inside is synced and kept too (was IsADirectoryError)
        (temp / "sub" / "file").write_text("v2")
    assert (tmp_path / "ix" / "sub" / "file").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


def test_a_swap_cut_between_its_renames_is_undone_whatever_the_name(tmp_path):
    """A name with glob characters: the old folder used to stay aside, the folder missing."""
    for name in ("ix[1]", "a*b?"):
        _write(tmp_path / name, "v1")
        aside = tmp_path / f".{name}.old.abc123"
        aside.mkdir()
        (tmp_path / name).rename(aside / name)
        assert restore_interrupted(tmp_path / name)
        assert _read(tmp_path / name) == "v1" and not aside.exists()


def test_a_reader_waits_for_a_swap_in_progress(tmp_path):
    """A reader's restore between a writer's two renames moved the old folder back, and the
    writer's second rename then failed."""
    _write(tmp_path / "ix", "old")
    _write(tmp_path / "new", "new")
    aside = tmp_path / ".ix.old.abc123"
    handle = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(handle, fcntl.LOCK_EX)  # a writer in the middle of its swap
    aside.mkdir()
    (tmp_path / "ix").rename(aside / "ix")
    reader = threading.Thread(target=restore_interrupted, args=(tmp_path / "ix",))
    reader.start()
    reader.join(0.5)
    assert reader.is_alive() and not (tmp_path / "ix").exists()
    (tmp_path / "new").rename(tmp_path / "ix")  # the writer's second rename
    (aside / "ix").rename(aside / "superseded")
    os.close(handle)
    reader.join(10)
    assert _read(tmp_path / "ix") == "new" and not aside.exists()


def test_what_a_cut_cleanup_left_aside_never_comes_back(tmp_path):
    """A Ctrl-C while the old folder was being removed, then the user deletes the folder: the
    next read used to bring the old one back."""
    _write(tmp_path / "ix", "v1")
    aside = tmp_path / ".ix.old.abc123"
    aside.mkdir()
    (tmp_path / "ix").rename(aside / "superseded")
    assert not restore_interrupted(tmp_path / "ix")
    assert not (tmp_path / "ix").exists() and not aside.exists()


def test_an_old_folder_left_after_the_second_rename_is_removed(tmp_path):
    """A kill after the new folder was in place but before the old one was marked: the old
    one stayed restorable, and came back once the user deleted the folder."""
    _write(tmp_path / "ix", "old")
    aside = tmp_path / ".ix.old.abc123"
    aside.mkdir()
    (tmp_path / "ix").rename(aside / "ix")
    _write(tmp_path / "new", "new")
    (tmp_path / "new").rename(tmp_path / "ix")
    assert not restore_interrupted(tmp_path / "ix") and not aside.exists()
    assert _read(tmp_path / "ix") == "new"


def test_a_swap_held_up_by_a_stopped_process_says_so(tmp_path, monkeypatch):
    """Another process holding the folder's lock (stopped with Ctrl-Z, say): an error after
    a while, not a wait for ever."""
    from tripletlab.utils import io

    monkeypatch.setattr(io, "SWAP_WAIT_SECONDS", 0.2)
    _write(tmp_path / "ix", "v1")
    handle = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        with pytest.raises(TimeoutError, match="while replacing a folder in it"):
            _write(tmp_path / "ix", "v2")
    finally:
        os.close(handle)
    assert _read(tmp_path / "ix") == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]  # the new one removed
