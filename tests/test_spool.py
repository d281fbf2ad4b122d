"""The edge's store-and-forward spool: its files and crash states, its bound, and the streamer
using it against the in-process fake server (the real server and real processes, killed
mid-stream, are in test_reliability.py)."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest

from asc.signals import full_band_clip
from edge import spool as spool_module
from edge.client import EdgeError, EdgeStreamer, stream_clips
from edge.clips import Clip, LiveClip
from edge.errors import SpoolError
from edge.spool import Spool
from edge.spool_files import encode_audio, window_key
from proto import scene_classifier_pb2_grpc as pbg
from tests.test_edge_client import Collector, FakeScenes, clips, serve  # noqa: F401

RATE = 16000


def grid16(seconds: float, seed: int) -> np.ndarray:
    """Audio as a 16-bit file or sound card gives it: every sample on the 1/32768 grid."""
    x = full_band_clip(RATE, seconds, 1, seed=seed)
    return (np.round(x * 32768) / 32768).astype(np.float32)


def open_spool(path, **kwargs) -> Spool:
    return Spool(path, **{"durable": False, **kwargs}).open()


def test_audio_is_stored_losslessly(tmp_path):
    with open_spool(tmp_path / "s") as spool:
        on_grid = Clip("a", grid16(1.0, 1), RATE, label="park", source="a.wav", offset=2.0)
        off_grid = Clip("b", full_band_clip(RATE, 1.0, 2, seed=2) * 0.3, RATE)
        a = spool.add(on_grid, on_grid.pcm, ["pcm16"])
        b = spool.add(off_grid, off_grid.pcm, ["pcm16"])
        assert a.audio.endswith(".flac") and b.audio.endswith(".npy")
        assert np.array_equal(spool.load(a), on_grid.pcm)
        assert np.array_equal(spool.load(b), off_grid.pcm)
        assert a.nbytes < on_grid.pcm.nbytes * 0.75  # FLAC: smaller than float32
    with open_spool(tmp_path / "s") as spool:  # and again after a restart
        a, b = spool.entries["a"], spool.entries["b"]
        assert (a.label, a.source, a.offset, a.paths) == ("park", "a.wav", 2.0, ["pcm16"])
        assert np.array_equal(spool.load(b), off_grid.pcm)
        assert spool.stats().recovered == 2
    data, suffix = encode_audio(np.zeros((0, 1), np.float32), RATE)
    assert suffix == ".npy" and data


def test_an_entry_goes_once_every_path_has_its_summary_and_the_ledger_remembers(tmp_path):
    clip = Clip("c", grid16(0.5, 3), RATE)
    with open_spool(tmp_path / "s") as spool:
        spool.add(clip, clip.pcm, ["pcm16", "opus:32k"])
        spool.window_reported("c", "opus:32k", window_key(0.0, 0.5))
        spool.completed("c", "pcm16")
        assert spool.owed("c") == ["opus:32k"]
    with open_spool(tmp_path / "s") as spool:
        assert spool.owed("c") == ["opus:32k"]
        assert spool.entries["c"].windows == {"opus:32k": {(0.0, 0.5)}}
        spool.completed("c", "opus:32k")
        assert "c" not in spool.entries and spool.bytes == 0
        assert sorted(p.name for p in (tmp_path / "s" / "clips").iterdir()) == []
    with open_spool(tmp_path / "s") as spool:
        # the same clip read from the files again: nothing owed, for a new path only that
        assert spool.plan("c", ["pcm16", "opus:32k"]) == []
        assert spool.plan("c", ["pcm16", "flac"]) == ["flac"]
        assert spool.summarised("c") == {"pcm16", "opus:32k"}


def test_leftovers_of_a_crash_are_cleaned_or_finished_on_open(tmp_path):
    clip = Clip("x", grid16(0.5, 4), RATE)
    with open_spool(tmp_path / "s") as spool:
        kept = spool.add(clip, clip.pcm, ["pcm16"])
        done = spool.add(Clip("y", clip.pcm, RATE), clip.pcm, ["pcm16"])
    clip_dir = tmp_path / "s" / "clips"
    (clip_dir / ".tmp-000000000099.flac").write_bytes(b"half a file")  # a write cut short
    (clip_dir / "000000000042.npy").write_bytes(b"audio without metadata")  # an add cut short
    with open(tmp_path / "s" / "done.jsonl", "a") as f:  # ledgered, not yet removed
        f.write(json.dumps({"clip_id": "y", "path": "pcm16"}) + "\n")
        f.write('{"clip_id": "z", "pa')  # a ledger line cut short
    with open_spool(tmp_path / "s") as spool:
        assert list(spool.entries) == ["x"]
        assert sorted(p.name for p in clip_dir.iterdir()) == [kept.audio, f"{kept.stem}.json"]
        assert not (clip_dir / done.audio).exists()
        assert spool.bytes == kept.nbytes
        nxt = spool.add(Clip("w", clip.pcm, RATE), clip.pcm, ["pcm16"])
        assert nxt.seq == 43  # numbering continues past every file seen


def test_the_oldest_clips_are_evicted_to_stay_under_the_bound(tmp_path):
    pcm = full_band_clip(RATE, 1.0, 1, seed=5) * 0.3  # .npy: 64 kB and a little
    size = len(encode_audio(pcm, RATE)[0])
    warnings, evicted = [], []
    spool = open_spool(tmp_path / "s", max_bytes=int(3.5 * size), on_warning=warnings.append)
    spool.on_evict = lambda entry, owed: evicted.append((entry.clip_id, owed))
    for k in range(5):
        spool.add(Clip(f"k{k}", pcm, RATE), pcm, ["pcm16", "opus:32k"])
        if k == 0:
            spool.completed("k0", "pcm16")
    assert list(spool.entries) == ["k2", "k3", "k4"]
    assert evicted == [("k0", ["opus:32k"]), ("k1", ["pcm16", "opus:32k"])]
    stats = spool.stats()
    assert stats.bytes <= stats.max_bytes and stats.clips == 3
    assert (stats.evicted_clips, stats.added) == (2, 5) and stats.evicted_bytes > 2 * size
    assert "evicted the oldest clip k0 (still owed to opus:32k)" in warnings[0]
    assert spool.load(type("E", (), {"audio": "000000000000.npy", "channels": 1})()) is None
    huge = np.zeros((4 * size, 1), np.float32) + 0.1
    assert spool.add(Clip("huge", huge, RATE), huge, ["pcm16"]) is None
    assert spool.stats().unspooled == 1 and list(spool.entries) == ["k2", "k3", "k4"]
    spool.close()


def test_one_edge_per_spool(tmp_path):
    with open_spool(tmp_path / "s"), pytest.raises(SpoolError, match=r"in use by .*pid \d+"):
        open_spool(tmp_path / "s")
    open_spool(tmp_path / "s").close()  # free again once the first has closed


def test_an_unusable_directory_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SpoolError, match=r"spool .*file"):
        open_spool(tmp_path / "file" / "spool")


def test_backlog_leaves_clips_this_run_cannot_send(tmp_path):
    warnings: list[str] = []
    with open_spool(tmp_path / "s", on_warning=warnings.append) as spool:
        pcm = grid16(0.5, 6)
        spool.add(Clip("mono", pcm, RATE), pcm, ["pcm16", "flac"])
        spool.add(Clip("other-rate", pcm, 8000), pcm, ["pcm16"])
        spool.add(Clip("flac-only", pcm, RATE), pcm, ["flac"])
        backlog = spool.backlog(["pcm16"], RATE, 1)
    assert [(e.clip_id, owed) for e, owed in backlog] == [("mono", ["pcm16"])]
    assert any("another sample rate" in w for w in warnings)
    assert any("(flac)" in w for w in warnings)


def test_the_ledger_is_compacted(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "LEDGER_KEEP", 10)
    with open_spool(tmp_path / "s") as spool:
        for k in range(25):
            spool.completed(f"id{k}", "pcm16")
        assert len((tmp_path / "s" / "done.jsonl").read_text().splitlines()) <= 20
        assert "id24" in spool.done and "id0" not in spool.done
    with open_spool(tmp_path / "s") as spool:
        assert spool.summarised("id24") == {"pcm16"} and spool.summarised("id0") == set()


# --- the streamer with a spool, against the fake server ------------------------------------


def test_a_run_that_fails_is_resumed_from_the_spool_first(serve, tmp_path):  # noqa: F811
    sent = clips(4, seconds=0.5)
    first = Collector()
    with open_spool(tmp_path / "s") as spool:
        fake = FakeScenes(abort=(0, "clip-2", grpc.StatusCode.INTERNAL))
        with pytest.raises(EdgeError, match="INTERNAL"):
            stream_clips(
                serve(fake),
                ["pcm16"],
                sent,
                rate=RATE,
                spool=spool,
                on_result=first.on_result,
                max_in_flight=2,
            )
        assert set(spool.entries) >= {"clip-2"}
        assert spool.entries["clip-2"].windows == {"pcm16": {(0.0, 0.0)}}
    second = Collector()
    fake = FakeScenes()
    with open_spool(tmp_path / "s") as spool:
        report = stream_clips(
            serve(fake), ["pcm16"], sent, rate=RATE, spool=spool, on_result=second.on_result
        )
        assert spool.entries == {} and spool.stats().recovered >= 1
    both = first.summaries() + second.summaries()
    assert sorted(both) == ["clip-0", "clip-1", "clip-2", "clip-3"]  # each exactly once
    totals = report.totals["pcm16"]
    assert totals.skipped_clips == len(first.summaries())
    assert totals.resumed_clips >= 1
    first_sent = fake.calls[0].arrivals[0][1].clip_id
    assert first_sent == "clip-2"  # the spool's clips go before new ones
    assert not any(  # the window reported before the failure is not reported again
        r.clip_id == "clip-2" and not r.clip_summary and r.window_end == 0.0
        for _, r, _ in second.results
    )


class LiveSource:
    """Live clips recorded faster than real time by a thread, like MicSource's clips."""

    def __init__(self, n: int, seconds: float = 0.5, start_id: int = 0) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.pcm = grid16(seconds, 7)
        self.n, self.start_id = n, start_id
        threading.Thread(target=self._record, daemon=True).start()

    def _record(self) -> None:
        for k in range(self.n):
            clip = LiveClip(f"live-{self.start_id + k}", RATE, 1, len(self.pcm))
            self.queue.put(clip)
            for piece in np.array_split(self.pcm, 4):
                time.sleep(0.02)
                clip.append(piece)
        self.queue.put(None)

    def __iter__(self):
        while (clip := self.queue.get()) is not None:
            yield clip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_live_clips_recorded_offline_wait_on_disk_not_in_memory(tmp_path):
    port = free_port()
    got = Collector()
    spool = open_spool(tmp_path / "s")
    streamer = EdgeStreamer(
        f"127.0.0.1:{port}",
        ["pcm16"],
        LiveSource(8),
        rate=RATE,
        spool=spool,
        max_retries=None,
        on_result=got.on_result,
    )
    streamer.start()
    deadline = time.monotonic() + 30
    while spool.stats().added < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool.stats().added == 8  # all recorded while the server was down, none dropped
    path = streamer.paths[0]
    with path.cond:  # waiting clips are spool references, not recordings in memory
        assert not any(isinstance(c, LiveClip) for c in path.incoming)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pbg.add_SceneClassifierServicer_to_server(FakeScenes(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        assert streamer.join(timeout=60)
    finally:
        server.stop(0)
    assert streamer.first_error() is None
    assert sorted(got.summaries()) == sorted(f"live-{k}" for k in range(8))
    assert spool.entries == {} and spool.stats().completed == 8
    spool.close()


def test_a_full_spool_evicts_the_oldest_offline_clips_and_counts_them(tmp_path):
    port = free_port()
    got = Collector()
    entry_bytes = len(encode_audio(grid16(0.5, 7), RATE)[0]) + 300
    spool = open_spool(tmp_path / "s", max_bytes=3 * entry_bytes, on_warning=lambda m: None)
    streamer = EdgeStreamer(
        f"127.0.0.1:{port}",
        ["pcm16"],
        LiveSource(10),
        rate=RATE,
        spool=spool,
        max_retries=None,
        max_in_flight=1,
        on_result=got.on_result,
    )
    streamer.start()
    deadline = time.monotonic() + 30
    while spool.stats().added < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pbg.add_SceneClassifierServicer_to_server(FakeScenes(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        assert streamer.join(timeout=60)
    finally:
        server.stop(0)
    stats = spool.stats()
    totals = streamer.totals["pcm16"]
    assert stats.evicted_clips == totals.evicted_clips >= 5
    summarised = got.summaries()
    assert len(summarised) == len(set(summarised))
    # the newest clips survive; an evicted clip is sent only if it was already in memory
    assert {f"live-{k}" for k in range(7, 10)} <= set(summarised)
    assert len(summarised) >= 10 - stats.evicted_clips
    spool.close()
