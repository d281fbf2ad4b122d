"""Load and abuse: good streams' result delay alone and beside abusive clients, and memory.

Run: .venv/bin/python -m benchmarks.abuse [--good 8] [--seconds 60] [--audio-memory-mb 512]
     [--device cpu] [--quick]

One real ``asc-server serve`` process (its RSS, with its decoding processes', is sampled every
20 ms throughout). ``--good``
well-behaved devices stream 4 s clips at real time (0.2 s packets, 2 s windows, staggered
starts), each on one long-lived stream, in three phases of ``--seconds``: alone, beside the
abusers, alone again. A window's delay is measured by its client from the packet that
completed the window to its result. The abusers run in a second process (so their client work
does not stall the good clients' event loop; they share the machine's cores, as they would a
server's): two streams flooding tiny windows (1 s windows every 0.1 s of pcm16 sent as fast as
the server reads), streams holding 59 s windows of 48 kHz audio open until the server's audio
memory is full, clips too short for the models, NaN audio, ten minutes of FLAC silence to
ClassifyClip, garbage payloads, a clip id reused for other audio, huge codec specs and ids,
invalid UTF-8, and clients that cancel mid-stream.

Printed: per phase, the good windows' count, p50/p99/max delay, errors and results that differ
from the same audio's results alone; the ratio of p99 beside abuse to p99 alone (both alone
phases pooled, so drift of the machine shows rather than hides); what each abuser got back;
the server's RSS idle, its peak per phase, the peak audio memory it reserved, and the memory
budget the server states at start-up (its idle RSS + --audio-memory-mb + streams waiting for
their config + --cache-mb + ClassifyClip's calls, queue and decoding processes + decode
transients; gRPC's own transport buffers are outside it). Goals (issue: one client cannot
hurt another): no good error or wrong result, p99 ratio at most 1.5, peak RSS under the
stated budget.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import platform
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np
import soundfile as sf

from asc.codecs.clip import encode
from asc.codecs.stream import StreamEncoder
from asc.signals import full_band_clip
from benchmarks.cpu_time import cpu_seconds
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg
from tests.servers import rss_mb, start_server

RATE = 44100
PACKET = 0.2  # seconds of audio per packet
CLIP = 4.0  # seconds per good clip
WINDOW = 2.0
VARIANTS = 3  # distinct clips per good device, cycled: phases compare the same audio
MB = 1 << 20
# grpc.aio clients report this instead of the server's status when a write fails because the
# server already ended the call (grpc/grpc#36066); the sync client, the edge's, reports it.
AIO_OVERWRITE = "Internal error from Core"


def payloads(codec: str, pcm: np.ndarray, rate: int, step_seconds: float) -> list[bytes]:
    encoder = StreamEncoder(codec, rate, 1)
    step = int(step_seconds * rate)
    out = [encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    out[-1] += encoder.finish()
    return out


# --- the good devices --------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    delays: list[float] = field(default_factory=list)  # seconds
    errors: list[str] = field(default_factory=list)
    windows: dict[tuple, list[float]] = field(default_factory=dict)  # (device, variant, start)


async def good_device(
    target: str, index: int, clips: list[list[bytes]], seconds: float, phase: Phase
) -> None:
    """One stream for the whole phase: clips back to back at real time, a new id each."""
    await asyncio.sleep(index * PACKET / 8 + (index % 8) * CLIP / 8)
    sent: dict[tuple[str, int], float] = {}
    variant_of: dict[str, int] = {}
    end = time.monotonic() + seconds

    async def requests():
        yield pb.StreamRequest(
            config=pb.StreamConfig(
                device_id=f"good-{phase.name}-{index}",
                codec="pcm16",
                sample_rate=RATE,
                channels=1,
                window_seconds=WINDOW,
            )
        )
        sequence, due, n = 0, time.monotonic(), 0
        while time.monotonic() < end:
            clip_id, variant = f"c{n}", n % VARIANTS
            variant_of[clip_id] = variant
            for i, payload in enumerate(clips[variant]):
                due += PACKET
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                sent[(clip_id, i)] = time.perf_counter()
                last = i == len(clips[variant]) - 1
                yield pb.StreamRequest(
                    packet=pb.AudioPacket(
                        sequence=sequence, clip_id=clip_id, payload=payload, end_of_clip=last
                    )
                )
                sequence += 1
            n += 1

    try:
        async with grpc.aio.insecure_channel(target) as channel:
            async for result in pbg.SceneClassifierStub(channel).StreamScenes(requests()):
                if result.clip_summary:
                    continue
                packet = max(0, round(result.window_end / PACKET) - 1)
                phase.delays.append(time.perf_counter() - sent[(result.clip_id, packet)])
                key = (index, variant_of[result.clip_id], round(result.window_start, 3))
                phase.windows[key] = [p.probability for p in result.fine]
    except grpc.aio.AioRpcError as e:
        phase.errors.append(f"{e.code().name}: {e.details()[:120]}")


async def good_phase(target: str, good: int, seconds: float, name: str) -> Phase:
    phase = Phase(name)
    clips = [
        [
            payloads("pcm16", full_band_clip(RATE, CLIP, 1, seed=1000 * k + v), RATE, PACKET)
            for v in range(VARIANTS)
        ]
        for k in range(good)
    ]
    await asyncio.gather(*(good_device(target, k, clips[k], seconds, phase) for k in range(good)))
    return phase


# --- the abusers (a process of their own) ------------------------------------------------------


def _float_wav(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


class Abusers:
    def __init__(self, target: str, stop_at: float):
        self.target, self.stop_at = target, stop_at
        self.outcomes: dict[str, Counter] = {}
        self.channels: dict[str, grpc.aio.Channel] = {}
        silence = np.zeros(8000 * 600, np.float32)
        self.bomb = encode(silence[:, None], 8000, "flac")
        nan = full_band_clip(RATE, 2.0, 1, seed=5)[:, 0].copy()
        nan[1000:1100] = np.nan
        self.nan_wav = _float_wav(nan)
        self.flood = payloads("pcm16", full_band_clip(RATE, 30.0, 1, seed=6), RATE, 0.5)
        self.hog = payloads("flac", np.zeros((48000 * 58, 1), np.float32), 48000, 1.0)
        self.short = payloads("pcm16", full_band_clip(RATE, 0.05, 1, seed=7), RATE, 0.05)
        self.reuse = [
            payloads("pcm16", full_band_clip(RATE, 1.0, 1, seed=50 + k), RATE, PACKET)
            for k in range(4)
        ]

    def note(self, kind: str, outcome: str) -> None:
        self.outcomes.setdefault(kind, Counter())[outcome] += 1

    def failed(self, kind: str, error: grpc.aio.AioRpcError) -> None:
        if error.code() == grpc.StatusCode.INTERNAL and error.details() == AIO_OVERWRITE:
            self.note(kind, "(status hidden by the aio client: grpc#36066)")
        else:
            self.note(kind, error.code().name)

    def channel(self, kind: str) -> grpc.aio.Channel:
        """One connection per kind of abuse, as one abusive client would hold."""
        if kind not in self.channels:
            self.channels[kind] = grpc.aio.insecure_channel(self.target)
        return self.channels[kind]

    def live(self) -> bool:
        return time.monotonic() < self.stop_at

    async def stream(self, kind: str, config: pb.StreamConfig, packets, hold: float = 0.0):
        """One stream; ``hold`` keeps its requests open that long after the last packet."""

        async def requests():
            yield pb.StreamRequest(config=config)
            for packet in packets:
                yield pb.StreamRequest(packet=packet)
            deadline = time.monotonic() + hold
            while time.monotonic() < min(deadline, self.stop_at):
                await asyncio.sleep(0.2)

        try:
            async for _ in pbg.SceneClassifierStub(self.channel(kind)).StreamScenes(requests()):
                pass
            self.note(kind, "OK")
        except grpc.aio.AioRpcError as e:
            self.failed(kind, e)

    @staticmethod
    def clip_packets(clip_id: str, pieces: list[bytes], end: bool = True, first: int = 0):
        return [
            pb.AudioPacket(
                sequence=first + i,
                clip_id=clip_id,
                payload=p,
                end_of_clip=end and i == len(pieces) - 1,
            )
            for i, p in enumerate(pieces)
        ]

    async def flood_stream(self, k: int) -> None:
        """Hangs up when the phase ends: waiting out the backlog it queued kept the run a minute
        longer and measured nothing (the good devices' phase is over by then)."""
        kind, n = "flood (1 s windows every 0.1 s)", 0
        while self.live():
            cfg = pb.StreamConfig(
                device_id=f"flood{k}",
                codec="pcm16",
                sample_rate=RATE,
                channels=1,
                window_seconds=1.0,
                hop_seconds=0.1,
            )
            left = self.stop_at - time.monotonic()
            try:
                await asyncio.wait_for(self.stream(kind, cfg, self.flood_packets(n)), left)
            except TimeoutError:
                self.note(kind, "cancelled by the client")
            n += 1

    def flood_packets(self, n: int):
        sequence = 0
        for c in range(1000):
            if not self.live():
                return
            yield from self.clip_packets(f"f{n}-{c}", self.flood, first=sequence)
            sequence += len(self.flood)

    async def hog_stream(self, k: int) -> None:
        while self.live():
            cfg = pb.StreamConfig(
                device_id=f"hog{k}",
                codec="flac",
                sample_rate=48000,
                channels=1,
                window_seconds=59.0,
            )
            packets = self.clip_packets("open", self.hog, end=False)
            await self.stream("hog (59 s windows at 48 kHz, held open)", cfg, packets, hold=60)
            await asyncio.sleep(0.5)

    async def unary(self, kind: str, request: pb.ClipRequest) -> None:
        try:
            await pbg.SceneClassifierStub(self.channel(kind)).ClassifyClip(request, timeout=60)
            self.note(kind, "OK")
        except grpc.aio.AioRpcError as e:
            self.failed(kind, e)

    async def raw(self, kind: str) -> None:
        body = b"\x0a\x02\xff\xfe"
        try:
            call = self.channel(kind).unary_unary("/asc.v1.SceneClassifier/ClassifyClip")
            await call(body, timeout=30)
            self.note(kind, "OK")
        except grpc.aio.AioRpcError as e:
            self.failed(kind, e)

    async def cancel(self, kind: str, k: int) -> None:
        cfg = pb.StreamConfig(device_id=f"cancel{k}", codec="pcm16", sample_rate=RATE, channels=1)

        async def requests():
            yield pb.StreamRequest(config=cfg)
            for packet in self.clip_packets("c", self.reuse[0]):
                yield pb.StreamRequest(packet=packet)
            await asyncio.sleep(30)

        call = pbg.SceneClassifierStub(self.channel(kind)).StreamScenes(requests())
        try:
            await call.read()
            call.cancel()
            self.note(kind, "cancelled by the client")
        except grpc.aio.AioRpcError as e:
            self.failed(kind, e)

    async def misc(self) -> None:
        """The one-shot abuses, round after round."""
        cfg = pb.StreamConfig(codec="pcm16", sample_rate=RATE, channels=1)
        k = 0
        while self.live():
            k += 1
            device = pb.StreamConfig()
            device.CopyFrom(cfg)
            device.device_id = f"misc{k}"
            await asyncio.gather(
                self.stream("clip too short", device, self.clip_packets("s", self.short)),
                self.unary("NaN audio", pb.ClipRequest(clip_id="nan", data=self.nan_wav)),
                self.unary(
                    "10 min of FLAC silence", pb.ClipRequest(clip_id="bomb", data=self.bomb)
                ),
                self.stream(
                    "garbage payload",
                    device,
                    [pb.AudioPacket(sequence=0, clip_id="g", payload=b"P\x05\xff" * 9)],
                ),
                self.stream(
                    "clip id reused for other audio",
                    pb.StreamConfig(device_id="reuse", codec="pcm16", sample_rate=RATE, channels=1),
                    self.clip_packets("r#0", self.reuse[k % len(self.reuse)]),
                ),
                self.stream(
                    "10 KB codec spec",
                    pb.StreamConfig(
                        device_id="x", codec="x" * 10_000, sample_rate=RATE, channels=1
                    ),
                    [],
                ),
                self.stream(
                    "1 MB clip id",
                    device,
                    [pb.AudioPacket(sequence=0, clip_id="i" * MB, payload=b"x")],
                ),
                self.raw("invalid UTF-8"),
                self.cancel("cancel mid-stream", k),
            )
            await asyncio.sleep(0.05)

    async def run(self, floods: int, hogs: int) -> dict[str, dict[str, int]]:
        tasks = [self.flood_stream(k) for k in range(floods)]
        tasks += [self.hog_stream(k) for k in range(hogs)]
        tasks.append(self.misc())
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in self.channels.values():
            await channel.close()
        return {kind: dict(c) for kind, c in self.outcomes.items()}


def abuse_process(target: str, seconds: float, floods: int, hogs: int, out) -> None:
    abusers = Abusers(target, 0.0)
    abusers.stop_at = time.monotonic() + seconds  # after the payloads are made
    out.send("ready")
    start = cpu_seconds()
    outcomes = asyncio.run(abusers.run(floods, hogs))
    out.send((outcomes, cpu_seconds() - start))


# --- the run ---------------------------------------------------------------------------------


class RssSampler:
    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid, children=True))
            time.sleep(0.02)

    def take(self) -> float:
        peak, self.peak = self.peak, 0.0
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def wrong_results(phase: Phase, reference: dict[tuple, list[float]]) -> int:
    """Windows whose probabilities differ from the same audio's alone (a stale answer would)."""
    return sum(
        1
        for key, probs in phase.windows.items()
        if key in reference and np.max(np.abs(np.subtract(probs, reference[key]))) > 1e-3
    )


