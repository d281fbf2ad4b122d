"""This server beside BentoML, the model server a user would pick instead, in one run: the same
compact ensemble and front end, fed the same 10 s clips by the same number of concurrent clients.

Run: make bench-peer    (installs the peer's own lock, requirements/bench-peer.txt, then this)
     .venv/bin/python -m benchmarks.peer_bentoml [--clients 1,8,32] [--clips 160] [--quick]

Goal (issue 18): at 32 clients this server delivers at least 1.5x BentoML's clips per second
with a lower p99 latency. The table says whether it is met; nothing here is tuned per side.

Both servers run in processes of their own on this machine, started once; at each client count
each is loaded in turn while the other idles (the order alternates between counts, so a drift of
a shared machine does not favour one side). This process holds only the clients, a thread each,
and a client has one clip out at a time (its result back before it sends the next): the same
closed-loop load for both. The clips are the ten ``samples/`` recordings (10 s, 44.1 kHz mono,
16-bit), sent to both as the same 16-bit PCM, so neither pays for a decode the other skips:

- this server: ``asc-server serve`` as shipped, on the CPU (its default runtime, ONNX Runtime,
  and its batcher's defaults), without the detector, since the peer serves the ensemble alone,
  and without the per-stream classification rate: a client here sends 30x real time, which that
  budget exists to stop. Each client is a device with one gRPC stream, codec ``pcm16``, 0.5 s
  packets (asc-edge's default).
- BentoML: ``bentoml serve`` of ``PeerEnsemble`` below, one worker loading the same checkpoint
  with this project's loader (``server.inference.SceneRunner``: the same front end and runtime),
  its endpoint batchable (adaptive batching, ``max_batch_size`` this server's ``--max-batch``,
  ``max_latency_ms`` BentoML's default), taking the clip as a WAV file through
  ``bentoml.SyncHTTPClient``: the way BentoML documents sending a file (a multipart upload;
  arrays go as JSON lists of numbers, whose text would cost more than the model).

Latency is per clip, from the client starting to send it to its result back. The table also
gives the CPU each side spent per clip (the server's processes, and this client process): on a
machine shared with other work those move less than clips per second do.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

try:
    import bentoml
except ImportError:  # benchmark-only: `make bench-peer` installs it from its own lock
    bentoml = None

ROOT = Path(__file__).resolve().parent.parent
ENSEMBLE = ROOT / "models" / "ensemble.safetensors"
SAMPLES = ROOT / "samples"
RATE = 44100
MAX_BATCH = 64  # asc-server serve --max-batch's default: the most clips either side batches
PACKET_SECONDS = 0.5  # asc-edge --packet-ms default: what a device streams
RUNTIME_ENV = "ASC_PEER_RUNTIME"  # the peer's runtime, as --runtime reads it (auto: ONNX on CPU)
WORKERS_ENV = "ASC_PEER_WORKERS"
WARM_CLIPS = 12  # enough for BentoML's dispatcher to finish fitting its latency model
SERVICE = "benchmarks.peer_bentoml:PeerEnsemble"  # what `bentoml serve` imports


if bentoml is not None:
    # One worker, like the server's one inference thread; BentoML's 60 s request timeout raised
    # so that 32 clients queued on a shared machine are measured, not cut off.
    @bentoml.service(workers=int(os.environ.get(WORKERS_ENV, "1")), traffic={"timeout": 600})
    class PeerEnsemble:
        """The shipped ensemble behind BentoML, loaded exactly as this server loads it, so the
        two sides differ only in how they take clips in, batch them and answer."""

        def __init__(self) -> None:
            import torch

            from server.inference import SceneRunner

            runtime = os.environ.get(RUNTIME_ENV, "auto")
            self.runner = SceneRunner(ENSEMBLE, torch.device("cpu"), runtime)
            self.threads = torch.get_num_threads()

        @bentoml.api(batchable=True, max_batch_size=MAX_BATCH)
        def classify(self, audio: list[Path]) -> list[dict[str, Any]]:
            """Batchable: BentoML's dispatcher hands over every clip waiting together, and the
            runner cuts them into CPU passes exactly as it does inside this server."""
            waves = []
            for path in audio:
                wave, rate = soundfile.read(path, dtype="float32")
                if rate != self.runner.rate or wave.ndim != 1:
                    raise ValueError(f"want mono {self.runner.rate} Hz, got {rate} Hz")
                waves.append(wave)
            classes = self.runner.fine_classes
            return [
                {"label": classes[int(out.scores.argmax())], "scores": out.scores.tolist()}
                for out in self.runner(waves)
            ]

        @bentoml.api
        def info(self) -> dict[str, Any]:
            """For the table's header: the peer ran the runtime and threads it was meant to."""
            return {"runtime": self.runner.runtime.name, "threads": self.threads}


