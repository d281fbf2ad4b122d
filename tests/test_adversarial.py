"""Hostile clients against a real `asc-server serve` on loopback, at the gRPC level.

Each case is what an adversarial client could send (issue: one client cannot hurt another):
inputs that poisoned batches, settings that multiplied cost, ids reused for other audio,
values echoed without bound, forged and flooding log lines, wrong statuses, metric labels made
up by clients, streams that never end and clients that cancel. Where it matters a healthy
stream runs beside the bad one and must get every result, and the server's memory is sampled
while the case runs. Nothing here bounds a time: fairness figures are the abuse benchmark's
(benchmarks/abuse.py).
"""

from __future__ import annotations

import io
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import grpc
import numpy as np
import pytest
import soundfile as sf
from grpc_health.v1 import health_pb2, health_pb2_grpc

from asc.codecs.clip import encode
from asc.codecs.stream import StreamEncoder
from asc.signals import full_band_clip
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg
from tests.servers import child_pids, rss_mb, run_stream, start_server

RATE = 44100
MAX_CLIP_SECONDS = 60
CLASSIFY_SECONDS = 30
WINDOWS_PER_CLIP = 50
CACHE_MB = 0.05


@pytest.fixture(scope="module")
def server():
    process = start_server(
        "--detector", "none", "--max-delay-ms", "5",
        "--max-clip-seconds", str(MAX_CLIP_SECONDS),
        "--classify-max-seconds", str(CLASSIFY_SECONDS),
        "--max-windows-per-clip", str(WINDOWS_PER_CLIP),
        "--cache-mb", str(CACHE_MB),
    )  # fmt: skip
    yield process
    process.stop()


@pytest.fixture(scope="module")
def logged():
    """A server of its own for the log cases: INFO lines, and log limits not yet spent."""
    process = start_server("--detector", "none", "--log-level", "INFO")
    yield process
    process.stop()


# --- helpers -------------------------------------------------------------------------------


def audio(seconds: float, seed: int = 0, rate: int = RATE, channels: int = 1) -> np.ndarray:
    return full_band_clip(rate, seconds=seconds, channels=channels, seed=seed)


def packets(
    codec: str,
    clips: list[tuple[str, np.ndarray]],
    rate: int = RATE,
    channels: int = 1,
    end: bool = True,
    step_seconds: float = 0.2,
    label: str = "",
) -> Iterator[pb.AudioPacket]:
    """Each clip through its own StreamEncoder in packets of ``step_seconds``; ``label`` goes
    with each clip's first packet, as the edge sends it."""
    sequence = 0
    for clip_id, pcm in clips:
        encoder = StreamEncoder(codec, rate, channels)
        step = max(1, int(rate * step_seconds))
        for i in range(0, len(pcm), step):
            yield pb.AudioPacket(
                sequence=sequence,
                clip_id=clip_id,
                payload=encoder.encode(pcm[i : i + step]),
                label=label if i == 0 else "",
            )
            sequence += 1
        if end:
            yield pb.AudioPacket(
                sequence=sequence, clip_id=clip_id, payload=encoder.finish(), end_of_clip=True
            )
            sequence += 1


def config(codec: str = "pcm16", **kw) -> pb.StreamConfig:
    values = {"device_id": "adv", "codec": codec, "sample_rate": RATE, "channels": 1, **kw}
    return pb.StreamConfig(**values)


def requests(cfg: pb.StreamConfig, items) -> Iterator[pb.StreamRequest]:
    yield pb.StreamRequest(config=cfg)
    for item in items:
        yield item if isinstance(item, pb.StreamRequest) else pb.StreamRequest(packet=item)


def summaries(results) -> list[str]:
    return [r.clip_id for r in results if r.clip_summary]


def check_status(error, code: grpc.StatusCode, needle: str) -> None:
    """The documented status, a message naming the problem, and under 1 KB of it."""
    assert error is not None, f"accepted; expected {code.name}"
    details = error.details() or ""
    assert error.code() == code, (error.code(), details[:300])
    assert needle in details, details[:300]
    assert len(details.encode()) < 1024, len(details)


def classify(target: str, request: pb.ClipRequest, timeout: float = 60):
    """(ClipResult, None) or (None, RpcError)."""
    with grpc.insecure_channel(target) as channel:
        try:
            return pbg.SceneClassifierStub(channel).ClassifyClip(request, timeout=timeout), None
        except grpc.RpcError as e:
            return None, e


