"""A real S3-API server for tests: moto's server mode (``moto_server``, from the ``dev`` extra)
as a subprocess on a free port (tests/e2e/test_s3_sample_log.py, tests/extras)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``moto_server`` on a free port as a subprocess; returns it and its endpoint URL."""
    binary = Path(sys.executable).with_name("moto_server")  # this venv's, never another one's
    if not binary.exists():
        pytest.fail(f'no {binary}: pip install -e ".[dev]" brings moto[server]')
    port = port or _free_port()
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).read()
            return process, endpoint
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto_server did not start on port {port}")
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
