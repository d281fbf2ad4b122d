"""Wire efficiency: bytes on the wire per codec payload byte, per codec path, with its causes.

Run: .venv/bin/python -m benchmarks.wire_efficiency [--paths opus:32k,mp3:64k] [--quick]

The real edge library (``edge.client.stream_clips``, default packetization) streams samples/
through each codec path in turn to a real ``asc-server serve`` on loopback, through a TCP relay
in this process that counts the bytes the edge sends. Per path, side by side:

- ``framed / payload``: the codec stream's own framing (asc/codecs/stream.py: kind byte and
  varint length per codec packet, plus a header and an end frame per clip);
- ``wire / payload``: the serialized StreamRequest messages the client counts
  (``PathTotals.wire_ratio``: framing plus each AudioPacket's fields, and the config) - the
  figure the goal is set on (at most 1.05 for opus:32k);
- ``TCP / payload``: what really crossed the socket: the messages plus gRPC's 5-byte message
  prefix, HTTP/2 frame headers, HPACK headers, settings, window updates and pings;
- ``+ TCP/IP``: that plus 52 bytes of IPv4 and TCP headers (with timestamps) for at least one
  segment per message, an estimate of what a network link would carry.

Codec packets per second come from encoding the same clips again with the same encoder;
messages per second from the server's own ``asc_packets_total`` counter.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from asc.codecs.stream import StreamEncoder
from edge.client import canonical_codecs, stream_clips
from edge.sources import file_clips

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
RATE = 44100
GOAL = {"opus:32k": 1.05}
PATHS = (
    "pcm16,flac,opus:32k,opus:64k,mp3:32k,mp3:64k,aac:32k,aac:64k,he-aac:16k,he-aac:32k,"
    "vorbis:128k,sbc:bitpool=53,aptx,sbc:bitpool=53>aac:64k"
)
QUICK_PATHS = "opus:32k,mp3:64k,he-aac:16k"
TCP_IP_HEADER_BYTES = 52  # IPv4 20 + TCP 20 + timestamps option 12


class CountingRelay:
    """A loopback TCP relay to ``upstream`` that counts the bytes in each direction."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Condition()
        self.sent = 0  # client -> server
        self.received = 0  # server -> client
        self.open = 0  # connections not yet closed
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.open += 1
            done = threading.Barrier(2, action=lambda c=client, s=server: self._closed(c, s))
            threading.Thread(
                target=self._pump, args=(client, server, True, done), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, False, done), daemon=True
            ).start()

    def _closed(self, a: socket.socket, b: socket.socket) -> None:
        a.close()
        b.close()
        with self.lock:
            self.open -= 1
            self.lock.notify_all()

    def _pump(self, src, dst, upward: bool, done: threading.Barrier) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                with self.lock:
                    if upward:
                        self.sent += len(data)
                    else:
                        self.received += len(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            done.wait()

    def settle(self, timeout: float = 10.0) -> tuple[int, int]:
        """Wait for every connection to close; the (sent, received) byte counts."""
        with self.lock:
            self.lock.wait_for(lambda: self.open == 0, timeout)
            return self.sent, self.received

    def close(self) -> None:
        self.listener.close()


def codec_packets(spec: str, files: list[Path], packet_ms: float) -> int:
    """Codec packets per clip path, counted by encoding the clips as the edge does."""
    step = round(RATE * packet_ms / 1000)
    total = 0
    for clip in file_clips(files, rate=RATE):
        encoder = StreamEncoder(spec, RATE, 1)
        for chunk in clip.chunks(step):
            encoder.encode(chunk)
        encoder.finish()
        total += encoder.packets
    return total


def server_counter(text: str, name: str, spec: str) -> float:
    """One labelled sample from Prometheus text (label values are escaped as strings)."""
    label = spec.replace("\\", "\\\\").replace('"', '\\"')
    pattern = rf'^{name}\{{codec_path="{re.escape(label)}"\}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@dataclass
class PathWire:
    spec: str
    audio_seconds: float
    payload: int
    framed: int
    wire: int
    tcp: int
    codec_packets: int
    clips: int
    messages: int  # as the server counted them


def measure_path(server, relay: CountingRelay, spec: str, files: list[Path], packet_ms: float):
    before, _ = relay.settle()
    metrics_before = server.metrics()
    report = stream_clips(relay.target, [spec], file_clips(files, rate=RATE), packet_ms=packet_ms)
    after, _ = relay.settle()
    metrics_after = server.metrics()
    t = report.totals[spec]
    if t.clips != len(files):
        raise RuntimeError(f"{spec}: {t.clips} of {len(files)} clips summarised")
    messages = server_counter(metrics_after, "asc_packets_total", spec) - server_counter(
        metrics_before, "asc_packets_total", spec
    )
    received = server_counter(metrics_after, "asc_payload_bytes_total", spec) - server_counter(
        metrics_before, "asc_payload_bytes_total", spec
    )
    if int(received) != t.framed_bytes:
        raise RuntimeError(f"{spec}: server got {received:.0f} bytes, edge sent {t.framed_bytes}")
    return PathWire(
        spec,
        t.audio_seconds,
        t.payload_bytes,
        t.framed_bytes,
        t.wire_bytes,
        after - before,
        codec_packets(spec, files, packet_ms),
        t.clips,
        int(messages),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", help=f"comma list of codec paths (default: {PATHS})")
    parser.add_argument(
        "--files",
        type=int,
        default=0,
        help="sample files to stream (0: all) (default: %(default)s)",
    )
    parser.add_argument("--packet-ms", type=float, default=500.0, help="the edge's default")
    parser.add_argument("--quick", action="store_true", help="2 files, 3 paths")
    args = parser.parse_args()
    if args.quick:
        args.files = args.files or 2
    specs = canonical_codecs(args.paths or (QUICK_PATHS if args.quick else PATHS), RATE, 1)
    files = sorted(SAMPLES.glob("*.flac"))
    files = files[: args.files] if args.files else files
    if not files:
        raise SystemExit(f"no sample clips in {SAMPLES} (scripts/make_samples.py makes them)")

    audio = sum(sf.info(str(f)).duration for f in files)

    from tests.servers import start_server  # the same loopback server the tests run

    server = start_server("--detector", "none")
    relay = CountingRelay(("127.0.0.1", server.port))
    rows: list[PathWire] = []
    try:
        print(
            f"# wire efficiency: {len(files)} sample clip(s), {audio:.0f} s per path; edge "
            f"library, {args.packet_ms:g} ms packets (default 500); real server on loopback"
        )
        print()
        print(
            "| path | payload kbps | codec packets/s | mean codec packet (B) | messages/s "
            "| mean message (B) | framed / payload | wire / payload | TCP / payload "
            "| + TCP/IP (est.) | goal |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for spec in specs:
            w = measure_path(server, relay, spec, files, args.packet_ms)
            rows.append(w)
            ratio = w.wire / w.payload
            goal = GOAL.get(spec)
            verdict = "-" if goal is None else f"<= {goal}: {'met' if ratio <= goal else 'missed'}"
            ip = w.tcp + TCP_IP_HEADER_BYTES * w.messages
            print(
                f"| `{spec}` | {8 * w.payload / w.audio_seconds / 1000:.1f} "
                f"| {w.codec_packets / w.audio_seconds:.1f} | {w.payload / w.codec_packets:.0f} "
                f"| {w.messages / w.audio_seconds:.1f} | {w.wire / w.messages:.0f} "
                f"| {w.framed / w.payload:.4f} | {ratio:.4f} | {w.tcp / w.payload:.4f} "
                f"| {ip / w.payload:.4f} | {verdict} |",
                flush=True,
            )
    finally:
        relay.close()
        server.stop()

    print()
    print("## Where the overhead comes from, bytes per second of audio")
    print()
    print(
        "| path | payload | framing (per codec packet) | message fields (per message) "
        "| gRPC + HTTP/2 (per message) | TCP/IP est. |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for w in rows:
        s = w.audio_seconds
        framing, fields, transport = w.framed - w.payload, w.wire - w.framed, w.tcp - w.wire
        print(
            f"| `{w.spec}` | {w.payload / s:.0f} "
            f"| {framing / s:.0f} ({framing / w.codec_packets:.2f}) "
            f"| {fields / s:.0f} ({fields / w.messages:.1f}) "
            f"| {transport / s:.0f} ({transport / w.messages:.1f}) "
            f"| {TCP_IP_HEADER_BYTES * w.messages / s:.0f} |"
        )


if __name__ == "__main__":
    main()
