"""Progress bars outside training: on stderr, only on a terminal, descriptions as plain text."""

from __future__ import annotations

import pytest

from tripletlab.utils.progress import progress_bar

_TERMINAL = ("FORCE_COLOR", "TTY_COMPATIBLE")  # rich takes either as "this is a terminal"


def _run(description: str) -> None:
    with progress_bar() as progress:
        task = progress.add_task(description, total=3)
        for _ in range(3):
            progress.advance(task)


def test_on_a_terminal_a_description_is_shown_as_written_never_as_markup(monkeypatch, capsys):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    _run("decoding photos[/x] and [bold]")  # as rich markup: an error, then bold text
    captured = capsys.readouterr()
    assert "decoding photos[/x] and [bold]" in captured.err
    assert captured.out == ""


def test_a_pipe_or_a_log_gets_nothing(monkeypatch, capsys):
    for name in _TERMINAL:
        monkeypatch.delenv(name, raising=False)
    _run("decoding photos")
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("name", _TERMINAL)
def test_the_bar_follows_what_rich_takes_for_a_terminal(monkeypatch, name):
    for other in _TERMINAL:
        monkeypatch.delenv(other, raising=False)
    assert progress_bar().disable
    monkeypatch.setenv(name, "1")
    assert not progress_bar().disable