def scrape_value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def series(text: str, family: str) -> list[str]:
    return re.findall(rf"^{re.escape(family)}\{{[^}}]*\}} \S+$", text, re.MULTILINE)


def peak_growth(pid: int, work: Callable[[], object]) -> tuple[object, float]:
    """``work()``'s result and how far the process's RSS rose above its start meanwhile (MB)."""
    start = rss_mb(pid)
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = work()
    finally:
        done.set()
        sampler.join()
    return result, peak[0] - start


def healthy_beside(target: str, name: str, clips: int = 2) -> Callable[[], None]:
    """Start a well-behaved stream; the returned function joins it and checks every summary."""
    ids = [f"{name}-{k}" for k in range(clips)]
    out: dict = {}

    def run() -> None:
        def paced():
            for request in requests(
                config(device_id=f"good-{name}"),
                packets("pcm16", [(i, audio(1.5, 100 + k)) for k, i in enumerate(ids)]),
            ):
                time.sleep(0.01)
                yield request

        out["r"] = run_stream(target, paced())

    thread = threading.Thread(target=run)
    thread.start()

    def check() -> None:
        thread.join(120)
        results, error = out["r"]
        assert error is None, error
        assert summaries(results) == ids

    return check


def serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=30
        )
    return reply.status == health_pb2.HealthCheckResponse.SERVING


# --- 1. a bad item cannot poison a batch ----------------------------------------------------


def test_a_clip_too_short_for_the_models_is_refused_at_the_door(server):
    """0.05 s clips, six times, next to a good stream: only the short clips are refused."""
    outcomes: list = []

    def short(k: int) -> None:
        outcomes.append(
            run_stream(
                server.target,
                requests(config(device_id=f"short{k}"), packets("pcm16", [("s", audio(0.05))])),
            )
        )

    for k in range(6):
        check = healthy_beside(server.target, f"poison{k}")
        threads = [threading.Thread(target=short, args=(k,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check()
    for _results, error in outcomes:
        check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "shortest clip")
    assert serving(server.target)


def test_classify_clip_too_short_or_truncated_is_invalid_argument(server):
    mp3 = encode(audio(1.0, 3), RATE, "mp3:64k")
    for data, codec in [(encode(audio(0.1, 2), RATE, "pcm16"), "pcm16"), (mp3[:1000], "mp3:64k")]:
        _, error = classify(server.target, pb.ClipRequest(clip_id="tiny", data=data, codec=codec))
        check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "shortest clip")


# --- 2. cost bounded by budgets, not by what the bytes claim --------------------------------


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"window_seconds": 60.0, "hop_seconds": 0.05}, "--max-overlap"),
        ({"window_seconds": 1.0, "hop_seconds": 0.001}, "--max-overlap"),
        ({"window_seconds": 60.0, "sample_rate": 192000, "codec": "flac"}, "--stream-memory-mb"),
    ],
)
def test_settings_that_multiply_cost_are_refused_with_the_flag_to_raise(server, settings, needle):
    cfg = config(**{"codec": "pcm16", **settings})
    _, error = run_stream(server.target, requests(cfg, []))
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, needle)


def test_a_clip_past_its_windows_budget_ends_after_its_windows(server):
    cfg = config(window_seconds=1.0, hop_seconds=0.1)
    results, error = run_stream(server.target, requests(cfg, packets("pcm16", [("w", audio(8.0))])))
    check_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, "--max-windows-per-clip")
    assert len(results) == WINDOWS_PER_CLIP  # every window accepted was answered first


def test_a_cancelled_flood_stops_being_classified(server):
    """Tiny hops over 30 s of audio would make 291 windows; the client cancels after one."""
    path = 'asc_windows_classified_total{codec_path="flac",model="ensemble"}'
    before = scrape_value(server.metrics(), path)
    cfg = config("flac", window_seconds=1.0, hop_seconds=0.1, device_id="flood-cancel")
    with grpc.insecure_channel(server.target) as channel:
        call = pbg.SceneClassifierStub(channel).StreamScenes(
            requests(cfg, packets("flac", [("f", audio(30.0, 4))]))
        )
        next(iter(call))
        call.cancel()
    settled, last = 0, -1.0
    while settled < 10:  # until the counter stands still for a second
        time.sleep(0.1)
        now = scrape_value(server.metrics(), path)
        settled = settled + 1 if now == last else 0
        last = now
    # Work in flight is bounded by the stream's waiting windows (20 s of audio: 20 windows),
    # and what was queued is withdrawn on cancel: far from the 291 the clip would make.
    assert last - before < 100, last - before


