"""What one request may cost the server, and the memory every stream reserves before it starts.

A client controls the cost of its requests through settings that are each valid alone: a long
window with a tiny hop, a high sample rate, a packet of compressed silence, a clip that never
ends, a file that decodes to an hour of audio. ``Budgets`` bounds each of those per request, and
``MemoryPool`` bounds them together: a stream reserves, when its config arrives, the most audio
memory its settings can make it hold (``stream_need``), and a stream that finds the pool full is
refused at once with RESOURCE_EXHAUSTED. Once admitted, a stream never waits on another
stream's memory, so no client can make another fail or stall by holding memory.

Counting is in bytes of float32 audio (4 bytes a sample, mono after the down-mix), which is
what the decoded audio occupies; compressed bytes held while a resent clip is compared with the
remembered one count against the same allowance.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass

import grpc

from server.errors import StreamError
from server.safe_log import shown

MB = 1 << 20
SAMPLE_BYTES = 4  # float32
STREAM_OVERHEAD = 1 * MB  # decoders, result queue and bookkeeping of one open stream
# A ClassifyClip decoding process (server/decode_sandbox.py) at rest: Python with PyAV and
# numpy; 62 MB on the development machine (its peak RSS after `import server.bounded_decode`).
DECODE_WORKER_MB = 64
PENDING_SECONDS = 20.0  # windows a stream may have waiting for the models: at least this much
CODEC_PACKET_SECONDS = 2.0  # audio one codec packet may add to a clip's buffer at once
# What a window costs the models beyond its audio, in seconds of audio: a forward pass has a
# fixed part (on 2 CPU cores a 1 s window takes about 2/3 of a 2 s one), so many short
# windows cost more than their seconds say.
WINDOW_COST_SECONDS = 1.0
# A resent clip is held as bytes while it is compared with the remembered one, in the slot of
# the clip buffer: at least this much, so a 10 s clip of 48 kHz stereo PCM can be answered
# from memory whatever the window.
REPLAY_BYTES = 2 * MB


@dataclass(frozen=True)
class Budgets:
    """Every per-request and per-stream bound of the server (flags in ``server.cli``)."""

    max_clip_seconds: float = 600.0  # a clip that never ends must not grow without bound
    max_open_clips: int = 4  # per stream
    max_message_bytes: int = 16 * MB  # larger messages end their stream or call
    remembered_clips: int = 10000  # finished clips whose results answer a resend
    cache_bytes: int = 64 * MB  # ... and the bytes they may occupy together
    max_windows_per_clip: int = 1000  # windows one clip (stream or ClassifyClip) may make
    max_overlap: float = 10.0  # window / hop: how often each second of audio is classified
    stream_bytes: int = 64 * MB  # the most audio memory one stream's settings may need
    audio_bytes: int = 2048 * MB  # all streams' reserved audio memory together
    classify_seconds: float = 120.0  # the longest audio one ClassifyClip call may decode to
    classify_rate: float = 20.0  # s of window audio a stream may have classified per s
    classify_burst: float = 120.0  # ... and at once, before that rate applies
    classify_calls: int = 2  # ClassifyClip calls decoding and classifying at once
    classify_queue_bytes: int = 64 * MB  # files of ClassifyClip calls waiting for their turn
    grid_cpu_share: float = 0.25  # the most of one core the detector's grid tests take; 0: none
    max_id_chars: int = 256  # device id, clip id, label
    max_spec_chars: int = 200  # a codec spec as sent
    max_hops: int = 4  # stages of a codec chain
    min_clip_seconds: float = 0.0  # shortest audio the models take; measured at start-up

    def check_text(self, what: str, value: str) -> None:
        """INVALID_ARGUMENT for an id or label longer than ``max_id_chars``."""
        if len(value) > self.max_id_chars:
            raise StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{what} {shown(value)} is longer than {self.max_id_chars} characters",
            )

    def check_overlap(self, window: float, hop: float) -> None:
        if window / hop > self.max_overlap * (1 + 1e-9):
            raise StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"hop of {hop:g} s with a {window:g} s window classifies each second "
                f"{window / hop:.0f} times; this server allows at most {self.max_overlap:g} "
                f"(hop at least {window / self.max_overlap:g} s; --max-overlap)",
            )

    def check_windows(self, clip: str, windows: int) -> None:
        if windows > self.max_windows_per_clip:
            raise StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"clip {shown(clip)} makes more than {self.max_windows_per_clip} windows "
                "(--max-windows-per-clip); cut it into shorter clips or use a longer hop",
            )


def clip_bytes(window_seconds: float, rate: int) -> int:
    """A clip's buffer at most: one window and one codec packet, twice while it is joined
    (or a resent clip's bytes, REPLAY_BYTES)."""
    audio = 2 * math.ceil((window_seconds + CODEC_PACKET_SECONDS) * rate) * SAMPLE_BYTES
    return max(audio, REPLAY_BYTES)


def pending_bytes(window_seconds: float, model_rate: int) -> int:
    """Windows waiting for the models: two windows, or PENDING_SECONDS, at the model's rate."""
    seconds = max(2 * window_seconds, PENDING_SECONDS)
    return math.ceil(seconds * model_rate) * SAMPLE_BYTES


def stream_need(window_seconds: float, rate: int, model_rate: int) -> int:
    """What a stream with these settings reserves: overhead, one open clip, waiting windows."""
    return (
        STREAM_OVERHEAD
        + clip_bytes(window_seconds, rate)
        + pending_bytes(window_seconds, model_rate)
    )


PRE_CONFIG_SLOTS = 64  # streams waiting for their config at once; the oldest gives way


class MemoryPool:
    """The audio memory of all streams together, shared fairly between devices.

    Each stream's reservation is filed under its device (the authenticated identity, else the
    device id it sends). A stream not yet configured holds one of ``PRE_CONFIG_SLOTS`` slots
    of ``STREAM_OVERHEAD`` outside the pool; when they are all taken, the one waiting longest
    for its config is ended, so idle streams cannot lock devices out. When a stream needs
    memory the pool does not have, the pool frees it by max-min fairness: with ``k`` devices
    holding memory, a device's share is ``total / k``; if the newcomer's device stays within
    its share, streams of devices holding more than theirs are ended (RESOURCE_EXHAUSTED, the
    largest first) until it fits. So a client can take all the free memory but cannot keep it
    from devices that need their share. Only the event loop touches the pool.
    """

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self._holders: dict[object, set[StreamAccount]] = {}
        self.waiting_config: deque[StreamAccount] = deque()

    def take(self, n: int) -> bool:
        if self.used + n > self.total:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)

    def describe(self) -> str:
        return f"{self.used / MB:.0f} of {self.total / MB:.0f} MB (--audio-memory-mb)"

    def file(self, account: StreamAccount, holder: object) -> None:
        if account.holder is not None:
            self.unfile(account)
        account.holder = holder
        self._holders.setdefault(holder, set()).add(account)

    def unfile(self, account: StreamAccount) -> None:
        accounts = self._holders.get(account.holder)
        if accounts is not None:
            accounts.discard(account)
            if not accounts:
                del self._holders[account.holder]
        account.holder = None

    def held(self, holder: object) -> int:
        return sum(a.reserved + a.borrowed for a in self._holders.get(holder, ()))

    def make_room(self, holder: object, n: int) -> bool:
        """Take ``n`` bytes for ``holder``, ending streams of devices over their share if the
        pool is full and ``holder`` stays within its own."""
        if self.take(n):
            return True
        devices = set(self._holders) | {holder}
        share = self.total / len(devices)
        if self.held(holder) + n > share:
            return False
        over = sorted(
            (h for h in self._holders if h != holder and self.held(h) > share),
            key=self.held,
            reverse=True,
        )
        for victim in over:
            for account in sorted(self._holders.get(victim, ()), key=lambda a: -a.size):
                if self.used + n <= self.total or self.held(victim) <= share:
                    break
                account.preempt(
                    StreamError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"server audio memory is needed by other devices, and this device "
                        f"holds more than its share ({self.held(victim) / MB:.0f} MB; "
                        f"{share / MB:.0f} MB each for {len(devices)} devices, "
                        "--audio-memory-mb); retry later",
                    )
                )
            if self.used + n <= self.total:
                break
        return self.take(n)


