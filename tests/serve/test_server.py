"""A real `tripletlab serve` process: started on a free port of 127.0.0.1, called over HTTP,
stopped with SIGTERM while a request is in flight."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import httpx
import pytest

from tests.serve.conftest import png
from tripletlab.serve.process import start_service

pytestmark = pytest.mark.slow


def test_serve_answers_over_http_and_stops_cleanly_on_sigterm(served_run, digits):
    process, base = start_service(served_run.path, "--max-wait-ms", "2",
                                  output=subprocess.PIPE)  # first start: exports ONNX  # fmt: skip
    try:
        info = httpx.get(f"{base}/v1/info", timeout=10).json()
        rebound = httpx.get(f"{base}/v1/info", headers={"host": "evil.example"}, timeout=10)
        assert rebound.status_code == 400  # bound to localhost: only its own names
        assert info["engine"] == "onnx" and info["index"]["count"] > 0
        files = [("images", (f"{i}.png", png(digits[i]), "image/png")) for i in range(32)]
        answer = {}

        def in_flight():
            answer["response"] = httpx.post(f"{base}/v1/search?k=5", files=files, timeout=60)

        caller = threading.Thread(target=in_flight)
        caller.start()
        time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        caller.join(60)
        assert answer["response"].status_code == 200  # finished, not cut
        assert len(answer["response"].json()["results"]) == 32
        # uvicorn raises the signal again once it has shut down, so that the parent sees it.
        assert process.wait(60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
    log = process.stdout.read()
    assert "POST /v1/search 200" in log and "GET /v1/info 200" in log
    assert "GET /v1/info 400" in log  # the refused Host: each request logged with its status
    assert "Traceback" not in log and "stopped (requests in flight were answered" in log