def test_compressed_silence_cannot_make_a_classify_call_blow_up(server):
    """Ten minutes of 8 kHz FLAC silence (a few hundred KB) against a 30 s budget."""
    data = encode(np.zeros((8000 * 600, 1), np.float32), 8000, "flac")
    health: list = []
    probe = threading.Thread(target=lambda: health.append(serving(server.target)))
    (_, error), grown = peak_growth(
        server.proc.pid,
        lambda: (probe.start(), classify(server.target, pb.ClipRequest(clip_id="z", data=data)))[1],
    )
    probe.join()
    check_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, "--classify-max-seconds")
    assert health == [True]
    assert grown < 100, grown


def test_compressed_silence_in_one_packet_is_bounded_by_the_clip(server):
    """One message holding ten minutes of FLAC silence and no end of clip."""
    encoder = StreamEncoder("flac", 8000, 1)
    payload = encoder.encode(np.zeros((8000 * 600, 1), np.float32))
    cfg = config("flac", sample_rate=8000)
    packet = pb.AudioPacket(sequence=0, clip_id="silence", payload=payload)
    (result, grown) = peak_growth(
        server.proc.pid, lambda: run_stream(server.target, requests(cfg, [packet]))
    )
    results, error = result
    check_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, f"exceeds {MAX_CLIP_SECONDS} s")
    assert len(results) == MAX_CLIP_SECONDS // 10  # its windows up to the bound were answered
    assert grown < 100, grown