class StreamAccount:
    """One stream's share of the pool.

    ``reserved`` is taken when its config arrives (overhead, one clip's buffer and its waiting
    windows); further open clips ``borrow`` their buffer from the
    pool or are refused. Windows waiting for the models draw on the reserved ``pending``
    allowance: with no ``window_room`` left the stream waits for its own earlier windows to be
    answered (``wait_answered``) before it decodes more, so a stream that sends faster than
    the models answer it slows itself (HTTP/2 flow control then slows its sender) and never
    takes memory another stream needs. ``on_preempt`` ends the stream when the pool takes its
    memory back for devices below their share (``MemoryPool.make_room``).
    """

    def __init__(self, pool: MemoryPool, cap: int, on_preempt=None):
        self.pool, self.cap = pool, cap
        self.on_preempt = on_preempt
        self.holder: object = None
        self.reserved = 0
        self.borrowed = 0
        self.pending_allowance = 0
        self.pending = 0
        self.clip_allowance = 0
        self._answered = asyncio.Event()
        self._closed = False

    @property
    def size(self) -> int:
        return self.reserved + self.borrowed

    def _full(self, what: str) -> StreamError:
        return StreamError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"server audio memory is fully reserved by open streams ({self.pool.describe()}) "
            f"and this device already holds its share; {what}: retry later or use another "
            "replica",
        )

    def open(self) -> None:
        """Take a slot among the streams waiting for their config (the oldest gives way)."""
        waiting = self.pool.waiting_config
        if len(waiting) >= PRE_CONFIG_SLOTS:
            waiting.popleft().preempt(
                StreamError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"no StreamConfig arrived while {PRE_CONFIG_SLOTS} newer streams opened; "
                    "send the config first",
                )
            )
        waiting.append(self)

    def _configured(self) -> None:
        with contextlib.suppress(ValueError):
            self.pool.waiting_config.remove(self)

    def configure(
        self, window_seconds: float, rate: int, model_rate: int, device: object = None
    ) -> None:
        """Reserve what the stream's settings need for ``device``; refuse settings over the
        per-stream cap."""
        need = stream_need(window_seconds, rate, model_rate)
        if need > self.cap:
            raise StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a {window_seconds:g} s window at {rate} Hz needs {need / MB:.0f} MB of audio "
                f"memory; this server allows a stream {self.cap / MB:.0f} MB "
                "(--stream-memory-mb): use a shorter window or a lower sample rate",
            )
        self._configured()
        holder = ("device", device)
        self.pool.file(self, holder)
        if not self.pool.make_room(holder, need):
            raise self._full(f"this stream needs {need / MB:.0f} MB")
        self.reserved = need
        self.clip_allowance = clip_bytes(window_seconds, rate)
        self.pending_allowance = pending_bytes(window_seconds, model_rate)

    def borrow_clip(self, clip_id: str) -> int:
        """A second (third...) open clip's buffer, from what no stream has reserved."""
        n = self.clip_allowance
        if self.reserved + self.borrowed + n > self.cap or not self.pool.take(n):
            raise StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"no audio memory for clip {shown(clip_id)} while this stream's other clips "
                f"are open ({self.pool.describe()}; --stream-memory-mb); finish a clip first",
            )
        self.borrowed += n
        return n

    def return_clip(self, n: int) -> None:
        n = min(n, self.borrowed)
        self.borrowed -= n
        self.pool.give(n)

    def window_room(self, window_bytes: int) -> int:
        """How many more windows of ``window_bytes`` fit among the waiting ones now."""
        if not self.pending:
            return max(1, self.pending_allowance // max(1, window_bytes))
        return max(0, (self.pending_allowance - self.pending) // max(1, window_bytes))

    async def wait_answered(self) -> None:
        """Until one of this stream's waiting windows is answered (or the stream closes)."""
        if self._closed:
            return
        self._answered.clear()
        await self._answered.wait()

    def charge(self, n: int) -> None:
        self.pending += n

    def release(self, n: int) -> None:
        self.pending = max(0, self.pending - n)
        self._answered.set()

    def preempt(self, error: StreamError) -> None:
        """The pool takes this stream's memory back: give it up now and end the stream."""
        self.close()
        if self.on_preempt is not None:
            self.on_preempt(error)

    def close(self) -> None:
        """Give everything back (the stream ended however it ended)."""
        if self._closed:
            return
        self._closed = True
        self._configured()
        self.pool.give(self.reserved + self.borrowed)
        self.pool.unfile(self)
        self.reserved = self.borrowed = 0
        self._answered.set()


class ClassifyRate:
    """Seconds of audio each stream (or ClassifyClip caller) may have classified per second.

    A token bucket per stream holding ``burst`` seconds of window audio (a device catching
    up after a reconnect resends a few clips at once) and refilled at ``rate`` a second. A
    stream over it waits for its own windows: it is not refused, and nothing else waits.
    Fair order in the batcher serves a stream sending at real time first whatever the
    others queue; this bounds what a flood takes of the cores the models share with decoding
    and the event loop, which fair order cannot (a real-time stream with 10 s windows
    classifies 1 s of audio a second; with ``--max-overlap`` 10, 10 s). ``rate`` 0: no bound.
    """

    MAX_BUCKETS = 10000

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[object, list[float]] = {}  # device -> [seconds left, updated]

    def _bucket(self, device: object) -> list[float]:
        now = self.clock()
        bucket = self._buckets.get(device)
        if bucket is None:
            if len(self._buckets) >= self.MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[device] = [self.burst, now]
        bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        return bucket

    def _forget_full(self, now: float) -> None:
        for device, (left, updated) in list(self._buckets.items()):
            if left + (now - updated) * self.rate >= self.burst:
                del self._buckets[device]

    async def take(self, device: object, seconds: float, windows: int = 1) -> bool:
        """Wait until ``device`` (a stream or a caller) may have ``windows`` windows holding
        ``seconds`` of audio classified (each also counts ``WINDOW_COST_SECONDS``).

        True when it is past its burst (it had to wait, or is now in debt): a flood, whose
        windows the batcher serves after everyone else's."""
        if self.rate <= 0:
            return False
        seconds += windows * WINDOW_COST_SECONDS
        waited = False
        while True:
            bucket = self._bucket(device)
            if bucket[0] > 0:  # a window larger than what is left still goes, into debt
                bucket[0] -= seconds
                return waited or bucket[0] < 0
            waited = True
            await asyncio.sleep(-bucket[0] / self.rate + 0.001)


def memory_budget(budgets: Budgets, decode_workers: int, model_rate: int) -> dict[str, float]:
    """What the budgets let the server's memory grow by over its idle footprint, in MB, part
    by part. gRPC's own transport buffers (each stream's HTTP/2 window, the message of each
    call being received) come on top, bounded by --max-streams and --max-message-mb."""
    message = budgets.max_message_bytes / MB
    classify_audio = budgets.classify_seconds * model_rate * SAMPLE_BYTES / MB
    return {
        "audio": budgets.audio_bytes / MB,  # every configured stream's reservation
        "before config": PRE_CONFIG_SLOTS * STREAM_OVERHEAD / MB,
        "cache": budgets.cache_bytes / MB,
        # the request's bytes (gRPC holds them until the call ends) and the decoded audio; the
        # copy of the file FFmpeg reads from lives in the call's worker, counted below
        "classify": budgets.classify_calls * (message + classify_audio),
        "classify queue": budgets.classify_queue_bytes / MB,
        # each call's worker process: at rest, then holding the file, its audio and the reply
        "decode workers": budgets.classify_calls
        * (DECODE_WORKER_MB + message + 2 * classify_audio),
        # one message framed at a time on the event loop (its bytes twice), and each decode
        # worker's largest codec packet (stereo float32)
        "decode": 2 * message + decode_workers * 131072 * 2 * SAMPLE_BYTES / MB,
    }