@dataclass
class Clip:
    name: str
    wav: Path  # what a BentoML client uploads
    packets: list[bytes]  # what this server's stream carries, the same samples as pcm16


def load_clips(folder: Path) -> list[Clip]:
    """The sample recordings as both sides receive them, prepared before anything is timed."""
    from asc.codecs.stream import StreamEncoder

    clips = []
    for path in sorted(SAMPLES.glob("*.flac")):
        pcm, rate = soundfile.read(path, dtype="float32")
        if rate != RATE or pcm.ndim != 1:
            raise ValueError(f"{path}: want mono {RATE} Hz")
        wav = folder / f"{path.stem}.wav"
        soundfile.write(wav, pcm, RATE, subtype="PCM_16")
        encoder = StreamEncoder("pcm16", RATE, 1)
        step = int(PACKET_SECONDS * RATE)
        packets = [encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
        packets[-1] += encoder.finish()
        clips.append(Clip(path.stem, wav, packets))
    return clips


def free_port() -> int:
    """`bentoml serve` wants a port number; it cannot be told 0 and report what it got."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(log: Path, chars: int = 3000) -> str:
    """The end of a server's log, for the error: the log's folder goes when the run ends."""
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (BentoML's workers are)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass
class Side:
    """One server under test: its process, a client factory, and what it told us at start."""

    name: str
    proc: subprocess.Popen
    connect: Callable[[], Callable[[int, Clip], str]]  # a client: (n, clip) -> label
    close_all: Callable[[], None]
    note: str

    def stop(self) -> None:
        self.close_all()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_ours(log: Path, extra: list[str]) -> Side:
    """``asc-server serve`` as shipped on the CPU, minus the detector and the per-stream rate;
    ``extra`` flags come last, to see what a setting is worth beside the same peer."""
    import json

    import grpc

    from proto import scene_classifier_pb2 as pb
    from proto import scene_classifier_pb2_grpc as pbg

    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--metrics-port", "0", "--device", "cpu", "--detector", "none"]
    cmd += ["--classify-rate", "0", *extra]
    with open(log, "w") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )
    assert proc.stdout is not None
    ready = None
    for line in proc.stdout:
        if line.startswith("{"):
            ready = json.loads(line)
            break
    if ready is None:
        raise RuntimeError(f"asc-server exited {proc.wait()} before listening:\n{tail(log)}")
    target = f"127.0.0.1:{ready['port']}"
    clients: list[StreamClient] = []
    devices = itertools.count()  # each client its own device: a repeated id is answered from memory

    def connect() -> Callable[[int, Clip], str]:
        client = StreamClient(grpc.insecure_channel(target), pb, pbg, f"bench-{next(devices)}")
        clients.append(client)
        return client.send

    def close_all() -> None:
        for client in clients:
            client.close()
        clients.clear()

    note = f"runtime {ready['runtime']}, device {ready['device']}"
    return Side("this server", proc, connect, close_all, note)


class StreamClient:
    """One device: one gRPC stream for all its clips, one clip out at a time, as an edge with
    ``--max-in-flight 1`` sends them."""

    def __init__(self, channel: Any, pb: Any, pbg: Any, device_id: str):
        self.pb = pb
        self.outbox: list[Any] = []
        self.ready = threading.Condition()
        self.sequence = 0
        config = pb.StreamConfig(device_id=device_id, codec="pcm16", sample_rate=RATE, channels=1)
        self.outbox.append(pb.StreamRequest(config=config))
        self.channel = channel
        self.results = iter(pbg.SceneClassifierStub(channel).StreamScenes(self.requests()))

    def requests(self) -> Iterator[Any]:
        while True:
            with self.ready:
                self.ready.wait_for(lambda: self.outbox)
                item = self.outbox.pop(0)
            if item is None:
                return
            yield item

    def send(self, n: int, clip: Clip) -> str:
        packets = []
        for i, payload in enumerate(clip.packets):
            end = i == len(clip.packets) - 1
            packet = self.pb.AudioPacket(
                sequence=self.sequence, clip_id=f"c{n}", payload=payload, end_of_clip=end
            )
            packets.append(self.pb.StreamRequest(packet=packet))
            self.sequence += 1
        with self.ready:
            self.outbox.extend(packets)
            self.ready.notify()
        for result in self.results:
            if result.clip_summary:
                return result.fine_label
        raise RuntimeError("the stream ended before the clip's summary")

    def close(self) -> None:
        """End the stream as a device does (the server then closes it), then the channel."""
        with self.ready:
            self.outbox.append(None)
            self.ready.notify()
        for _ in self.results:
            pass
        self.channel.close()


def start_peer(log: Path, runtime: str, workers: int) -> Side:
    """``bentoml serve`` of PeerEnsemble, ready once its worker has loaded the checkpoint."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--working-dir", str(ROOT)]
    env = {**os.environ, RUNTIME_ENV: runtime, WORKERS_ENV: str(workers)}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    clients: list[Any] = []
    try:
        first = bentoml.SyncHTTPClient(url, server_ready_timeout=300, timeout=600)
    except Exception as e:
        os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"bentoml serve did not become ready: {e}\n{tail(log)}") from e
    clients.append(first)
    info = first.info()

    def connect() -> Callable[[int, Clip], str]:
        client = bentoml.SyncHTTPClient(url, timeout=600)
        clients.append(client)
        return lambda n, clip: client.classify(audio=[clip.wav])[0]["label"]

    def close_all() -> None:
        for client in clients:
            client.close()
        clients.clear()

    note = f"runtime {info['runtime']}, {info['threads']} threads, {workers} worker(s)"
    return Side(f"BentoML {bentoml.__version__}", proc, connect, close_all, note)