def test_long_windows_at_high_rates_hold_only_what_they_reserved(server):
    """Four streams hold 59 s clips open with 59 s windows, then hang up mid-clip."""
    silence = np.zeros((RATE * 59, 1), np.float32)
    cfg = config("flac", window_seconds=59.0)
    gate = threading.Event()
    reserved: list[float] = []
    outcomes: list = []

    def hold(k: int) -> None:
        def reqs():
            yield from requests(
                cfg, packets("flac", [(f"open{k}", silence)], end=False, step_seconds=1.0)
            )
            gate.wait(60)

        outcomes.append(run_stream(server.target, reqs()))

    def work() -> None:
        threads = [threading.Thread(target=hold, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(3)
        reserved.append(scrape_value(server.metrics(), "asc_audio_memory_reserved_bytes"))
        gate.set()
        for t in threads:
            t.join()

    _, grown = peak_growth(server.proc.pid, work)
    for _results, error in outcomes:
        check_status(error, grpc.StatusCode.DATA_LOSS, "cut short")
    assert reserved[0] <= 4 * 64 * 2**20
    assert grown < reserved[0] / 2**20 + 100, (grown, reserved)


def test_a_stream_may_keep_a_few_clips_open_and_no_more(server):
    clips = [(f"o{k}", audio(1.2, 20 + k)) for k in range(4)]
    streams = [list(packets("pcm16", [clip])) for clip in clips]
    interleaved, sequence = [], 0
    for group in zip(*streams, strict=True):  # packet k of every clip, then packet k+1...
        for packet in group:
            packet.sequence = sequence
            sequence += 1
            interleaved.append(packet)
    results, error = run_stream(server.target, requests(config(), interleaved))
    assert error is None and sorted(summaries(results)) == [c for c, _ in clips]
    five = [*interleaved[:4], pb.AudioPacket(sequence=4, clip_id="o5", payload=b"")]
    for k, packet in enumerate(five[:4]):
        packet.sequence = k
    _, error = run_stream(server.target, requests(config(), five))
    check_status(error, grpc.StatusCode.RESOURCE_EXHAUSTED, "clips open at once")


def test_long_ids_are_refused_and_the_memory_of_clips_is_bounded_in_bytes(server):
    _, error = run_stream(
        server.target,
        requests(config(), [pb.AudioPacket(sequence=0, clip_id="i" * (1 << 20), payload=b"x")]),
    )
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "longer than 256 characters")
    cfg = config(device_id="cache", window_seconds=1.0, hop_seconds=0.5)
    clips = [(f"{'c' * 250}{k:03d}", audio(2.0, 200 + k)) for k in range(24)]
    results, error = run_stream(server.target, requests(cfg, packets("pcm16", clips)))
    assert error is None and len(summaries(results)) == 24
    held = scrape_value(server.metrics(), "asc_remembered_clips_bytes")
    assert 0 < held <= CACHE_MB * 2**20


# --- 3. answers belong to the audio sent ----------------------------------------------------


def test_a_reused_clip_id_is_answered_for_its_new_audio(server):
    cfg = config("flac", device_id="reuse")
    dup = 'asc_duplicate_clips_total{codec_path="flac"}'
    labelled = 'asc_labelled_clips_total{codec_path="flac",model="ensemble"}'
    first, error = run_stream(
        server.target, requests(cfg, packets("flac", [("r#0", audio(2, 1))], label="park"))
    )
    assert error is None
    before, labelled_before = (
        scrape_value(server.metrics(), dup),
        scrape_value(server.metrics(), labelled),
    )
    # the same id for other audio (a re-recorded file): classified, not answered from memory,
    # and its label (sent with its first packet, while it was compared) still counts
    other, error = run_stream(
        server.target, requests(cfg, packets("flac", [("r#0", audio(2, 9))], label="park"))
    )
    assert error is None and summaries(other) == ["r#0"]
    assert [p.probability for p in other[0].fine] != [p.probability for p in first[0].fine]
    assert scrape_value(server.metrics(), labelled) == labelled_before + 1
    # the same bytes as the new audio: answered from memory, identical
    again, error = run_stream(
        server.target, requests(cfg, packets("flac", [("r#0", audio(2, 9))], label="park"))
    )
    assert error is None
    assert [r.SerializeToString() for r in again] == [r.SerializeToString() for r in other]
    assert scrape_value(server.metrics(), dup) == before + 1
    # garbage under the remembered id is refused like any garbage
    garbage = pb.AudioPacket(sequence=0, clip_id="r#0", payload=b"H\x00P\x05\xff" * 40)
    _, error = run_stream(
        server.target,
        requests(cfg, [garbage, pb.AudioPacket(sequence=1, clip_id="r#0", end_of_clip=True)]),
    )
    check_status(error, grpc.StatusCode.DATA_LOSS, "r#0")


def test_other_settings_or_another_device_never_get_a_remembered_answer(server):
    clip = [("same", audio(2.0, 5))]
    dup = 'asc_duplicate_clips_total{codec_path="pcm16"}'
    _, error = run_stream(server.target, requests(config(device_id="d1"), packets("pcm16", clip)))
    assert error is None
    before = scrape_value(server.metrics(), dup)
    for cfg in (config(device_id="d2"), config(device_id="d1", window_seconds=1.0)):
        results, error = run_stream(server.target, requests(cfg, packets("pcm16", clip)))
        assert error is None and summaries(results) == ["same"]
    assert scrape_value(server.metrics(), dup) == before


# --- 4. nothing echoed without bound --------------------------------------------------------


HUGE = "x" * 10_000


@pytest.mark.parametrize(
    ("make", "code", "needle"),
    [
        (lambda: requests(config(HUGE), []), grpc.StatusCode.INVALID_ARGUMENT, "codec spec"),
        (
            lambda: requests(config(f"warble{HUGE}:1k"), []),
            grpc.StatusCode.INVALID_ARGUMENT,
            "codec spec",
        ),
        (
            lambda: requests(config(device_id=HUGE * 100), []),
            grpc.StatusCode.INVALID_ARGUMENT,
            "device id",
        ),
        (
            lambda: requests(config(), [pb.AudioPacket(sequence=0, clip_id="a", label=HUGE)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "label",
        ),
        (
            lambda: requests(
                config("opus:32k"),
                [pb.AudioPacket(sequence=0, clip_id="\x00" * 256, payload=b"\xff" * 64)],
            ),
            grpc.StatusCode.DATA_LOSS,
            "\\x00",
        ),
    ],
)
def test_echoed_values_are_cut_and_the_real_status_arrives(server, make, code, needle):
    for _ in range(10):  # a long message used to turn into RESOURCE_EXHAUSTED at random
        _, error = run_stream(server.target, make())
        check_status(error, code, needle)


def test_classify_clip_echoes_nothing_long(server):
    for request in (
        pb.ClipRequest(clip_id="c", data=b"abc", codec=HUGE),
        pb.ClipRequest(clip_id="c" * 256, data=b"\0" * 5000),
        pb.ClipRequest(clip_id=HUGE, data=b"abc"),
    ):
        _, error = classify(server.target, request)
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DATA_LOSS)
        assert len(error.details().encode()) < 1024


# --- 5. the log can be neither forged nor flooded --------------------------------------------


def test_a_device_id_cannot_forge_a_log_line(logged):
    forged = "dev\n2026-01-01 00:00:00,000 CRITICAL asc.server: forged\x1b[2J"
    _, error = run_stream(
        logged.target,
        requests(config(device_id=forged), [pb.AudioPacket(sequence=0, clip_id="f", payload=b"Z")]),
    )
    check_status(error, grpc.StatusCode.DATA_LOSS, "'f'")
    log = logged.stderr()
    assert not any(line.startswith("2026-01-01") for line in log.splitlines())
    assert "\x1b" not in log
    lines = [line for line in log.splitlines() if "CRITICAL asc.server: forged" in line]
    assert len(lines) == 2  # the stream's start and its end, each one line, escaped
    assert all("'dev\\n2026-01-01" in line for line in lines), lines


def test_a_flood_of_bad_streams_writes_a_bounded_log(logged):
    server = logged
    size = len(server.stderr())

    def bad(k: int) -> None:
        packet = pb.AudioPacket(sequence=0, clip_id=f"bad{k}", payload=b"P\x05\xff\xfe\xfd" * 3)
        run_stream(server.target, requests(config("opus:32k", device_id=f"flood{k}"), [packet]))

    threads = [
        threading.Thread(target=lambda i=i: [bad(8 * j + i) for j in range(40)]) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grown = server.stderr()[size:]
    assert len(grown) < 20_000, len(grown)  # 320 failed streams
    for forbidden in ("Traceback", "never retrieved", " ERROR "):
        assert forbidden not in grown


# --- 6. the documented statuses --------------------------------------------------------------


def raw_call(target: str, method: str, body: bytes, stream: bool):
    with grpc.insecure_channel(target) as channel:
        kind = channel.stream_stream if stream else channel.unary_unary
        call = kind(f"/asc.v1.SceneClassifier/{method}")
        try:
            return (
                list(call(iter([body]), timeout=30)) if stream else call(body, timeout=30)
            ), None
        except grpc.RpcError as e:
            return None, e


def test_invalid_utf8_is_invalid_argument_not_a_server_error(server):
    size = len(server.stderr())
    config_bytes = b"\x0a\x02\xff\xfe\x12\x05pcm16\x18\xc4\xd8\x02\x20\x01"
    stream_body = b"\x0a" + bytes([len(config_bytes)]) + config_bytes
    _, error = raw_call(server.target, "StreamScenes", stream_body, stream=True)
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "UTF-8")
    _, error = raw_call(server.target, "ClassifyClip", b"\x0a\x02\xff\xfe", stream=False)
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "UTF-8")
    _, error = raw_call(server.target, "GetInfo", b"\xff\xff\xff", stream=False)
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "does not parse")
    grown = server.stderr()[size:]
    assert " ERROR " not in grown and "Traceback" not in grown


