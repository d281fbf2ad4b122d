"""Real network services on loopback for the edge's tests: an MQTT broker, RTSP cameras, a
live HTTP stream, a webhook receiver, and an MQTT subscriber that records what it hears.

- :func:`start_broker`: Debian's ``mosquitto`` with a generated config (plain, or TLS with a
  password file), optionally persistent so a restart keeps sessions and retained messages.
- :func:`start_camera`: ``tests/rtsp_server.py`` under the system Python (GStreamer's RTSP
  server): AAC audio from a WAV plus an MJPEG video track, like an IP camera.
- :func:`start_http_stream`: FFmpeg's own HTTP server sending MP3 at real time, like Icecast.
- :class:`Subscriber`: a paho client subscribed to ``#``, keeping every message.
- :class:`WebhookReceiver`: ``http.server`` on a thread, answering with scripted statuses.

Every binary comes from scripts/setup-system.sh (``make setup``); a missing one fails the
test with the package to install rather than skipping it.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"


def need(binary: str, package: str) -> str:
    """The binary's path; a clear failure (never a skip) naming the Debian package."""
    path = shutil.which(binary) or (binary if Path(binary).is_file() else None)
    if path is None:
        raise RuntimeError(f"{binary} is missing: run `make setup` (Debian package {package})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, log: IO[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"exited {proc.returncode}: {log.read()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- MQTT broker -------------------------------------------------------------------------------


@dataclass
class Broker:
    config: Path
    port: int
    proc: subprocess.Popen | None = None
    log: IO[str] = field(default_factory=lambda: tempfile.TemporaryFile("w+"))  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        binary = need("mosquitto", "mosquitto")
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_listening(self.port, self.proc, self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)  # SIGTERM: a persistent broker saves its state first

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()


def start_broker(
    directory: Path,
    *,
    certs: Path | None = None,
    users: dict[str, str] | None = None,
    persistent: bool = False,
) -> Broker:
    """mosquitto on 127.0.0.1: plaintext and anonymous, or TLS (``certs``: make-certs.sh's
    server.crt/key and ca.crt) with ``users`` as its password file."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        "user root",  # run as whoever started it (mosquitto drops root to 'mosquitto' otherwise)
        f"listener {port} 127.0.0.1",
        f"allow_anonymous {'false' if users else 'true'}",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
    ]
    if persistent:
        lines += ["persistence true", f"persistence_location {directory}/", "autosave_interval 1"]
    if certs is not None:
        lines += [
            f"cafile {certs / 'ca.crt'}",
            f"certfile {certs / 'server.crt'}",
            f"keyfile {certs / 'server.key'}",
        ]
    if users:
        passwords = directory / "passwords"
        tool = need("mosquitto_passwd", "mosquitto")
        for i, (user, password) in enumerate(users.items()):
            create = ["-c"] if i == 0 else []
            subprocess.run([tool, *create, "-b", str(passwords), user, password], check=True)
        lines.append(f"password_file {passwords}")
    config = directory / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    return Broker(config, port).start()


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """Subscribes to everything on a broker and keeps every message, in order."""

    def __init__(self, port: int, topic: str = "#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self.cond = threading.Condition()
        self.topic = topic
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-subscriber-{port}",
            clean_session=False,  # a persistent broker queues QoS 1 messages while we are away
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self.cond:
            self.messages.append(Message(msg.topic, msg.payload, bool(msg.retain), msg.qos))
            self.cond.notify_all()

    def on(self, topic: str) -> list[Message]:
        with self.cond:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> Message | None:
        found = self.on(topic)
        return found[-1] if found else None

    def wait(self, predicate: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise AssertionError(f"timed out waiting for {what}; topics seen: {topics}")
                self.cond.wait(min(left, 0.5))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- RTSP camera and live HTTP stream -------------------------------------------------------


@dataclass
class Camera:
    """A GStreamer RTSP server; ``setups()`` lists the tracks clients asked for."""

    wav: Path
    port: int = 0
    video: bool = True
    proc: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/mic"

    def start(self, timeout: float = 30) -> Camera:
        need(SYSTEM_PYTHON, "python3-gi")
        cmd = [SYSTEM_PYTHON, str(REPO / "tests" / "rtsp_server.py"), "--port", str(self.port)]
        cmd += ["--wav", str(self.wav)] + ([] if self.video else ["--no-video"])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        if not first.startswith("{"):
            stop_process(self.proc)
            raise RuntimeError(
                f"the RTSP server did not start (make setup installs python3-gi, "
                f"gir1.2-gst-rtsp-server-1.0 and the GStreamer plugins): {self.proc.stderr.read()}"
            )
        self.port = json.loads(first)["port"]
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line.strip())

    def setups(self) -> list[str]:
        return [line.split(" ", 1)[1] for line in self.lines if line.startswith("SETUP ")]

    def kill(self) -> None:
        """Gone at once, as a camera losing power: no RTSP TEARDOWN, no TCP goodbye."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)

    stop = kill


def start_http_stream(audio: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """FFmpeg serving ``audio`` as MP3 over HTTP at real time to one client, like Icecast."""
    ffmpeg = need("ffmpeg", "ffmpeg")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/stream.mp3"
    proc = subprocess.Popen(
        [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-i", str(audio),
            "-vn", "-c:a", "libmp3lame", "-b:a", "64k", "-content_type", "audio/mpeg",
            "-f", "mp3", "-listen", "1", url,
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    return proc, url


# --- webhook receiver -----------------------------------------------------------------------


class WebhookReceiver:
    """An HTTP server on loopback keeping every POST; ``statuses`` answers the first requests
    (e.g. ``[503, 503]``: two failures, then 200)."""

    def __init__(self, statuses: list[int] | None = None, port: int = 0) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner.cond:
                    status = owner.statuses.pop(0) if owner.statuses else 200
                    owner.requests.append((dict(self.headers), body, status))
                    owner.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def accepted(self) -> list[dict[str, Any]]:
        with self.cond:
            return [json.loads(body) for _, body, status in self.requests if status < 300]

    def wait(self, predicate: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self.cond.wait(min(left, 0.5))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
