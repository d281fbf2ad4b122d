"""Real `asc-server serve` processes on loopback for tests, with the ports they picked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, "-m", "server.cli", "serve"]


def child_pids(pid: int) -> list[int]:
    """A process's children (a server's are its ClassifyClip decoding processes). The kernel
    lists each under the thread that started it."""
    pids = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(c) for c in children.read_text().split()]
        except OSError:
            continue  # a thread that ended meanwhile
    return pids


def rss_mb(pid: int, children: bool = False) -> float:
    """A process's resident memory in MB; with ``children``, its children's too (the server's
    memory budget covers its decoding processes)."""
    total = 0.0
    for one in [pid] + (child_pids(pid) if children else []):
        try:
            status = Path(f"/proc/{one}/status").read_text()
        except OSError:
            if one == pid:
                raise
            continue  # a child that ended meanwhile
        total += next(
            int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")
        )
    return total


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    port: int
    metrics_port: int
    ready: dict
    log: IO[str]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics(self) -> str:
        from urllib.request import urlopen

        with urlopen(self.metrics_url, timeout=10) as reply:
            return reply.read().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read()


def run_stream(target: str, reqs) -> tuple[list, Exception | None]:
    """All results of one StreamScenes call, and the RpcError it ended with (None: OK)."""
    import grpc

    from proto import scene_classifier_pb2_grpc as pbg

    with grpc.insecure_channel(target) as channel:
        results = []
        try:
            for result in pbg.SceneClassifierStub(channel).StreamScenes(reqs, timeout=120):
                results.append(result)
        except grpc.RpcError as e:
            return results, e
    return results, None


def start_server(*args: str, port: int = 0, timeout: float = 120.0) -> ServerProcess:
    """Start a server on 127.0.0.1 (CPU, shipped models unless ``args`` say otherwise)."""
    cmd = [
        *SERVER,
        "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0", "--device", "cpu",
        *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ASC_LOG_LEVEL": "WARNING"}
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - a file, not a pipe, never blocks it
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited {proc.returncode}: {log.read()}")
            continue
        if line.startswith("{"):
            ready = json.loads(line)
            return ServerProcess(proc, ready["port"], ready["metrics_port"], ready, log)
    proc.kill()
    raise RuntimeError("server did not report its ports in time")


def hold_idle_stream(server: ServerProcess, seconds: float = 60.0) -> threading.Thread:
    """A second device's stream, open and silent, so a window another stream sends waits the
    batch delay for it (a lone stream's windows run at once) until the server ends it."""
    from proto import scene_classifier_pb2 as pb

    def requests():
        config = pb.StreamConfig(device_id="idle", codec="pcm16", sample_rate=44100, channels=1)
        yield pb.StreamRequest(config=config)
        time.sleep(seconds)

    thread = threading.Thread(target=run_stream, args=(server.target, requests()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while "asc_active_streams 1.0" not in server.metrics():
        if time.monotonic() > deadline:
            raise RuntimeError("the idle stream did not open")
        time.sleep(0.05)
    return thread