def test_a_stream_that_stops_mid_clip_is_data_loss_after_its_windows(server):
    cfg = config(window_seconds=1.0)
    results, error = run_stream(
        server.target, requests(cfg, packets("pcm16", [("cut", audio(2.5, 6))], end=False))
    )
    check_status(error, grpc.StatusCode.DATA_LOSS, "'cut'")
    assert [(r.window_start, r.window_end) for r in results] == [(0.0, 1.0), (1.0, 2.0)]


def float_wav(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@pytest.mark.parametrize(("value", "needle"), [(np.nan, "non-finite"), (1e30, "magnitude")])
def test_audio_that_is_not_finite_sound_is_refused(server, value, needle):
    x = audio(2.0, 7)[:, 0].copy()
    x[RATE // 2 : RATE // 2 + 10] = value
    _, error = classify(server.target, pb.ClipRequest(clip_id="nan", data=float_wav(x)))
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, needle)


# PyAV reads past the plane pointers of a planar frame with 8 or more channels and dies with a
# segmentation fault, which in the server is every client's loss (found by fuzzing).
HOSTILE_AAC = Path(__file__).parent / "data/fuzz/aac-decoder-deadly-signal.bin"


def test_a_stream_whose_packet_switches_it_to_7_1_fails_alone(server):
    """The fuzzer's 916 bytes: an aac:32k mono stream at 16 kHz, one of whose packets carries a
    program config element that turns the decoder's output into 7.1."""
    stream = HOSTILE_AAC.read_bytes()[3:]  # the harness's target, spec and cut bytes go first
    check = healthy_beside(server.target, "beside-7.1")
    cfg = config("aac:32k", sample_rate=16000)
    packet = pb.AudioPacket(sequence=0, clip_id="7.1", payload=stream, end_of_clip=True)
    _, error = run_stream(server.target, requests(cfg, [packet]))
    check_status(error, grpc.StatusCode.DATA_LOSS, "switched the stream to 8 channels")
    check()
    assert server.proc.poll() is None and serving(server.target)


def test_an_eight_channel_file_is_classified(server):
    """A 7.1 recording decodes to planar frames of 8 channels: a file anyone may have."""
    buffer = io.BytesIO()
    sf.write(buffer, audio(2.0, 9, channels=8), RATE, format="OGG", subtype="VORBIS")
    result, error = classify(server.target, pb.ClipRequest(clip_id="7.1", data=buffer.getvalue()))
    assert error is None, error.details()
    assert result.clip_id == "7.1" and result.summary.fine_label
    assert server.proc.poll() is None and serving(server.target)


def _decode_workers(server_pid: int) -> list[int]:
    """The server's decoding processes (server/decode_sandbox.py)."""
    return [
        pid
        for pid in child_pids(server_pid)
        if b"server.decode_sandbox" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_a_decoding_process_that_dies_hurts_no_call(server):
    """ClassifyClip decodes in worker processes, so a crash in FFmpeg ends a worker, not the
    server. Here the workers are killed from outside: the stream beside them gets every result,
    and the next call decodes in a fresh worker."""
    data = encode(audio(2.0, 11), RATE, "flac")
    first, error = classify(server.target, pb.ClipRequest(clip_id="w1", data=data))
    assert error is None, error.details()
    workers = _decode_workers(server.proc.pid)
    assert workers, "ClassifyClip decoded without a worker process"
    check = healthy_beside(server.target, "beside-kill")
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    check()
    again, error = classify(server.target, pb.ClipRequest(clip_id="w2", data=data))
    assert error is None, error.details()
    assert list(again.summary.fine) == list(first.summary.fine)
    assert not set(_decode_workers(server.proc.pid)) & set(workers)
    assert server.proc.poll() is None and serving(server.target)


def test_a_file_whose_header_names_no_decoder_is_data_loss(server):
    """Found by fuzzing decode_clip: a WAV header claiming 16,400 bits per sample opens, but
    FFmpeg has no decoder for it, which used to escape as an internal error."""
    data = bytearray(encode(audio(1.0, 10), RATE, "pcm16"))
    assert data[:4] == b"RIFF" and data[12:16] == b"fmt "
    data[34:36] = (0x4010).to_bytes(2, "little")  # bits per sample
    _, error = classify(server.target, pb.ClipRequest(clip_id="odd", data=bytes(data)))
    check_status(error, grpc.StatusCode.DATA_LOSS, "no decoder takes the audio")


def test_a_file_in_a_codec_outside_the_documented_set_is_refused(server):
    """FFmpeg decodes hundreds of formats, most rarely exercised: a client may not pick one."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("adpcm_ima_wav", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (audio(1.0, 11)[:, 0] * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    _, error = classify(server.target, pb.ClipRequest(clip_id="adpcm", data=buffer.getvalue()))
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "which this server does not decode")


# --- 7. metric labels from a bounded set -----------------------------------------------------


def test_clients_cannot_mint_metric_labels(server):
    data = encode(audio(1.0, 8), RATE, "mp3:64k")
    for k in range(20):
        _, error = classify(server.target, pb.ClipRequest(clip_id="m", data=data, codec=f"zz{k}"))
        check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "unknown codec")
    chain = ">".join(["opus:32k"] * 1110)
    _, error = classify(server.target, pb.ClipRequest(clip_id="m", data=data, codec=chain))
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "codec spec")
    _, error = classify(
        server.target, pb.ClipRequest(clip_id="m", data=data, codec="opus:32k>" * 5 + "mp3:64k")
    )
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "at most 4")
    _, error = classify(server.target, pb.ClipRequest(clip_id="m", data=data, codec="aac:48k"))
    check_status(error, grpc.StatusCode.INVALID_ARGUMENT, "not aac")
    text = server.metrics()
    assert "zz" not in text and 'codec_path="aac:48k"' not in text
    # Valid but ever-new bitrates: at most a bounded number of label values, then "other".
    for k in range(140):
        classify(server.target, pb.ClipRequest(clip_id="m", data=b"junk", codec=f"mp3:{40 + k}k"))
    paths = set(re.findall(r'codec_path="([^"]*)"', server.metrics()))
    assert "other" in paths and len(paths) <= 129


def test_client_cancels_are_counted_as_cancelled(server):
    def counts() -> tuple[float, float]:
        text = server.metrics()
        return (
            scrape_value(text, 'asc_streams_total{status="cancelled"}'),
            scrape_value(text, 'asc_streams_total{status="ok"}'),
        )

    before = counts()

    def cancel_one(k: int) -> None:
        """A device hangs up mid-stream: its requests are still open when it cancels."""
        hang_up = threading.Event()

        def reqs():
            yield from requests(config(device_id=f"c{k}"), packets("pcm16", [("c", audio(1, k))]))
            hang_up.wait(30)

        with grpc.insecure_channel(server.target) as channel:
            call = pbg.SceneClassifierStub(channel).StreamScenes(reqs())
            next(iter(call))
            call.cancel()
            hang_up.set()

    threads = [
        threading.Thread(target=lambda i=i: [cancel_one(12 * i + j) for j in range(12)])
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 30
    while counts()[0] < before[0] + 96 and time.monotonic() < deadline:
        time.sleep(0.1)
    after = counts()
    assert after[0] - before[0] == 96 and after[1] == before[1], (before, after)


# --- 8. a flood slows only itself --------------------------------------------------------------


def test_a_flood_of_tiny_windows_beside_a_good_stream(server):
    """The good stream gets every result, the flood its own, and memory stays bounded."""
    flood_cfg = config(device_id="flood", window_seconds=1.0, hop_seconds=0.1)
    flood: list = []

    def run_flood() -> None:
        clips = [(f"fl{k}", audio(4.9, 300 + k)) for k in range(1)]
        flood.append(run_stream(server.target, requests(flood_cfg, packets("pcm16", clips))))

    def work() -> None:
        thread = threading.Thread(target=run_flood)
        thread.start()
        check = healthy_beside(server.target, "beside-flood", clips=3)
        check()
        thread.join(120)

    _, grown = peak_growth(server.proc.pid, work)
    results, error = flood[0]
    assert error is None and summaries(results) == ["fl0"] and len(results) == 41
    assert grown < 150, grown


# --- memory: a device holding more than its share gives it back -------------------------------


def test_a_device_over_its_share_of_memory_cannot_lock_others_out():
    """64 MB of audio memory: a hog's 59 s windows take 43 MB, then three devices arrive."""
    small = start_server("--detector", "none", "--audio-memory-mb", "64")
    try:
        gate = threading.Event()
        outcomes: dict = {}

        def hog(name: str) -> None:
            def reqs():
                yield from requests(
                    config("flac", window_seconds=59.0, device_id="hog"),
                    packets("flac", [("h", np.zeros((RATE * 30, 1), np.float32))], end=False),
                )
                gate.wait(60)

            outcomes[name] = run_stream(small.target, reqs())

        first = threading.Thread(target=hog, args=("hog",))
        first.start()
        time.sleep(2)
        hog("second hog stream")  # the same device, over its share already: refused
        checks = [healthy_beside(small.target, f"device{k}") for k in range(3)]
        for check in checks:
            check()  # every good device streams to the end
        gate.set()
        first.join(60)
    finally:
        small.stop()
    check_status(outcomes["second hog stream"][1], grpc.StatusCode.RESOURCE_EXHAUSTED, "share")
    check_status(outcomes["hog"][1], grpc.StatusCode.RESOURCE_EXHAUSTED, "more than its share")
