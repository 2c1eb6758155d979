"""Starting `tripletlab serve` as a child process on a free port of 127.0.0.1 and waiting
until it is ready (for scripts, benchmarks and tests)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(
    run_dir: str | Path, *flags: str, timeout: float = 120.0, output: Any = subprocess.DEVNULL
) -> tuple[subprocess.Popen, str]:
    """`tripletlab serve RUN_DIR FLAGS...` on a free port, once `/readyz` answers 200.

    Args:
        output: where the child's stdout and stderr go (`subprocess.PIPE` to read its log).
    Returns:
        The process and its base URL, `http://127.0.0.1:PORT`.
    Raises:
        RuntimeError: the service exited, or was not ready within `timeout` seconds (then it
            is killed).
    """
    port = free_port()
    command = str(Path(sys.executable).with_name("tripletlab"))  # the installed command
    process = subprocess.Popen([command, "serve", str(run_dir), "--port", str(port), *flags],
                               stdout=output, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tripletlab serve exited with status {process.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"tripletlab serve was not ready after {timeout:.0f} s")
