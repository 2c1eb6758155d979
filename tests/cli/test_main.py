"""The console entry point's logging: once per job under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_SCRIPT = """
import logging, warnings
from tripletlab.cli.main import configure_logging
configure_logging()
log = logging.getLogger("tripletlab.data")
log.warning("skipped 3 unreadable images")
warnings.warn("BatchNorm stays per rank")
log.error("the cache cannot be written")
"""


def _stderr(rank: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "RANK"}
    if rank is not None:
        env["RANK"] = rank
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    return done.stderr


@pytest.mark.parametrize("rank", [None, "0"])
def test_one_process_and_rank_0_show_warnings_and_errors(rank):
    err = _stderr(rank)
    assert "WARNING: skipped 3 unreadable images" in err
    assert "BatchNorm stays per rank" in err
    assert "ERROR: the cache cannot be written" in err
    assert not err.startswith("rank")  # only the other ranks mark their lines


def test_other_ranks_show_only_errors_marked_with_their_rank():
    err = _stderr("1")
    assert "skipped 3 unreadable images" not in err
    assert "BatchNorm stays per rank" not in err
    assert "rank 1: ERROR: the cache cannot be written" in err