@dataclass
class Level:
    clips_per_second: float
    latencies: list[float]
    server_cpu: float  # seconds per clip, the server's processes
    client_cpu: float  # seconds per clip, this process
    labels: dict[tuple[int, int], str] = field(default_factory=dict)
    failed: int = 0

    def p(self, q: float) -> float:
        """Latency percentile in ms; NaN when every clip failed, so the row shows it."""
        return 1000 * float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


def run_level(side: Side, clients: int, per_client: int, clips: list[Clip]) -> Level:
    """``clients`` threads, each sending ``per_client`` clips one at a time, all started at once
    once every client is connected (connecting is not timed)."""
    senders = [side.connect() for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    labels: dict[tuple[int, int], str] = {}
    failed = [0] * clients

    def client(k: int) -> None:
        start.wait()
        for j in range(per_client):
            clip_index = (k + j) % len(clips)
            began = time.perf_counter()
            try:
                labels[(k, j)] = senders[k](j, clips[clip_index])
            except Exception:
                failed[k] += 1
                continue
            latencies[k].append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    cpu0, own0 = tree_cpu_seconds(side.proc.pid), time.process_time()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    done = sum(len(x) for x in latencies)
    cpu1, own1 = tree_cpu_seconds(side.proc.pid), time.process_time()
    side.close_all()
    return Level(
        clips_per_second=done / elapsed,
        latencies=[x for xs in latencies for x in xs],
        server_cpu=(cpu1 - cpu0) / max(done, 1),
        client_cpu=(own1 - own0) / max(done, 1),
        labels=labels,
        failed=sum(failed),
    )


def table(counts: list[int], ours: dict[int, Level], peer: dict[int, Level], name: str) -> None:
    """One Markdown table, printed by rich, so it pastes into docs/performance.md as is."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    out = Table(box=box.MARKDOWN)
    for head in (
        "clients",
        "this server clips/s",
        f"{name} clips/s",
        "ratio this/peer",
        "this p50 / p99 ms",
        "peer p50 / p99 ms",
        "server CPU ms/clip this / peer",
        "client CPU ms/clip this / peer",
        "same labels",
        "failed this / peer",
    ):
        out.add_column(head, justify="left" if head == "clients" else "right")
    for n in counts:
        a, b = ours[n], peer[n]
        shared = [key for key in a.labels if key in b.labels]
        same = sum(a.labels[k] == b.labels[k] for k in shared) / max(len(shared), 1)
        out.add_row(
            str(n),
            f"{a.clips_per_second:.1f}",
            f"{b.clips_per_second:.1f}",
            f"{a.clips_per_second / b.clips_per_second:.2f}x",
            f"{a.p(50):.0f} / {a.p(99):.0f}",
            f"{b.p(50):.0f} / {b.p(99):.0f}",
            f"{1000 * a.server_cpu:.0f} / {1000 * b.server_cpu:.0f}",
            f"{1000 * a.client_cpu:.0f} / {1000 * b.client_cpu:.0f}",
            f"{100 * same:.1f} %",
            f"{a.failed} / {b.failed}",
        )
    console = Console(width=250)
    with console.capture() as captured:
        console.print(out)
    # The Markdown box draws its top and bottom edges as blank lines; a table pastes without them.
    print("\n".join(line.rstrip() for line in captured.get().splitlines() if line.strip()))


def verdict(ours: Level, peer: Level, clients: int) -> str:
    """The issue's goal, stated with its figures, so a run cannot be read as meeting it when
    it does not."""
    ratio = ours.clips_per_second / peer.clips_per_second
    met = ratio >= 1.5 and ours.p(99) < peer.p(99) and not (ours.failed or peer.failed)
    return (
        f"goal at {clients} clients (>= 1.5x the peer's clips/s with a lower p99): "
        f"{'met' if met else 'missed'} ({ratio:.2f}x; p99 {ours.p(99):.0f} against "
        f"{peer.p(99):.0f} ms)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32", help="client counts (default: 1,8,32)")
    parser.add_argument(
        "--clips", type=int, default=160,
        help="clips per client count and server, split evenly over the clients (default: 160)",
    )  # fmt: skip
    parser.add_argument(
        "--peer-runtime", default="auto", choices=("auto", "eager", "onnxruntime", "openvino"),
        help="the peer's forward passes (default: auto, what this server runs on a CPU)",
    )  # fmt: skip
    parser.add_argument("--peer-workers", type=int, default=1, help="BentoML workers (default 1)")
    parser.add_argument(
        "--server-args", default="",
        help="more asc-server serve flags, e.g. '--max-delay-ms 2' (default: none, as shipped)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="1 and 4 clients, 8 clips each")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.clips = "1,4", 8
    return args


def main() -> None:
    if bentoml is None:
        sys.exit("BentoML is not installed: `make bench-peer` installs requirements/bench-peer.txt")
    args = parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    ours: dict[int, Level] = {}
    peer: dict[int, Level] = {}
    with tempfile.TemporaryDirectory(prefix="peer-bench-") as tmp:
        folder = Path(tmp)
        clips = load_clips(folder)
        sides = [start_ours(folder / "asc-server.log", shlex.split(args.server_args))]
        try:
            sides.append(start_peer(folder / "bentoml.log", args.peer_runtime, args.peer_workers))
            for side in sides:  # first passes, and BentoML's dispatcher fits its latency model
                run_level(side, 1, WARM_CLIPS, clips)
            for i, n in enumerate(counts):
                for side in sides if i % 2 == 0 else sides[::-1]:
                    level = run_level(side, n, max(1, args.clips // n), clips)
                    (ours if side is sides[0] else peer)[n] = level
        finally:
            for side in sides:
                side.stop()
    print(
        f"# {len(clips)} sample clips of 10 s, 16-bit PCM to both; {args.clips} clips per count "
        f"and server; {os.cpu_count()} cores; this server: {sides[0].note}"
        f"{' ' + args.server_args if args.server_args else ''}; "
        f"{sides[1].name}: {sides[1].note}"
    )
    table(counts, ours, peer, sides[1].name)
    if 32 in counts:
        print(verdict(ours[32], peer[32], 32))


if __name__ == "__main__":
    main()
