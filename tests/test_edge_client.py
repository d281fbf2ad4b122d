"""The streaming engine against a small in-process server that checks the wire contract.

The fake server decodes every payload with the engine's StreamDecoder, so these tests check what
a real server relies on (sequence numbers, one encoder per clip, labels, end_of_clip, flow
control, resends after UNAVAILABLE) without torch; tests/test_edge_stream.py runs the real one.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest

from asc.codecs.alignment import codec_delay
from asc.codecs.stream import StreamDecoder
from asc.signals import full_band_clip
from edge.client import EdgeError, EdgeStreamer, stream_clips
from edge.clips import Clip
from edge.errors import SourceError
from edge.sources import looped
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg

RATE = 16000


def clips(n: int, seconds: float = 1.0, prefix: str = "clip", label: str = "park") -> list[Clip]:
    return [
        Clip(f"{prefix}-{k}", full_band_clip(RATE, seconds, 1, seed=k), RATE, label=label)
        for k in range(n)
    ]


@dataclass
class Call:
    config: pb.StreamConfig | None = None
    requests: list[pb.StreamRequest] = field(default_factory=list)
    arrivals: list[tuple[float, pb.AudioPacket]] = field(default_factory=list)
    summaries_sent: list[tuple[float, str]] = field(default_factory=list)


class FakeScenes(pbg.SceneClassifierServicer):
    """Answers each clip with one window and a summary once its last packet arrives.

    ``abort``: (call index, clip id, code) aborts that call when that clip's first packet
    arrives, after sending a window result for it; ``summary_delay`` holds summaries back;
    ``duplicate``: on the second call, first re-send a summary of this (already done) clip.
    """

    def __init__(self, abort=None, summary_delay=0.0, duplicate=None, reject=None):
        self.calls: list[Call] = []
        self.abort, self.summary_delay = abort, summary_delay
        self.duplicate, self.reject = duplicate, reject
        self.lock = threading.Lock()

    def StreamScenes(self, request_iterator, context):
        call = Call()
        with self.lock:
            index = len(self.calls)
            self.calls.append(call)
        inbox: queue.Queue = queue.Queue()

        def read():  # arrival times, independent of how fast we answer
            try:
                for request in request_iterator:
                    inbox.put((time.monotonic(), request))
            except Exception:  # the call ended
                pass
            inbox.put(None)

        threading.Thread(target=read, daemon=True).start()
        first = inbox.get()
        if first is None:
            return
        call.config = first[1].config
        call.requests.append(first[1])
        if self.reject:
            context.abort(*self.reject)
        if self.duplicate and index == 1:
            yield pb.SceneResult(clip_id=self.duplicate, clip_summary=True, fine_label="park")
        cfg = call.config
        decoders: dict[str, StreamDecoder] = {}
        samples: dict[str, int] = {}
        while (item := inbox.get()) is not None:
            arrived, request = item
            call.requests.append(request)
            packet = request.packet
            call.arrivals.append((arrived, packet))
            clip_id = packet.clip_id
            if clip_id not in decoders:
                rate, channels = cfg.sample_rate, cfg.channels
                delay = codec_delay(cfg.codec, rate, channels)
                decoders[clip_id] = StreamDecoder(cfg.codec, rate, channels, delay)
                samples[clip_id] = 0
                if self.abort and self.abort[:2] == (index, clip_id):
                    yield self.window(clip_id, cfg, 0.0)
                    context.abort(self.abort[2], "server restarting")
            samples[clip_id] += len(decoders[clip_id].feed(packet.payload))
            if packet.end_of_clip:
                samples[clip_id] += len(decoders.pop(clip_id).finish())
                seconds = samples[clip_id] / cfg.sample_rate
                yield self.window(clip_id, cfg, seconds)
                time.sleep(self.summary_delay)
                call.summaries_sent.append((time.monotonic(), clip_id))
                yield pb.SceneResult(
                    clip_id=clip_id,
                    clip_summary=True,
                    fine_label="park",
                    codec_path=cfg.codec,
                    windows=1,
                    clip_seconds=seconds,
                )

    @staticmethod
    def window(clip_id: str, cfg: pb.StreamConfig, end: float) -> pb.SceneResult:
        return pb.SceneResult(
            clip_id=clip_id, window_start=0.0, window_end=end, fine_label="park",
            codec_path=cfg.codec, server_latency_ms=5.0, last_window=True,
        )  # fmt: skip


@pytest.fixture
def serve():
    servers = []

    def start(servicer: FakeScenes) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pbg.add_SceneClassifierServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(0)


class Collector:
    def __init__(self) -> None:
        self.results: list[tuple[str, pb.SceneResult, str]] = []
        self.events: list[tuple[str, str]] = []

    def on_result(self, path, result, label):
        self.results.append((path, result, label))

    def on_event(self, path, message):
        self.events.append((path, message))

    def summaries(self, path=None) -> list[str]:
        return [r.clip_id for p, r, _ in self.results if r.clip_summary and path in (None, p)]


def test_two_paths_stream_every_clip_by_the_contract(serve):
    fake = FakeScenes()
    target = serve(fake)
    got = Collector()
    sent = clips(3, seconds=1.3)
    report = stream_clips(
        target, "pcm16,opus:32k", sent, rate=RATE, device_id="dev-1", window_seconds=1.0,
        detector=True, on_result=got.on_result, packet_ms=200,
    )  # fmt: skip
    assert not report.interrupted and list(report.totals) == ["pcm16", "opus:32k"]
    assert len(fake.calls) == 2
    for call in fake.calls:
        cfg = call.config
        assert (cfg.device_id, cfg.sample_rate, cfg.channels) == ("dev-1", RATE, 1)
        assert cfg.window_seconds == 1.0 and cfg.detector
        packets = [r.packet for r in call.requests[1:]]
        assert [p.sequence for p in packets] == list(range(len(packets)))
        for clip in sent:  # in order, not interleaved, label first, end last
            mine = [p for p in packets if p.clip_id == clip.clip_id]
            assert [p.label for p in mine] == ["park"] + [""] * (len(mine) - 1)
            assert [p.end_of_clip for p in mine] == [False] * (len(mine) - 1) + [True]
        assert [p.clip_id for p in packets] == sorted(p.clip_id for p in packets)
        path = cfg.codec
        totals = report.totals[path]
        assert totals.wire_bytes == sum(r.ByteSize() for r in call.requests)
        assert totals.framed_bytes == sum(len(p.payload) for p in packets)
        assert 0 < totals.payload_bytes < totals.framed_bytes < totals.wire_bytes
        assert totals.audio_seconds == pytest.approx(3 * 1.3)
        assert (totals.clips, totals.results, totals.clips_sent) == (3, 3, 3)
        assert (totals.labelled, totals.correct, totals.accuracy) == (3, 3, 1.0)
        assert got.summaries(path) == [c.clip_id for c in sent]
    for _, result, label in got.results:  # whole clips arrived: the decoded length is right
        assert label == "park"
        if result.clip_summary:
            assert result.clip_seconds == pytest.approx(1.3)


def test_opus_32k_wire_bytes_stay_within_5_percent_of_the_codec_payload(serve):
    long_id = "airport-lisbon-1000-40000-a"  # TAU-length ids are repeated in every packet
    sent = [Clip(long_id, full_band_clip(44100, 10.0, 1, seed=5), 44100)]
    report = stream_clips(serve(FakeScenes()), ["opus:32k"], sent)
    totals = report.totals["opus:32k"]
    assert totals.wire_ratio <= 1.05, totals
    assert 30 < totals.wire_kbps < 40


def test_at_most_max_in_flight_clips_go_out_before_their_summaries(serve):
    fake = FakeScenes(summary_delay=0.3)
    stream_clips(serve(fake), ["pcm16"], clips(3, seconds=0.5), rate=RATE, max_in_flight=1)
    (call,) = fake.calls
    firsts = {}
    for arrived, packet in call.arrivals:
        firsts.setdefault(packet.clip_id, arrived)
    summaries = dict((clip_id, t) for t, clip_id in call.summaries_sent)
    assert firsts["clip-1"] >= summaries["clip-0"]
    assert firsts["clip-2"] >= summaries["clip-1"]


def test_unavailable_reconnects_and_resends_unfinished_clips_once(serve):
    fake = FakeScenes(abort=(0, "clip-1", grpc.StatusCode.UNAVAILABLE), duplicate="clip-0")
    got = Collector()
    report = stream_clips(
        serve(fake), ["opus:32k"], clips(3), rate=RATE, on_result=got.on_result,
        on_event=got.on_event,
    )  # fmt: skip
    assert len(fake.calls) == 2
    second = [r.packet for r in fake.calls[1].requests[1:]]
    assert second[0].sequence == 0 and second[0].clip_id == "clip-1"  # from its beginning
    assert second[0].label == "park"
    assert {p.clip_id for p in second} == {"clip-1", "clip-2"}
    assert got.summaries() == ["clip-0", "clip-1", "clip-2"]  # the duplicate is not reported
    windows = [r.clip_id for _, r, _ in got.results if not r.clip_summary]
    assert windows.count("clip-1") == 2  # the early one, then the resent clip's full window
    totals = report.totals["opus:32k"]
    assert (totals.clips, totals.reconnects, totals.resent_clips) == (3, 1, 1)
    assert len(got.events) == 1 and "server restarting" in got.events[0][1]
    assert "resending 1 clip(s)" in got.events[0][1]


def test_other_statuses_end_the_run_with_the_servers_message(serve):
    target = serve(FakeScenes(reject=(grpc.StatusCode.INVALID_ARGUMENT, "no such model")))
    with pytest.raises(EdgeError) as error:
        stream_clips(target, ["pcm16"], clips(1), rate=RATE)
    assert error.value.code == "INVALID_ARGUMENT"
    assert str(error.value) == "INVALID_ARGUMENT: no such model"


def test_a_failing_source_still_delivers_what_was_sent(serve):
    def source():
        yield from clips(2)
        raise SourceError("broken.wav: not a readable audio file")

    got = Collector()
    with pytest.raises(SourceError, match=r"broken\.wav"):
        stream_clips(serve(FakeScenes()), ["pcm16"], source(), rate=RATE, on_result=got.on_result)
    assert got.summaries() == ["clip-0", "clip-1"]


def test_clips_must_match_the_stream_format(serve):
    odd = [Clip("x", np.zeros((RATE, 2), np.float32), RATE)]
    with pytest.raises(SourceError, match="2 channel"):
        stream_clips(serve(FakeScenes()), ["pcm16"], odd, rate=RATE)


def test_stop_with_drain_finishes_the_clips_in_flight(serve):
    fake = FakeScenes()
    got = Collector()
    streamer = EdgeStreamer(
        serve(fake), ["pcm16", "opus:32k"], looped(lambda: clips(2, seconds=0.5)), rate=RATE,
        on_result=got.on_result,
    )  # fmt: skip
    streamer.start()
    deadline = time.monotonic() + 30
    while len(got.summaries()) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    streamer.stop(drain=True)
    assert streamer.join(timeout=30)
    assert streamer.first_error() is None
    assert sum(t.clips for t in streamer.totals.values()) >= 6
    for path, totals in streamer.totals.items():
        assert totals.clips == totals.clips_sent >= 1  # every clip sent got its summary
        ids = got.summaries(path)
        assert len(ids) == len(set(ids)) == totals.clips
        assert ids[:4] == ["clip-0", "clip-1", "clip-0@1", "clip-1@1"][: len(ids[:4])]


def test_realtime_paces_packets_at_audio_speed(serve):
    started = time.monotonic()
    stream_clips(serve(FakeScenes()), ["pcm16"], clips(1, seconds=0.8), rate=RATE, realtime=True)
    assert time.monotonic() - started >= 0.75  # a lower bound only: sleeping is not slower


def test_a_clip_id_already_in_flight_is_refused(serve):
    twice = [*clips(1), *clips(1)]
    with pytest.raises(SourceError, match="'clip-0' is already in flight"):
        stream_clips(serve(FakeScenes(summary_delay=0.5)), ["pcm16"], twice, rate=RATE)
