"""The scene server on loopback, spoken to at the protocol level: results, limits and failures.

Each bad input runs next to a healthy stream on the same server, which must still get all of
its results. The edge client's own end-to-end tests are in test_edge_stream.py.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from asc.codecs.clip import encode
from asc.codecs.stream import StreamEncoder
from asc.signals import full_band_clip
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg
from tests.servers import hold_idle_stream, run_stream, start_server

RATE = 44100
CHUNK = RATE // 5


@pytest.fixture(scope="module")
def server():
    process = start_server()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def limited():
    process = start_server("--max-streams", "2", "--max-clip-seconds", "3", "--detector", "none")
    yield process
    process.stop()


def audio(seconds: float, seed: int = 0, channels: int = 1) -> np.ndarray:
    return full_band_clip(RATE, seconds=seconds, channels=channels, seed=seed)


def packets(
    codec: str, clips: list[tuple[str, np.ndarray, str]], rate: int = RATE, channels: int = 1
) -> Iterator[pb.AudioPacket]:
    """Each clip through its own StreamEncoder, cut into 0.2 s packets; the last ends the clip."""
    sequence = 0
    for clip_id, pcm, label in clips:
        encoder = StreamEncoder(codec, rate, channels)
        step = rate // 5
        for i in range(0, len(pcm), step):
            yield pb.AudioPacket(
                sequence=sequence,
                clip_id=clip_id,
                payload=encoder.encode(pcm[i : i + step]),
                label=label if i == 0 else "",
            )
            sequence += 1
        yield pb.AudioPacket(
            sequence=sequence, clip_id=clip_id, payload=encoder.finish(), end_of_clip=True
        )
        sequence += 1


def requests(config: pb.StreamConfig, items) -> Iterator[pb.StreamRequest]:
    yield pb.StreamRequest(config=config)
    for item in items:
        yield item if isinstance(item, pb.StreamRequest) else pb.StreamRequest(packet=item)


def config(codec: str = "pcm16", **kw) -> pb.StreamConfig:
    values = {"device_id": "test", "codec": codec, "sample_rate": RATE, "channels": 1, **kw}
    return pb.StreamConfig(**values)


def summaries(results: list[pb.SceneResult]) -> list[pb.SceneResult]:
    return [r for r in results if r.clip_summary]


def test_stream_returns_windows_and_a_summary_per_clip(server):
    clips = [("a", audio(3.0, 1), "park"), ("b", audio(2.5, 2), "")]
    results, error = run_stream(
        server.target, requests(config("opus:32k", detector=True), packets("opus:32k", clips))
    )
    assert error is None
    assert [r.clip_id for r in results] == ["a", "a", "b", "b"]
    window, summary = results[0], results[1]
    assert not window.clip_summary and summary.clip_summary and summary.windows == 1
    assert window.window_start == 0.0 and window.window_end == pytest.approx(3.0)
    assert summary.clip_seconds == pytest.approx(3.0)
    assert window.codec_path == "opus:32k" and window.model_id == "ensemble"
    assert len(window.model_version) == 12
    assert window.fine_label == max(window.fine, key=lambda p: p.probability).label
    assert sum(p.probability for p in window.fine) == pytest.approx(1.0, abs=1e-4)
    assert window.coarse_label in ("indoor", "outdoor", "transportation")
    assert window.detector_ran and 0.0 <= window.lossy_probability <= 1.0
    assert window.codec_family and len(window.codec_families) == 8
    for r in results:  # the family named never contradicts the call (asc.codecs.grid_tests)
        assert (r.codec_family == "lossless") == (r.lossy_probability < 0.5)
    assert window.last_window and window.server_latency_ms > 0


def test_windows_follow_window_and_hop(server):
    clips = [("long", audio(9.0, 3), "")]
    cfg = config("flac", window_seconds=4.0, hop_seconds=2.0)
    results, error = run_stream(server.target, requests(cfg, packets("flac", clips)))
    assert error is None
    windows = [r for r in results if not r.clip_summary]
    # 0-4, 2-6, 4-8, then the end: one more window aligned to 9 s covers the last second
    assert [(r.window_start, r.window_end) for r in windows] == [
        (0.0, 4.0),
        (2.0, 6.0),
        (4.0, 8.0),
        (5.0, 9.0),
    ]
    summary = summaries(results)[0]
    assert summary.windows == 4
    mean = np.mean([[p.probability for p in r.fine] for r in windows], axis=0)
    assert [p.probability for p in summary.fine] == pytest.approx(mean.tolist(), abs=1e-5)


def test_stereo_and_other_rates_are_resampled_for_the_model(server):
    rate = 16000
    pcm = full_band_clip(rate, seconds=2.0, channels=2, seed=4)
    cfg = pb.StreamConfig(codec="mp3:64k", sample_rate=rate, channels=2)
    results, error = run_stream(
        server.target, requests(cfg, packets("mp3:64k", [("s", pcm, "")], rate, 2))
    )
    assert error is None and len(summaries(results)) == 1
    assert summaries(results)[0].clip_seconds == pytest.approx(2.0)


def test_eight_concurrent_streams_all_get_their_results(server):
    codecs = ["pcm16", "flac", "opus:32k", "mp3:64k", "aac:32k", "he-aac:16k", "sbc:64k", "pcm16"]
    outcomes: dict[int, tuple] = {}

    def one(i: int, codec: str) -> None:
        clips = [(f"s{i}-c{k}", audio(2.0, 10 * i + k), "") for k in range(2)]
        outcomes[i] = run_stream(server.target, requests(config(codec), packets(codec, clips)))

    threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(codecs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, codec in enumerate(codecs):
        results, error = outcomes[i]
        assert error is None, (codec, error)
        assert [r.clip_id for r in summaries(results)] == [f"s{i}-c0", f"s{i}-c1"]
        assert {r.codec_path for r in results} == {codec}


def test_classify_clip_with_a_spec_and_by_probing(server):
    data = encode(audio(4.0, 5), RATE, "mp3:64k")
    with grpc.insecure_channel(server.target) as channel:
        stub = pbg.SceneClassifierStub(channel)
        named = stub.ClassifyClip(pb.ClipRequest(clip_id="x", data=data, codec="mp3:64k"))
        probed = stub.ClassifyClip(
            pb.ClipRequest(clip_id="y", data=data, window_seconds=2.0, detector=True)
        )
        with pytest.raises(grpc.RpcError) as bad:
            stub.ClassifyClip(pb.ClipRequest(clip_id="z", data=b"not audio at all" * 10))
    assert named.summary.clip_summary and named.summary.codec_path == "mp3:64k"
    assert len(named.windows) == 1 and named.windows[0].window_end == pytest.approx(4.0, abs=0.05)
    assert named.summary.fine_label == named.windows[0].fine_label
    assert probed.summary.codec_path == "probed" and len(probed.windows) == 2
    assert probed.windows[0].detector_ran
    assert bad.value.code() == grpc.StatusCode.DATA_LOSS and "'z'" in bad.value.details()


def family_probability(result: pb.SceneResult, family: str) -> float:
    return next(p.probability for p in result.codec_families if p.label == family)


def test_the_detector_names_sbc_by_its_frame_grid(server):
    """SBC's noise hides under a recording's (the network alone calls such copies lossless); the
    grid test (asc.codecs.sbc_trace) finds its frames in a mono stream and in a ClassifyClip
    file, and finds none in the same audio sent losslessly."""
    pcm = audio(4.0, 9)
    clips = [("bt", pcm, "")]
    # three clips: the first is tested, the next two (within 10 s of the stream's audio) take
    # its result, so a stream of short clips costs one test per 10 s (server/session.py)
    short = [(f"bt{i}", audio(2.5, 20 + i), "") for i in range(3)]
    sbc, error = run_stream(
        server.target,
        requests(config("sbc:bitpool=53", detector=True), packets("sbc:bitpool=53", clips + short)),
    )
    assert error is None
    assert [r.codec_family for r in summaries(sbc)] == ["sbc"] * 4
    flac, error = run_stream(
        server.target, requests(config("flac", detector=True), packets("flac", clips))
    )
    assert error is None
    with grpc.insecure_channel(server.target) as channel:
        stub = pbg.SceneClassifierStub(channel)
        data = encode(pcm, RATE, "sbc:bitpool=53")
        request = pb.ClipRequest(clip_id="f", data=data, codec="sbc:bitpool=53", detector=True)
        called = stub.ClassifyClip(request)
    for summary in (*summaries(sbc), called.summary):
        assert summary.codec_family == "sbc" and summary.lossy_probability >= 0.5
        assert family_probability(summary, "sbc") >= 0.5
    assert family_probability(summaries(flac)[0], "sbc") < 0.5
    assert all(r.codec_family != "sbc" for r in summaries(flac))  # no SBC grid: never named SBC
    # An operator sees the same per path: clips counted by the family they were given.
    families = dict(
        re.findall(r'^asc_codec_families_total\{codec_path="([^"]+)",family="sbc"\} (\S+)$',
                   server.metrics(), re.MULTILINE)
    )  # fmt: skip
    assert float(families["sbc:bitpool=53"]) >= 5 and "flac" not in families


def test_a_stream_that_asks_waits_for_its_grid_tests_behind_others(server):
    """Behind another stream's test a summary takes no call of its own (a backlog of tests must
    not become every stream's latency), unless its stream asked to wait for them
    (StreamConfig.wait_for_grid_tests, for files replayed faster than real time): then the SBC
    copy is named SBC, which the network alone does not do."""
    started = threading.Event()
    done: list = []

    def busy() -> None:  # a lossless stream: its 10 s window costs every grid test, seconds
        with grpc.insecure_channel(server.target) as channel:
            reqs = requests(
                config("flac", detector=True), packets("flac", [("x", audio(10.0, 5), "")])
            )
            for result in pbg.SceneClassifierStub(channel).StreamScenes(reqs, timeout=120):
                started.set()  # its window is back, so its test was queued before it
                done.append(result)

    thread = threading.Thread(target=busy)
    thread.start()
    assert started.wait(60)
    asked = config("sbc:bitpool=53", detector=True, wait_for_grid_tests=True)
    sbc, error = run_stream(
        server.target, requests(asked, packets("sbc:bitpool=53", [("bt", audio(4.0, 9), "")]))
    )
    thread.join()
    assert error is None and summaries(done)
    (summary,) = summaries(sbc)
    assert summary.codec_family == "sbc" and summary.lossy_probability >= 0.5


def test_the_detector_names_mp3_by_its_granule_grid(server):
    """The network often takes a real recording's MP3 copy for Opus or Vorbis; the MP3 grid
    test (asc.codecs.mp3_trace) finds Layer III's granules in an MP3 stream, and none in the
    same recording sent losslessly."""
    from asc.audio import load
    from tests.real_data import kitchen20_root
    from training.kitchen20_lossless import kitchen20_lossless

    kept, _ = kitchen20_lossless(kitchen20_root())
    peel = next(c for c in kept if c.label == "peel")
    original = load(peel.path, rate=RATE, channels=1)[0]
    found = []
    for codec in ("mp3:128k", "flac"):
        results, error = run_stream(
            server.target,
            requests(config(codec, detector=True), packets(codec, [(codec, original, "")])),
        )
        assert error is None
        found += summaries(results)
    coded, plain = found
    assert coded.codec_family == "mp3" and coded.lossy_probability >= 0.5
    assert family_probability(coded, "mp3") >= 0.5
    assert family_probability(plain, "mp3") < 0.5 and plain.codec_family != "mp3"


def test_the_detector_names_aac_by_its_mdct_grid(server):
    """A real recording's aac:256k copy hides its noise under the recording's (the network alone
    may call it lossless); replayed losslessly, as a device replays a file, the MDCT grid
    test (asc.codecs.mdct_trace) still finds AAC's frames. The original shows none: a clip the
    Kitchen20 rules keep as lossless (the first blender clip is cut to the 16-bit floor at
    15.8 kHz, a lossy past that the detector may name)."""
    from asc.audio import load
    from asc.codecs import roundtrip
    from tests.real_data import kitchen20_root
    from training.kitchen20_lossless import kitchen20_lossless

    kept, _ = kitchen20_lossless(kitchen20_root())
    blender = next(c for c in kept if c.label == "blender")
    original = load(blender.path, rate=RATE, channels=1)[0]
    coded = np.round(roundtrip(original, RATE, "aac:256k").astype(np.float64) * 32768) / 32768
    found = []
    for clip in (("replayed", coded.astype(np.float32), ""), ("original", original, "")):
        # a stream each: within 10 s of its audio, a stream's next clip takes this one's test
        results, error = run_stream(
            server.target, requests(config("flac", detector=True), packets("flac", [clip]))
        )
        assert error is None
        found += summaries(results)
    replayed, plain = found
    assert replayed.codec_family == "aac" and replayed.lossy_probability >= 0.5
    assert family_probability(plain, "aac") < 0.5 and plain.codec_family != "aac"


def test_get_info_lists_codecs_and_models(server):
    with grpc.insecure_channel(server.target) as channel:
        info = pbg.SceneClassifierStub(channel).GetInfo(pb.InfoRequest())
    codecs = {c.name: c for c in info.codecs}
    assert codecs["opus"].available and codecs["pcm16"].lossless and not codecs["mp3"].lossless
    kinds = {m.kind: m for m in info.models}
    scene = kinds["scene_ensemble"]
    assert len(scene.fine_classes) == 10 and list(scene.coarse_classes) == [
        "indoor",
        "outdoor",
        "transportation",
    ]
    assert "mp3:64k" in scene.codec_conditions and '"kind": "scene_ensemble"' in scene.metadata_json
    assert "lossy_detector" in kinds
    assert info.versions["torch"].startswith("2.11") and info.versions["device"] == "cpu"


def test_health_and_reflection(server):
    with grpc.insecure_channel(server.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"asc.v1.SceneClassifier", "grpc.health.v1.Health"} <= names


def test_health_command(server):
    import subprocess
    import sys

    ok = subprocess.run(
        [sys.executable, "-m", "server.cli", "health", "--server", server.target],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "SERVING" in ok.stdout
    down = subprocess.run(
        [sys.executable, "-m", "server.cli", "health", "--server", "127.0.0.1:1", "--timeout", "1"],
        capture_output=True,
        text=True,
    )
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr


def garbage_packets() -> Iterator[pb.AudioPacket]:
    encoder = StreamEncoder("opus:32k", RATE, 1)
    good = encoder.encode(audio(1.0, 6))
    yield pb.AudioPacket(sequence=0, clip_id="g", payload=good)
    yield pb.AudioPacket(sequence=1, clip_id="g", payload=b"P\x05\xff\xfe\xfd\xfc\xfb" * 3)


def truncated_packets() -> Iterator[pb.AudioPacket]:
    encoder = StreamEncoder("mp3:64k", RATE, 1)
    data = encoder.encode(audio(1.0, 7)) + encoder.finish()
    yield pb.AudioPacket(sequence=0, clip_id="t", payload=data[: len(data) // 2], end_of_clip=True)


BAD_STREAMS = {
    "unknown codec": (
        lambda: requests(config("warble:32k"), []),
        grpc.StatusCode.INVALID_ARGUMENT,
        "warble",
    ),
    "malformed spec": (
        lambda: requests(config("mp3:lots"), []),
        grpc.StatusCode.INVALID_ARGUMENT,
        "lots",
    ),
    "rate the codec cannot take": (
        lambda: requests(config("sbc:64k", sample_rate=22050), []),
        grpc.StatusCode.INVALID_ARGUMENT,
        "22050",
    ),
    "rate out of range": (
        lambda: requests(config("pcm16", sample_rate=1000), []),
        grpc.StatusCode.INVALID_ARGUMENT,
        "1000 Hz",
    ),
    "three channels": (
        lambda: requests(config("pcm16", channels=3), []),
        grpc.StatusCode.INVALID_ARGUMENT,
        "3 channels",
    ),
    "bad window": (
        lambda: requests(config("pcm16", window_seconds=0.1), []),
        grpc.StatusCode.INVALID_ARGUMENT,
        "window",
    ),
    "packet before config": (
        lambda: iter([pb.StreamRequest(packet=pb.AudioPacket(clip_id="x"))]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "StreamConfig",
    ),
    "empty stream": (lambda: iter([]), grpc.StatusCode.INVALID_ARGUMENT, "StreamConfig"),
    "second config": (
        lambda: requests(config(), [pb.StreamRequest(config=config())]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "second StreamConfig",
    ),
    "sequence gap": (
        lambda: requests(
            config(),
            [pb.AudioPacket(sequence=0, clip_id="q"), pb.AudioPacket(sequence=2, clip_id="q")],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "sequence 2",
    ),
    "repeated sequence": (
        lambda: requests(
            config(),
            [pb.AudioPacket(sequence=4, clip_id="q"), pb.AudioPacket(sequence=4, clip_id="q")],
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "sequence 4",
    ),
    "no clip id": (
        lambda: requests(config(), [pb.AudioPacket(sequence=0)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "clip_id",
    ),
    "garbage payload": (
        lambda: requests(config("opus:32k"), garbage_packets()),
        grpc.StatusCode.DATA_LOSS,
        "'g'",
    ),
    "truncated clip": (
        lambda: requests(config("mp3:64k"), truncated_packets()),
        grpc.StatusCode.DATA_LOSS,
        "truncated",
    ),
    "clip without audio": (
        lambda: requests(
            config(), [pb.AudioPacket(sequence=0, clip_id="e", payload=b"", end_of_clip=True)]
        ),
        grpc.StatusCode.DATA_LOSS,
        "'e'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_STREAMS))
def test_bad_stream_gets_its_status_and_spares_a_parallel_stream(server, case):
    make, code, needle = BAD_STREAMS[case]
    healthy: dict = {}

    def healthy_stream() -> None:
        clips = [(f"h{k}", audio(1.5, 40 + k), "") for k in range(2)]
        healthy["out"] = run_stream(
            server.target, requests(config(), slow(packets("pcm16", clips)))
        )

    thread = threading.Thread(target=healthy_stream)
    thread.start()
    _results, error = run_stream(server.target, make())
    thread.join()
    assert error is not None, f"{case}: the server accepted it"
    assert error.code() == code, (case, error.code(), error.details())
    assert needle in error.details(), (case, error.details())
    good, good_error = healthy["out"]
    assert good_error is None and [r.clip_id for r in summaries(good)] == ["h0", "h1"]


def slow(items: Iterator, pause: float = 0.02) -> Iterator:
    """Spread a healthy stream over the time the bad one is failing."""
    for item in items:
        time.sleep(pause)
        yield item


def test_results_accepted_before_a_bad_packet_are_still_delivered(server):
    encoder = StreamEncoder("pcm16", RATE, 1)
    first = list(packets("pcm16", [("ok", audio(1.0, 8), "")]))
    bad = pb.AudioPacket(
        sequence=len(first) + 5, clip_id="next", payload=encoder.encode(audio(0.1))
    )
    results, error = run_stream(server.target, requests(config(), [*first, bad]))
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [r.clip_id for r in summaries(results)] == ["ok"]


def test_stream_limit_gives_resource_exhausted(limited):
    gate = threading.Event()

    def held(clip: str) -> Iterator[pb.StreamRequest]:
        yield pb.StreamRequest(config=config())
        gate.wait(60)  # the stream stays open, holding its slot
        for packet in packets("pcm16", [(clip, audio(1.0, 9), "")]):
            yield pb.StreamRequest(packet=packet)

    outcomes: dict = {}

    def hold(i: int) -> None:
        outcomes[i] = run_stream(limited.target, held(f"held{i}"))

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.5)  # both held streams are open now
    _results, error = run_stream(limited.target, requests(config(), []))
    gate.set()
    for t in threads:
        t.join()
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "2 concurrent streams" in error.details()
    assert all(outcomes[i][1] is None for i in range(2))


def test_endless_clip_is_bounded(limited):
    _results, error = run_stream(
        limited.target, requests(config(), packets("pcm16", [("endless", audio(5.0, 11), "")]))
    )
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "'endless' exceeds 3 s" in error.details()


def test_metrics_carry_codec_paths_and_live_accuracy(limited):
    labels = ["park", "bus", "park"]
    clips = [(f"m{k}", audio(2.0, 20 + k), label) for k, label in enumerate(labels)]
    results, error = run_stream(
        limited.target, requests(config("aac:32k"), packets("aac:32k", clips))
    )
    assert error is None
    predicted = [r.fine_label for r in summaries(results)]
    correct = sum(p == t for p, t in zip(predicted, labels, strict=True))
    text = limited.metrics()

    def value(name: str) -> float:
        match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
        assert match, f"{name} missing from the scrape"
        return float(match.group(1))

    path = 'codec_path="aac:32k"'
    assert value(f'asc_labelled_clips_total{{{path},model="ensemble"}}') == 3
    assert value(f'asc_correct_clips_total{{{path},model="ensemble"}}') == correct
    assert value(f'asc_accuracy{{{path},model="ensemble"}}') == pytest.approx(correct / 3)
    assert value(f"asc_clips_total{{{path}}}") == 3
    assert value(f'asc_windows_classified_total{{{path},model="ensemble"}}') == 3
    assert value(f"asc_decoded_seconds_total{{{path}}}") == pytest.approx(6.0)
    assert value(f"asc_packets_total{{{path}}}") == len(list(packets("aac:32k", clips)))
    assert value(f"asc_payload_bytes_total{{{path}}}") > 0
    assert value(f"asc_window_latency_seconds_count{{{path}}}") == 3
    assert value('asc_batch_size_count{model="ensemble"}') >= 1
    for series in ("asc_active_streams", "asc_queue_delay_seconds_bucket", "asc_inference_seconds"):
        assert series in text


def test_sigterm_drains_windows_in_flight():
    # A 3 s batch delay keeps the window queued when SIGTERM arrives (it waits for the idle
    # stream, which could still join its pass).
    process = start_server("--max-delay-ms", "3000", "--detector", "none")
    hold_idle_stream(process)
    got: list = []
    sent = threading.Event()

    def reqs() -> Iterator[pb.StreamRequest]:
        yield from requests(config(), packets("pcm16", [("drain", audio(1.0, 30), "")]))
        sent.set()
        time.sleep(30)  # keep the stream open: the server must end it

    def run() -> None:
        got.append(run_stream(process.target, reqs()))

    thread = threading.Thread(target=run)
    thread.start()
    assert sent.wait(60)
    time.sleep(0.5)
    process.proc.send_signal(signal.SIGTERM)
    thread.join(60)
    code = process.stop()
    results, error = got[0]
    assert [r.clip_id for r in results] == ["drain", "drain"]  # window and summary
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in error.details()
    assert code == 0


def test_broken_checkpoint_stops_startup_with_a_clear_message(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(RuntimeError, match=r"exited 2: .*broken.safetensors.*corrupt"):
        start_server("--ensemble", str(broken))
    with pytest.raises(RuntimeError, match=r"exited 2: .*holds a scene_ensemble.*lossy_detector"):
        start_server("--detector", "models/ensemble.safetensors")


def test_a_clip_sent_again_is_answered_again_not_classified_again(limited):
    first_clips = [("dup1", audio(1.0, 50), "")]
    flac = config("flac")
    first, error = run_stream(limited.target, requests(flac, packets("flac", first_clips)))
    assert error is None
    before = limited.metrics()
    again_clips = [("dup1", audio(1.0, 50), ""), ("dup2", audio(1.0, 51), "")]
    again, error = run_stream(limited.target, requests(flac, packets("flac", again_clips)))
    assert error is None
    assert [r.clip_id for r in summaries(again)] == ["dup1", "dup2"]
    assert [r.SerializeToString() for r in again if r.clip_id == "dup1"] == [
        r.SerializeToString() for r in first
    ]
    after = limited.metrics()
    assert 'asc_duplicate_clips_total{codec_path="flac"} 1.0' in after
    count = r'asc_windows_classified_total\{codec_path="flac",model="ensemble"\} (\S+)'
    windows_before = float(re.search(count, before).group(1))
    assert float(re.search(count, after).group(1)) == windows_before + 1  # dup2's window only
    _, error = run_stream(
        limited.target, requests(config("flac", device_id="other"), packets("flac", first_clips))
    )
    assert error is None and 'asc_duplicate_clips_total{codec_path="flac"} 1.0' in limited.metrics()