INFERENCE = 'asc_inference_seconds_sum{model="ensemble"}'


def scraped(metrics_text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", metrics_text, re.M)
    return float(match.group(1)) if match else 0.0


def reserved_mb(metrics_text: str) -> float:
    return scraped(metrics_text, "asc_audio_memory_reserved_bytes") / MB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--good", type=int, default=8, help="good real-time devices (default: %(default)s)"
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="length of each phase (default: %(default)s)"
    )
    parser.add_argument(
        "--floods", type=int, default=2, help="streams flooding tiny windows (default: %(default)s)"
    )
    parser.add_argument(
        "--hogs", type=int, default=12, help="streams holding 59 s windows (default: %(default)s)"
    )
    parser.add_argument(
        "--audio-memory-mb", type=float, default=512.0, help="server budget (default: %(default)s)"
    )
    parser.add_argument(
        "--device", default="cpu", help="the server's --device (default: %(default)s)"
    )
    parser.add_argument("--quick", action="store_true", help="2 good devices, 8 s phases")
    args = parser.parse_args()
    if args.quick:
        args.good, args.seconds, args.hogs = 2, 8.0, 3
    server = start_server(
        "--device", args.device, "--detector", "none", "--log-level", "WARNING",
        "--audio-memory-mb", str(args.audio_memory_mb),
    )  # fmt: skip
    pid = server.proc.pid
    sampler = RssSampler(pid)
    try:
        asyncio.run(good_phase(server.target, min(args.good, 2), 3.0, "warm-up"))
        idle = rss_mb(pid, children=True)
        sampler.take()
        budget = server.ready["memory_budget_mb"]  # the server states it at start-up
        print(
            f"# abuse: {args.good} good real-time pcm16 devices (4 s clips, 2 s windows) against "
            f"one server (pid {pid}, {server.ready['device']}, {platform.machine()}), phases "
            f"of {args.seconds:g} s: alone, beside abusers, alone again; --audio-memory-mb "
            f"{args.audio_memory_mb:g}"
        )
        cpu = Counter()

        def phase(name: str) -> Phase:
            server_before, clients_before = cpu_seconds(pid), cpu_seconds()
            passes_before = scraped(server.metrics(), INFERENCE)
            result = asyncio.run(good_phase(server.target, args.good, args.seconds, name))
            cpu[("server", name)] = cpu_seconds(pid) - server_before
            cpu[("good clients", name)] = cpu_seconds() - clients_before
            cpu[("forward passes", name)] = scraped(server.metrics(), INFERENCE) - passes_before
            return result

        alone = phase("alone")
        peak_alone = sampler.take()

        receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
        abusers = multiprocessing.get_context("spawn").Process(
            target=abuse_process,
            args=(server.target, args.seconds + 2, args.floods, args.hogs, send),
        )
        abusers.start()
        assert receive.recv() == "ready"
        time.sleep(1.0)  # the abuse is in full swing before the good devices start
        reserved = [0.0]
        watching = threading.Event()

        def watch() -> None:
            while not watching.is_set():
                reserved[0] = max(reserved[0], reserved_mb(server.metrics()))
                time.sleep(0.5)

        watcher = threading.Thread(target=watch)
        watcher.start()
        beside = phase("beside")
        outcomes, cpu[("abusers", "beside")] = receive.recv()
        abusers.join(60)
        watching.set()
        watcher.join()
        peak_beside = sampler.take()
        again = phase("alone again")
        peak_again = sampler.take()
    finally:
        sampler.stop()
        code = server.stop()

    reference = {**again.windows, **alone.windows}
    print(
        "| phase | good windows | p50 ms | p99 ms | max ms | errors | wrong results | "
        "CPU s: server (forward passes) / good clients / abusers |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for p in (alone, beside, again):
        used = (
            f"{cpu[('server', p.name)]:.1f} ({cpu[('forward passes', p.name)]:.1f}) / "
            f"{cpu[('good clients', p.name)]:.1f} / {cpu[('abusers', p.name)]:.1f}"
        )
        print(
            f"| {p.name} | {len(p.delays)} | {pct(p.delays, 50):.0f} | "
            f"{pct(p.delays, 99):.0f} | {pct(p.delays, 100):.0f} | "
            f"{len(p.errors)} | {wrong_results(p, reference)} | {used} |"
        )
    pooled = alone.delays + again.delays
    alone_p99 = pct(pooled, 99)
    ratio = pct(beside.delays, 99) / alone_p99
    print(
        f"\n# good p99 beside abuse / alone (both alone phases pooled): {ratio:.2f}x "
        f"({pct(beside.delays, 99):.0f} ms / {alone_p99:.0f} ms; goal <= 1.5x); p50 "
        f"{pct(beside.delays, 50) / pct(pooled, 50):.2f}x"
    )
    for p in (alone, beside, again):
        for error in p.errors[:3]:
            print(f"# good error ({p.name}): {error}")
    print("\n| abuser | attempts | what it got back |")
    print("|---|---:|---|")
    for kind, got in sorted(outcomes.items()):
        text = ", ".join(f"{name} {n}" for name, n in sorted(got.items()))
        print(f"| {kind} | {sum(got.values())} | {text} |")
    print("\n| server memory | MB |")
    print("|---|---:|")
    print(f"| RSS idle (after warm-up) | {idle:.0f} |")
    print(f"| peak RSS alone | {max(peak_alone, peak_again):.0f} |")
    print(f"| peak RSS beside abuse | {peak_beside:.0f} |")
    print(f"| peak audio memory reserved | {reserved[0]:.0f} |")
    print(f"| server's idle RSS when it started listening | {server.ready['idle_rss_mb']:.0f} |")
    print(f"| memory budget the server stated at start-up | {budget:.0f} |")
    parts = server.ready["memory_budget_parts_mb"]
    print(
        "\n# the stated budget: idle RSS + "
        + " + ".join(f"{name} {mb:.0f}" for name, mb in parts.items())
        + " MB (server/budgets.py: memory_budget); gRPC's transport buffers come on top"
    )
    held = peak_beside <= budget
    print(f"\n# peak RSS within the stated budget: {'yes' if held else 'NO'}; exit code {code}")
    errors = [line for line in server.stderr().splitlines() if " ERROR " in line]
    print(f"# server log: {len(server.stderr())} bytes, {len(errors)} ERROR lines")
    for line in errors[:5]:
        print(f"#   {line[:300]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
