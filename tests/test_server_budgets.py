"""The pieces that keep one client from hurting another, each on real inputs.

The batcher with the shipped ensemble (a failing item fails alone; a flood waits behind
itself), the fair queue's order, the incremental decoder against the engine's decoder on real
codec streams, the content-bound memory of finished clips, the memory pool and the log and
message bounds. The gRPC-level cases are in test_adversarial.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from asc.codecs.alignment import codec_delay
from asc.codecs.errors import DecodeError
from asc.codecs.grid_tests import GridCall
from asc.codecs.stream import PACKET, StreamDecoder, StreamEncoder, frame, pack
from asc.signals import full_band_clip
from proto import scene_classifier_pb2 as pb
from server.batcher import DynamicBatcher
from server.bounded_decode import IncrementalDecoder
from server.budgets import MB, ClassifyRate, MemoryPool, StreamAccount, stream_need
from server.clip_cache import MARK_BYTES, ClipMemory, ContentHasher, ReplayCheck
from server.errors import StreamError
from server.fairness import Entry, FairQueue
from server.inference import NonFiniteOutput, SceneRunner
from server.safe_log import MAX_STATUS_BYTES, EscapingFilter, LogLimiter, shown, status_message
from server.session import GRID_EVERY_MOST_SECONDS, GRID_EVERY_SECONDS, GridBudget

RATE = 44100
ENSEMBLE = Path(__file__).resolve().parent.parent / "models" / "ensemble.safetensors"


@pytest.fixture(scope="module")
def runner() -> SceneRunner:
    return SceneRunner(ENSEMBLE, torch.device("cpu"))


def wave(seconds: float, seed: int) -> np.ndarray:
    return full_band_clip(RATE, seconds, 1, seed=seed)[:, 0].copy()


# --- the batcher ---------------------------------------------------------------------------


def test_a_failing_item_fails_alone_and_its_batch_mates_get_their_results(runner):
    good = [wave(1.0, k) for k in range(7)]
    bad = good[0].copy()
    bad[100] = np.nan  # passes no door here: the batcher itself must contain it
    alone = runner(good)  # the same windows, classified in a clean pass

    async def main():
        pool = ThreadPoolExecutor(1)
        batcher = DynamicBatcher("ensemble", runner, pool, max_batch=8, max_delay_s=0.2)
        batcher.start()
        futures = [batcher.submit_nowait(w, owner=k) for k, w in enumerate([*good[:3], bad])]
        futures += [batcher.submit_nowait(w, owner=9) for w in good[3:]]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        await batcher.close()
        pool.shutdown()
        return outcomes, batcher.batches

    outcomes, passes = asyncio.run(main())
    assert isinstance(outcomes[3], NonFiniteOutput)
    results = outcomes[:3] + outcomes[4:]
    for got, expected in zip(results, alone, strict=True):
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-4, atol=1e-6)
    assert passes >= 3  # the pass of eight was split until the culprit stood alone


class TwoAtOnce:
    """A model that can only answer while another pass runs beside it (a barrier of two), and
    counts how many passes ran at once."""

    passes = 2

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2, timeout=10)
        self.lock = threading.Lock()
        self.running = self.most = 0

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.barrier.wait()
            return [2 * i for i in items]
        finally:
            with self.lock:
                self.running -= 1


def test_the_batcher_runs_as_many_passes_at_once_as_the_runner_takes():
    model = TwoAtOnce()

    async def main():
        pool = ThreadPoolExecutor(2)
        batcher = DynamicBatcher("two", model, pool, max_batch=1, max_delay_s=0.0)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit_nowait(i, owner=i) for i in range(6)))
        await batcher.close()
        pool.shutdown()
        return results

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10]  # one pass at a time breaks the barrier
    assert model.most == 2


def test_when_every_stream_waits_the_free_passes_share_what_waits():
    """Eight devices, each waiting on one window, with two passes free: two passes of four at
    once (both must be running to pass the barrier), not one of eight beside an idle one."""
    model = TwoAtOnce()
    sizes: list[int] = []

    def run(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return model(items)

    run.passes = 2  # type: ignore[attr-defined]

    async def main():
        pool = ThreadPoolExecutor(2)
        batcher = DynamicBatcher("two", run, pool, max_batch=8, max_delay_s=5.0)
        for k in range(8):
            batcher.open(k)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit_nowait(k, owner=k) for k in range(8)))
        await batcher.close()
        pool.shutdown()
        return results

    assert asyncio.run(main()) == [2 * k for k in range(8)]
    assert sorted(sizes) == [4, 4] and model.most == 2


def test_the_batcher_says_when_no_window_waits_or_runs():
    """``idle`` (read by the grid tests' thread to pace them): true before and after, false
    while an item waits or its pass runs."""
    gate = threading.Event()

    def slow(items: list[int]) -> list[int]:
        gate.wait(5)
        return items

    async def main() -> list[bool]:
        pool = ThreadPoolExecutor(1)
        batcher = DynamicBatcher("slow", slow, pool, max_batch=1, max_delay_s=0.0)
        batcher.start()
        seen = [batcher.idle]
        item = batcher.submit_nowait(1, owner="a")
        seen.append(batcher.idle)  # queued
        await asyncio.sleep(0.05)
        seen.append(batcher.idle)  # its pass runs, held at the gate
        gate.set()
        await item
        await asyncio.sleep(0)
        seen.append(batcher.idle)
        await batcher.close()
        pool.shutdown()
        return seen

    assert asyncio.run(main()) == [True, False, False, True]


def test_a_window_arriving_behind_a_flood_runs_in_the_next_pass(runner):
    """64 windows of one stream are queued, then one of another: it is not 65th in line."""
    flood = [wave(1.0, 100 + k) for k in range(64)]
    order: list[str] = []

    async def main():
        pool = ThreadPoolExecutor(1)
        batcher = DynamicBatcher("ensemble", runner, pool, max_batch=64, max_delay_s=0.0)
        batcher.start()
        futures = [batcher.submit_nowait(w, owner="flood") for w in flood]
        futures.append(batcher.submit_nowait(wave(1.0, 7), owner="good"))
        for k, f in enumerate(futures):
            f.add_done_callback(lambda _f, k=k: order.append("good" if k == 64 else "flood"))
        await asyncio.gather(*futures)
        await batcher.close()
        pool.shutdown()

    asyncio.run(main())
    assert runner.max_pass == 8
    assert order.index("good") < 16  # in the first or second pass of eight, not the ninth


def test_a_pass_waits_for_company_only_while_an_open_owner_has_nothing_queued(runner):
    """A lone open stream with a window queued runs at once; while a second stream is open and
    idle, the window waits for the batch delay (here long enough to tell)."""

    async def delay(open_owners: list[str]) -> float:
        pool = ThreadPoolExecutor(1)
        batcher = DynamicBatcher("ensemble", runner, pool, max_batch=8, max_delay_s=2.0)
        batcher.start()
        for owner in open_owners:
            batcher.open(owner)
        await batcher.submit_nowait(wave(1.0, 200), owner="only")  # warm the model's pass
        queued = time.perf_counter()
        await batcher.submit_nowait(wave(1.0, 201), owner="only")
        waited = time.perf_counter() - queued
        await batcher.close()
        pool.shutdown()
        return waited

    assert asyncio.run(delay(["only"])) < 1.0  # nobody else could join: it ran at once
    assert asyncio.run(delay(["only", "idle"])) >= 1.9  # the idle stream might have


def test_fair_queue_serves_owners_by_their_share():
    queue = FairQueue()
    loop = asyncio.new_event_loop()
    try:
        for k in range(20):
            queue.push(Entry(f"a{k}", loop.create_future(), "a", 100.0, 0.0))
        for k in range(3):
            queue.push(Entry(f"b{k}", loop.create_future(), "b", 100.0, 0.0))
        queue.push(Entry("c0", loop.create_future(), "c", 1000.0, 0.0))
        taken = []
        while len(queue):
            taken += [e.item for e in queue.take(lambda first: 4, shape=lambda item: 1)]
    finally:
        loop.close()
    assert taken[:6] == ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert taken.index("b2") < 8  # b's three come before most of a's twenty
    assert [t for t in taken if t.startswith("a")] == [f"a{k}" for k in range(20)]  # FIFO


def test_fair_queue_fills_a_pass_with_one_shape_and_drops_cancelled_items():
    queue = FairQueue()
    loop = asyncio.new_event_loop()
    try:
        cancelled = loop.create_future()
        cancelled.cancel()
        queue.push(Entry(np.zeros(10), cancelled, "x", 10.0, 0.0))
        for owner, size in [("a", 10), ("b", 20), ("c", 10), ("d", 20)]:
            queue.push(Entry(np.zeros(size), loop.create_future(), owner, float(size), 0.0))
        first = queue.take(lambda first: 8, shape=len)
        second = queue.take(lambda first: 8, shape=len)
    finally:
        loop.close()
    assert [e.owner for e in first] == ["a", "c"] and [e.owner for e in second] == ["b", "d"]
    assert len(queue) == 0


# --- decoding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["pcm16", "flac", "opus:32k", "mp3:64k", "aac:32k", "vorbis:96k", "sbc:64k", "aptx"]
)
def test_incremental_decoding_equals_the_engines_decoder(spec):
    pcm = full_band_clip(RATE, 2.0, 1, seed=3)
    encoder = StreamEncoder(spec, RATE, 1)
    data = b"".join(encoder.encode(pcm[i : i + 4410]) for i in range(0, len(pcm), 4410))
    data += encoder.finish()
    delay = codec_delay(spec, RATE, 1)
    reference = StreamDecoder(spec, RATE, 1, delay)
    expected = np.concatenate([reference.feed(data), reference.finish()])
    decoder = IncrementalDecoder(spec, RATE, 1, delay)
    parts = []
    for i in range(0, len(data), 777):  # bytes cut anywhere
        decoder.add(data[i : i + 777])
        while (audio := decoder.next_audio()) is not None:
            parts.append(audio)
    parts.append(decoder.finish())
    np.testing.assert_array_equal(np.concatenate(parts), expected)


@pytest.mark.parametrize(
    ("spec", "packet_samples", "broken_packet"),
    [("sbc:64k", 128, None), ("pcm16", 256, b"\x00" * 511)],  # pcm16: half a sample short
)
def test_a_broken_packet_in_a_run_keeps_the_audio_before_it(spec, packet_samples, broken_packet):
    """Packets decode in runs (SBC's 128 samples, a device's short PCM packets), cut by one
    rule; a corrupt one behind good ones ends the run, the good ones' audio comes out, and the
    error follows on the next call, not lost and not skipped."""
    pcm = full_band_clip(RATE, 0.5, 1, seed=4)
    if spec == "pcm16":  # the encoder's PCM packets are up to 8192 samples; a device may send less
        samples = (pcm * 32768).astype("<i2").tobytes()
        packets = [samples[k : k + 512] for k in range(0, len(samples), 512)]
    else:
        probe = IncrementalDecoder(spec, RATE, 1, 0)
        probe.add(StreamEncoder(spec, RATE, 1).encode(pcm))
        packets = [p for p in probe._packets if isinstance(p, bytes)]
    header = StreamEncoder(spec, RATE, 1).encode(np.zeros((0, 1), np.float32))
    broken = broken_packet or b"\x00" * len(packets[0])
    decoder = IncrementalDecoder(spec, RATE, 1, 0)
    decoder.add(header + frame(PACKET, pack([*packets[:10], broken, *packets[10:20]])))
    first = decoder.next_audio()
    assert first is not None and len(first) == 10 * packet_samples  # one run: ten good packets
    reference = StreamDecoder(spec, RATE, 1, 0)
    np.testing.assert_array_equal(first, reference.feed(header + frame(PACKET, pack(packets[:10]))))
    assert decoder.waiting
    with pytest.raises(DecodeError, match="undecodable packet"):
        decoder.next_audio()
    with pytest.raises(DecodeError, match="undecodable packet"):  # and stays refused
        decoder.next_audio()


# --- the memory of finished clips -----------------------------------------------------------


def results(n: int, clip_id: str = "c") -> list[pb.SceneResult]:
    return [pb.SceneResult(clip_id=clip_id, window_start=float(k)) for k in range(n)]


def fingerprint(data: bytes, pieces: int = 1):
    hasher = ContentHasher()
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        hasher.update(data[i : i + step])
    return hasher.fingerprint()


def test_the_memory_of_clips_is_bounded_in_bytes_and_forgets_the_oldest():
    memory = ClipMemory(max_bytes=20_000, max_clips=1000)
    for k in range(100):
        memory.put(("dev", k), fingerprint(bytes([k]) * 10), results(20, "x" * 200))
        assert memory.bytes <= 20_000
    assert memory.get(("dev", 0)) is None and memory.get(("dev", 99)) is not None
    memory.put(("dev", "huge"), fingerprint(b"h"), results(2000))  # alone over the budget
    assert memory.get(("dev", "huge")) is None and memory.bytes <= 20_000


def test_a_resend_is_recognised_only_by_its_very_bytes():
    data = bytes(np.random.default_rng(0).integers(0, 256, 3 * MARK_BYTES + 5000, np.uint8))
    memory = ClipMemory(max_bytes=1 << 20, max_clips=10)
    memory.put(("k",), fingerprint(data, pieces=3), results(3))
    remembered = memory.get(("k",))
    same = ReplayCheck("c", remembered)
    assert all(same.add(data[i : i + 1000]) for i in range(0, len(data), 1000))
    assert same.same_clip()
    changed = bytearray(data)
    changed[MARK_BYTES + 10] ^= 1
    other = ReplayCheck("c", remembered)
    verdicts = [other.add(bytes(changed[i : i + 1000])) for i in range(0, len(changed), 1000)]
    assert False in verdicts and verdicts.index(False) < 2 * MARK_BYTES // 1000 + 1
    shorter = ReplayCheck("c", remembered)
    assert shorter.add(data[:-1]) and not shorter.same_clip()


# --- memory reservations --------------------------------------------------------------------


def test_streams_reserve_what_their_settings_need_and_give_it_back():
    need = stream_need(10.0, RATE, RATE)

    async def main():
        pool = MemoryPool(3 * need)
        ended: list[StreamError] = []

        def stream(device: str) -> StreamAccount:
            account = StreamAccount(pool, cap=64 * MB, on_preempt=ended.append)
            account.open()
            account.configure(10.0, RATE, RATE, device)
            return account

        hogs = [stream("hog") for _ in range(3)]  # one device takes the whole pool
        good = stream("good")  # another device's share is taken back from it
        assert len(ended) == 1 and ended[0].code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "more than its share" in ended[0].message and "--audio-memory-mb" in ended[0].message
        for _ in range(5):  # over its share, the hog gets no more; the good device keeps its
            with pytest.raises(StreamError) as refused:
                stream("hog")
            assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert good.reserved == need and pool.used <= pool.total
        assert len(ended) == 1
        idle = [StreamAccount(pool, cap=64 * MB, on_preempt=ended.append) for _ in range(65)]
        for account in idle:  # streams that never send their config
            account.open()
        assert len(ended) == 2 and "no StreamConfig" in ended[-1].message  # the oldest went
        for account in idle:
            account.close()
        alone = MemoryPool(need)
        first = StreamAccount(alone, cap=64 * MB)
        first.open()
        first.configure(10.0, RATE, RATE, "solo")
        second = StreamAccount(alone, cap=64 * MB)
        with pytest.raises(StreamError) as full:  # a device over its share takes nothing
            second.open()
            second.configure(10.0, RATE, RATE, "solo")
        assert full.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        too_big = StreamAccount(MemoryPool(1 << 40), cap=64 * MB)
        too_big.open()
        with pytest.raises(StreamError) as big:
            too_big.configure(60.0, 192000, RATE, "x")
        assert big.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "--stream-memory-mb" in big.value.message
        for account in [*hogs, good]:
            account.close()
        return pool.used

    assert asyncio.run(main()) == 0


def test_default_settings_reserve_under_ten_megabytes():
    assert stream_need(10.0, RATE, RATE) < 10 * MB  # 2 GB holds over 200 such streams


# --- what is echoed and logged ---------------------------------------------------------------


def test_echoed_values_are_escaped_and_cut():
    assert shown("kitchen-01") == "'kitchen-01'"
    assert shown("a\nb\x1b") == "'a\\nb\\x1b'"
    long = shown("\u2028" * 10_000)
    assert len(long) < 100 and "10000 characters" in long and "\u2028" not in long
    message = status_message("x" * 100_000)
    assert len(message.encode()) <= MAX_STATUS_BYTES
    assert len(StreamError(grpc.StatusCode.INTERNAL, "y" * 50_000).message) <= MAX_STATUS_BYTES


def test_repeated_log_events_are_limited_and_counted():
    now = [0.0]
    limiter = LogLimiter(burst=3, interval=60.0, clock=lambda: now[0])
    assert [limiter.allow("bad stream") for _ in range(10)] == [True] * 3 + [False] * 7
    assert limiter.allow("other kind")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("test.limiter")
    logger.addHandler(Keep())
    now[0] = 61.0
    assert limiter.allow("bad stream", logger)
    assert records == ["7 more bad stream event(s) in the last 61 s were not logged"]


def test_every_log_record_is_one_bounded_line():
    record = logging.LogRecord(
        "asc.server", logging.WARNING, "", 0, "device %s", ("a\nCRITICAL x\r" + "z" * 9000,), None
    )
    assert EscapingFilter().filter(record)
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message and len(message) < 2100


def test_a_device_over_its_classification_rate_waits_for_itself_alone():
    now = [0.0]
    rate = ClassifyRate(rate=20.0, burst=60.0, clock=lambda: now[0])

    async def main():
        # a window costs its seconds and WINDOW_COST_SECONDS (1 s) more
        await rate.take("flood", 49.0)  # the burst goes at once: 50 of 60,
        await rate.take("flood", 19.0)  # and one window more, into debt: -10
        waited = asyncio.ensure_future(rate.take("flood", 1.0))
        await asyncio.sleep(0.01)
        assert not waited.done()  # over its rate: this stream waits...
        await asyncio.wait_for(rate.take("good", 10.0), 1)  # ...and no other stream does
        now[0] += 0.4  # the bucket refills at 20 s a second: -2, still in debt
        await asyncio.sleep(0.05)
        assert not waited.done()
        now[0] += 0.3  # +4
        await asyncio.wait_for(waited, 1)

    asyncio.run(main())


def test_a_flood_waits_behind_other_streams_and_fills_few_places_of_a_pass():
    queue = FairQueue()
    loop = asyncio.new_event_loop()
    try:
        for k in range(30):  # a stream past its burst: its windows are marked flood
            queue.push(Entry(f"f{k}", loop.create_future(), "flood", 1.0, 0.0, flood=True))
        queue.push(Entry("g0", loop.create_future(), "good", 1.0, 0.0))
        queue.push(Entry("h0", loop.create_future(), "other", 1.0, 0.0))
        assert queue.light_waiting()
        first = [e.item for e in queue.take(lambda first: 8, shape=lambda item: 1, floods=2)]
        alone = [e.item for e in queue.take(lambda first: 8, shape=lambda item: 1, floods=None)]
    finally:
        loop.close()
    assert first[0] == "g0" and "h0" in first  # another stream's window leads the pass
    assert sorted(first) == ["f0", "f1", "g0", "h0"]  # and the flood fills two places at most
    assert len(alone) == 8  # with nobody else about, a flood fills whole passes


def test_a_pass_that_breaks_past_the_forward_pass_fails_its_items_and_not_the_batcher():
    """A runner that returns one output too few: its pass's callers get the error instead of
    waiting for ever, and the next pass runs."""
    calls: list[int] = []

    def short_by_one(items: list[int]) -> list[int]:
        calls.append(len(items))
        return [2 * i for i in items][: -1 if len(calls) == 1 else None]

    async def main():
        pool = ThreadPoolExecutor(1)
        batcher = DynamicBatcher("short", short_by_one, pool, max_batch=4, max_delay_s=0.5)
        batcher.start()
        first = [batcher.submit_nowait(i, owner=i) for i in range(3)]
        failed = await asyncio.wait_for(asyncio.gather(*first, return_exceptions=True), timeout=10)
        later = await asyncio.wait_for(batcher.submit_nowait(5, owner="later"), timeout=10)
        await batcher.close()
        pool.shutdown()
        return failed, later

    failed, later = asyncio.run(main())
    assert calls[0] == 3
    assert all("gave 2 outputs for 3 items" in str(f) for f in failed), failed
    assert later == 10


def test_the_grid_tests_run_once_per_ten_seconds_of_a_stream():
    budget = GridBudget(enabled=True)
    assert budget.claim()  # the first clip is tested
    assert not budget.claim()  # the next, before 10 s of audio, is not
    budget.audio += GRID_EVERY_SECONDS
    assert budget.claim() and not budget.claim()
    budget.retry()  # its test found the queue full: the next clip tries again
    assert budget.claim()
    assert not GridBudget(enabled=False).claim()  # stereo, or the detector off


def test_a_stream_whose_tests_repeat_their_call_is_tested_less_often():
    """Each repeated call doubles the audio between tests, up to GRID_EVERY_MOST_SECONDS; a
    call that differs brings them back to every GRID_EVERY_SECONDS, and a call of none counts
    as a call for this but never replaces the stream's last."""
    sbc, aac = GridCall("sbc", 0.9), GridCall("aac", 0.8)
    budget = GridBudget(enabled=True)

    def spacing(call: GridCall | None) -> float:
        """Settle a test with ``call``; the seconds of audio until the next clip is tested."""
        assert budget.claim()
        budget.settle(call)
        seconds = 0.0
        while not budget.claim():
            budget.audio += 1.0
            seconds += 1.0
        budget.audio = budget.every  # claimed only to measure: give it back
        return seconds

    assert spacing(sbc) == GRID_EVERY_SECONDS  # the first call: nothing to repeat yet
    assert [spacing(sbc) for _ in range(3)] == [20, 40, 80]
    assert budget.last == sbc
    assert spacing(aac) == GRID_EVERY_SECONDS and budget.last == aac  # the audio changed
    assert spacing(aac) == 20
    assert spacing(GridCall("aac", 0.3)) == GRID_EVERY_SECONDS  # now under 0.5: not the same
    for _ in range(10):
        spacing(aac)
    assert budget.every == GRID_EVERY_MOST_SECONDS
    assert spacing(None) == GRID_EVERY_SECONDS and budget.last == aac
    assert spacing(None) == 20 and budget.last == aac


def test_grid_tests_wait_in_a_bounded_queue_off_the_windows_path(monkeypatch):
    """At most GRID_QUEUE tests wait for the grid thread; past that a clip goes untested (and
    is counted so), and a finished test's call comes back through wait_for_call."""
    import asyncio
    from types import SimpleNamespace

    import numpy as np

    from asc.codecs import roundtrip
    from server import grid_runner
    from server.grid_runner import GRID_BURST_SECONDS, GridRunner, wait_for_call
    from server.metrics import ServerMetrics

    metrics = ServerMetrics()

    async def run() -> tuple[list, object, int]:
        runner = GridRunner(metrics.grid_tests, 0.25, queue=2)
        noise = np.random.default_rng(0).standard_normal(3 * 44100).astype(np.float32) * 0.1
        # an SBC copy: its grid stops the tests after the cheapest, so the two that run take a
        # fraction of a second of CPU each, not the seconds all three take on a lossless wave
        # (at a quarter of a core, most of the runner's wait_seconds in wall time)
        wave = roundtrip(noise, 44100, "sbc:bitpool=53")
        futures = [runner.submit(wave, 44100) for _ in range(3)]
        calls = [await wait_for_call(f, runner.wait_seconds) for f in futures]
        left = runner.waiting
        runner.close()
        off = GridRunner(metrics.grid_tests, 0.0)  # --grid-cpu-share 0: no tests, none counted
        assert off.submit(wave, 44100) is None
        off.close()
        return futures, calls, left

    futures, calls, left = asyncio.run(run())
    assert futures[2] is None and calls[2] is None  # the third found two waiting
    assert all(c is not None and c.family == "sbc" and c.probability >= 0.5 for c in calls[:2])
    assert left == 0

    def counted(outcome: str) -> float:
        value = metrics.registry.get_sample_value("asc_grid_tests_total", {"outcome": outcome})
        return value or 0.0

    assert (counted("run"), counted("skipped"), counted("failed")) == (2, 1, 0)
    # A summary waits as long as the dearest test of a window takes at the share (the burst
    # spent at full speed, the rest at the share), and never less than GRID_WAIT_SECONDS.
    for share in (0.1, 0.25, 1.0):
        runner = GridRunner(metrics.grid_tests, share)
        needed = (grid_runner.GRID_TEST_CPU_SECONDS - GRID_BURST_SECONDS) / share
        assert runner.wait_seconds == max(needed, grid_runner.GRID_WAIT_SECONDS)
        # a stream's summary waits only while its test is the one waiting or running: behind
        # a backlog, each test seconds of CPU, it would wait for all of them
        runner.waiting = 1
        assert runner.summary_wait_seconds() == runner.wait_seconds
        runner.waiting = 2
        assert runner.summary_wait_seconds() == 0.0
        # unless its stream asked to wait (StreamConfig.wait_for_grid_tests): its latency only
        assert runner.summary_wait_seconds(asked=True) == runner.wait_seconds
        runner.close()

    # A quarter of one core, sustained: each step of a test (an SBC coding, a batch of MDCT
    # offsets) is paid from a credit of CPU earned at 0.25 s per second, and a step that leaves
    # a debt is followed by the rest that repays it; an idle server's test runs from the credit.
    runner = GridRunner(metrics.grid_tests, 0.25)
    assert runner._credit == GRID_BURST_SECONDS
    steps, slept = 0, 0.0
    pace = runner._pace

    def counting_pace() -> None:
        nonlocal steps
        steps += 1
        pace()

    def timed_test() -> tuple[float, float]:
        """Wall and CPU seconds of one test on this thread, and the rests within it."""
        nonlocal slept
        slept = 0.0
        wall, cpu = time.monotonic(), time.thread_time()
        runner._test(np.random.default_rng(1).standard_normal(3 * 44100).astype(np.float32), 44100)
        return time.monotonic() - wall, time.thread_time() - cpu

    def sleep(seconds: float) -> None:
        nonlocal slept
        slept += seconds
        time.sleep(seconds)

    runner._pace = counting_pace  # type: ignore[method-assign]
    monkeypatch.setattr(grid_runner, "time", SimpleNamespace(
        sleep=sleep, monotonic=time.monotonic, thread_time=time.thread_time
    ))  # fmt: skip
    # credit enough, and no cap on it (a test may now cost more than GRID_BURST_SECONDS): no rest
    monkeypatch.setattr(grid_runner, "GRID_BURST_SECONDS", 1000.0)
    runner._credit = 1000.0
    timed_test()
    assert slept == 0.0
    runner._credit, steps = 0.0, 0  # none left: every step is repaid
    wall, cpu = timed_test()
    runner.close()
    assert steps > 20  # dozens of steps of a few milliseconds, not one of half a second
    assert slept > 0 and wall > 3 * cpu  # a quarter of a core: 4x the CPU but the last step

    # A step taken while the windows' path has no work (no window waits, no pass runs) took
    # no one's CPU: with no credit left, the test rests only where the windows are busy.
    noise = np.random.default_rng(1).standard_normal(3 * 44100).astype(np.float32)
    for busy in (False, True):
        paced = GridRunner(metrics.grid_tests, 0.25, busy=lambda busy=busy: busy)
        paced._credit, slept = 0.0, 0.0
        paced._test(noise, 44100)
        paced.close()
        assert (slept > 0) == busy, (busy, slept)


def test_the_grid_tests_run_numpys_blas_on_one_thread():
    """A second BLAS thread only spins beside the grid thread, outside the CPU its share
    counts; the models' own pools (torch's OpenMP) are left as they are."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from server.grid_runner import GridRunner
    from server.metrics import ServerMetrics

    def threads(api: str) -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == api}

    blas, openmp = threads("blas"), threads("openmp")
    try:
        threadpool_limits(2, user_api="blas")
        GridRunner(ServerMetrics().grid_tests, 0.0).close()  # no tests: left alone
        assert threads("blas") == {2}
        GridRunner(ServerMetrics().grid_tests, 0.25).close()
        assert threads("blas") == {1}
        assert threads("openmp") == openmp
    finally:
        threadpool_limits(max(blas), user_api="blas")


def test_the_grid_tests_share_of_a_core_is_a_flag_within_0_to_1():
    from server.flags import build_parser
    from server.startup import StartupError, build_budgets

    def budgets(*flags: str):
        return build_budgets(build_parser().parse_args(["serve", *flags]), 16 * 2**20)

    assert budgets().grid_cpu_share == 0.25
    assert budgets("--grid-cpu-share", "0").grid_cpu_share == 0.0  # the tests off
    with pytest.raises(StartupError, match=r"--grid-cpu-share must be within 0 to 1, got 1\.5"):
        budgets("--grid-cpu-share", "1.5")


def test_only_a_packet_of_pcm_is_decoded_on_the_event_loop():
    """PCM up to INLINE_PCM_BYTES is cheaper to read than the hop to a decode thread; a larger
    PCM message, and every codec FFmpeg decodes, stays off the loop."""
    from server.budgets import Budgets
    from server.session import INLINE_PCM_BYTES, ClipState, StreamSettings

    def clip(codec: str) -> ClipState:
        settings = StreamSettings("dev", codec, RATE, 1, 1.0, 1.0, False)
        return ClipState("c", settings, RATE, Budgets(), 0)

    assert clip("pcm16").decode_here([b"\0" * 44100, b"\0" * 44100])
    assert not clip("pcm16").decode_here([b"\0" * (INLINE_PCM_BYTES + 2)])
    assert not clip("opus:32k").decode_here([b"\0" * 100])
    assert clip("sbc:64k>pcm16").decode_here([b"\0" * 100])  # a chain's last hop is PCM
