"""One stream's state: its validated config and the clips being decoded and windowed.

Everything here is synchronous and free of gRPC's event loop so that decoding can run on worker
threads; problems surface as ``StreamError`` carrying the status code the stream ends with.
A clip decodes lazily: ``ClipState.add`` only frames a packet's bytes, and ``advance`` decodes
codec packets until it has cut as many windows as the stream has room for, so what a packet
decodes to never outgrows the stream's reserved memory, however much audio its bytes hold.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import astuple, dataclass, field

import grpc
import numpy as np

from asc.audio import resample
from asc.codecs.backends import read_by_numpy
from asc.codecs.errors import CodecError, CodecUnavailable, DecodeError
from asc.codecs.grid_tests import LOSSY_AT, GridCall
from asc.codecs.registry import resolve
from asc.codecs.spec import parse_spec
from proto import scene_classifier_pb2 as pb
from server.bounded_decode import IncrementalDecoder, check_samples
from server.budgets import Budgets
from server.clip_cache import ContentHasher
from server.errors import StreamError
from server.safe_log import shown
from server.windows import Window, Windower

__all__ = ["Budgets", "ClipState", "Limits", "StreamError", "StreamSettings", "validate_config"]

DEFAULT_WINDOW_SECONDS = 10.0
MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS = 1.0, 60.0
MIN_RATE, MAX_RATE = 8000, 192000
# The most audio one codec packet decodes to (FLAC's largest block is 65535 samples; the
# engine's encoders make packets of at most a few thousand): more is a corrupt stream.
MAX_CODEC_PACKET_SAMPLES = 131072
INLINE_PCM_BYTES = 131072  # 1.5 s of 44.1 kHz mono pcm16, 0.7 s of 48 kHz stereo
GROUP_SAMPLES = 16384  # decoded audio appended to a clip at once, at most (unless one packet)
Limits = Budgets  # the name this used to have


@dataclass(frozen=True)
class StreamSettings:
    device_id: str
    codec: str  # canonical spec
    rate: int
    channels: int
    window_seconds: float
    hop_seconds: float
    detector: bool
    wait_for_grid_tests: bool = False  # each summary waits for the grid tests (the proto's)

    def clip_key(self, clip_id: str) -> tuple:
        """Everything that shapes a clip's results (every field), so a remembered answer fits
        the request."""
        return (*astuple(self), clip_id)


def window_and_hop(
    window_seconds: float, hop_seconds: float, budgets: Budgets | None = None
) -> tuple[float, float]:
    """Defaults filled in (0 means 10 s windows, hop = window) and checked."""
    bad = grpc.StatusCode.INVALID_ARGUMENT
    window = window_seconds or DEFAULT_WINDOW_SECONDS
    hop = hop_seconds or window
    if not (math.isfinite(window) and MIN_WINDOW_SECONDS <= window <= MAX_WINDOW_SECONDS):
        raise StreamError(
            bad, f"window of {window:g} s is outside {MIN_WINDOW_SECONDS}..{MAX_WINDOW_SECONDS} s"
        )
    if not (math.isfinite(hop) and 0 < hop <= window):
        raise StreamError(
            bad, f"hop of {hop:g} s must be above 0 and at most the window ({window:g} s)"
        )
    (budgets or Budgets()).check_overlap(window, hop)
    return float(window), float(hop)


def check_spec(text: str, budgets: Budgets) -> str:
    """A codec spec parsed and bounded (length, hops); its canonical spelling."""
    bad = grpc.StatusCode.INVALID_ARGUMENT
    if len(text) > budgets.max_spec_chars:
        raise StreamError(
            bad, f"codec spec {shown(text)} is longer than {budgets.max_spec_chars} characters"
        )
    try:
        spec = parse_spec(text)
    except CodecError as e:
        raise StreamError(bad, f"bad codec spec: {e}") from e
    if len(spec.stages) > budgets.max_hops:
        raise StreamError(
            bad,
            f"codec path of {len(spec.stages)} hops; this server decodes chains of at most "
            f"{budgets.max_hops}",
        )
    return str(spec)


def validate_config(config: pb.StreamConfig, budgets: Budgets | None = None) -> StreamSettings:
    """The stream's config, checked against the codec engine; INVALID_ARGUMENT names the fault."""
    budgets = budgets or Budgets()
    bad = grpc.StatusCode.INVALID_ARGUMENT
    budgets.check_text("device id", config.device_id)
    if not config.codec:
        raise StreamError(bad, "StreamConfig.codec is empty; give a codec spec such as opus:32k")
    if not MIN_RATE <= config.sample_rate <= MAX_RATE:
        raise StreamError(
            bad, f"sample rate {config.sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz"
        )
    if config.channels not in (1, 2):
        raise StreamError(bad, f"{config.channels} channels: only 1 or 2 are supported")
    spec = check_spec(config.codec, budgets)
    try:
        resolve(spec, config.sample_rate, config.channels)
    except CodecUnavailable as e:
        raise StreamError(bad, f"codec not available on this server: {e}") from e
    except CodecError as e:
        raise StreamError(bad, f"bad codec for this stream: {e}") from e
    window, hop = window_and_hop(config.window_seconds, config.hop_seconds, budgets)
    return StreamSettings(
        device_id=config.device_id or "unknown",
        codec=spec,
        rate=int(config.sample_rate),
        channels=int(config.channels),
        window_seconds=window,
        hop_seconds=hop,
        detector=bool(config.detector),
        wait_for_grid_tests=bool(config.wait_for_grid_tests),
    )


@dataclass
class ClipState:
    """A clip being received: its decoder, its windower and what has been classified so far."""

    clip_id: str
    settings: StreamSettings
    model_rate: int
    limits: Budgets
    delay: int  # samples its decoder drops (asc.codecs.codec_delay), measured off the event loop
    label: str = ""
    memory: int = 0  # bytes borrowed from the pool for this clip (0: the stream's own)
    decoder: IncrementalDecoder = field(init=False)
    windower: Windower = field(init=False)
    content: ContentHasher = field(default_factory=ContentHasher)
    pending: list = field(default_factory=list)  # per window, in order: futures of its result
    windows: int = 0  # cut so far
    ended: bool = False  # its end_of_clip arrived
    failed: StreamError | None = None  # a fault found while decoding: the stream ends with it
    window_cpu: float = 0.0  # thread CPU seconds spent mixing, cutting and resampling windows
    grid_test: bool = False  # run the grid tests on this clip (the stream's GridBudget)
    # The samples of the clip's first window, at the stream's rate, for the grid tests
    # (server/grid_runner.py), taken once; then the test's future, and its call when done.
    grid_samples: np.ndarray | None = None
    grid_future: asyncio.Future | None = None
    grid: GridCall | None = None
    grid_joined: bool = False  # a window took a call: the summary, averaged from them, has it
    _flushed: bool = False
    _complete: bool = False

    def __post_init__(self) -> None:
        s = self.settings
        self.decoder = IncrementalDecoder(s.codec, s.rate, s.channels, self.delay)
        self.windower = Windower(
            window=round(s.window_seconds * s.rate),
            hop=round(s.hop_seconds * s.rate),
            min_tail=round(min(1.0, s.hop_seconds) * s.rate),
        )

    @property
    def seconds(self) -> float:
        return self.windower.total / self.settings.rate

    @property
    def complete(self) -> bool:
        """Every window of the clip is cut (after its end arrived)."""
        return self._complete

    def _data_loss(self, e: DecodeError) -> StreamError:
        return StreamError(
            grpc.StatusCode.DATA_LOSS, f"clip {shown(self.clip_id)} ({self.settings.codec}): {e}"
        )

    def decode_here(self, payloads: list[bytes]) -> bool:
        """Whether the event loop decodes these itself: PCM, which numpy reads, up to
        ``INLINE_PCM_BYTES``. Hashing, framing and reading a 0.5 s message of it costs less
        than the hop to a decode thread and back, some 20 per 10 s clip (docs/performance.md,
        "Fewer hops per packet"); other codecs, and larger PCM messages, stay off the loop."""
        pcm = read_by_numpy(self.decoder.resolved)
        return pcm and sum(map(len, payloads)) <= INLINE_PCM_BYTES

    def add(self, payload: bytes, end: bool = False) -> None:
        """Take a packet's bytes: hashed for the clip memory and framed, not decoded."""
        self.content.update(payload)
        try:
            self.decoder.add(payload)
        except DecodeError as e:
            raise self._data_loss(e) from e
        self.ended = self.ended or end

    def _decoded(self) -> np.ndarray | None:
        """Codec packets decoded until the next window is complete (or GROUP_SAMPLES), as
        one array: checking and appending audio per codec packet (128 samples of SBC) would
        cost more than decoding it. None when no packet waits."""
        parts: list[np.ndarray] = []
        got = 0
        need = min(GROUP_SAMPLES, max(1, self.windower.missing))
        while got < need and (audio := self.decoder.next_audio()) is not None:
            if len(audio) > MAX_CODEC_PACKET_SAMPLES:
                raise StreamError(
                    grpc.StatusCode.DATA_LOSS,
                    f"clip {shown(self.clip_id)} ({self.settings.codec}): corrupt stream: one "
                    f"codec packet decodes to {len(audio)} samples",
                )
            parts.append(audio)
            got += len(audio)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _append(self, pcm: np.ndarray) -> None:
        started = time.thread_time()
        try:
            self._append_mono(pcm)
        finally:
            self.window_cpu += time.thread_time() - started

    def _append_mono(self, pcm: np.ndarray) -> None:
        if pcm.ndim == 2:
            mono = pcm[:, 0] if pcm.shape[1] == 1 else pcm.mean(axis=1, dtype=np.float32)
        else:
            mono = pcm
        if not self.decoder.integer_samples:  # integers cannot hold NaN or huge values
            check_samples(mono, self.clip_id)
        most = round(self.limits.max_clip_seconds * self.settings.rate)
        if self.windower.total + len(mono) > most:
            # Audio up to the bound is kept (its windows are answered); then the clip ends.
            self.windower.append(mono[: max(0, most - self.windower.total)])
            raise StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"clip {shown(self.clip_id)} exceeds {self.limits.max_clip_seconds:g} s without "
                "end_of_clip; cut long recordings into clips",
            )
        self.windower.append(mono)

    def _model_window(self, window: Window) -> Window:
        """The window at the model's rate (the stream may run at any rate the codec allows)."""
        started = time.thread_time()
        self.windows += 1
        self.limits.check_windows(self.clip_id, self.windows)
        if self.grid_test:  # at the rate it was coded at
            self.grid_test = False
            self.grid_samples = np.array(window.samples, np.float32)
        wave = resample(window.samples, self.settings.rate, self.model_rate)
        samples = np.ascontiguousarray(wave, np.float32)
        self.window_cpu += time.thread_time() - started
        return Window(window.index, window.start, samples, len(window.samples))

    def advance(
        self, room: int, payloads: list[bytes] | None = None, end: bool = False
    ) -> tuple[list[Window], bool]:
        """Take ``payloads`` (``add``), then decode until ``room`` windows are cut or nothing
        waits; on a worker thread, so a 16 MB message is hashed and framed off the event loop
        (a small PCM message on the loop itself, ``decode_here``).

        Returns the windows, at the model's rate, and whether more could be cut with room.
        The clip's last windows come once its end arrived and every packet is decoded. A fault
        is kept in ``failed`` (the stream then ends with it) after the windows cut before it,
        which are returned first: results accepted before a fault are still delivered.
        """
        out: list[Window] = []
        most = max(1, room)
        try:
            for k, payload in enumerate(payloads or ()):
                self.add(payload, end and k == len(payloads) - 1)
            while len(out) < most:
                window = self.windower.take()
                if window is not None:
                    out.append(self._model_window(window))
                    continue
                audio = self._decoded()
                if audio is not None:
                    self._append(audio)
                    continue
                if not self.ended or self._complete:
                    break
                if not self._flushed:
                    self._flushed = True
                    self._append(self.decoder.finish(strict=True))
                    continue
                self._complete = True
                self._check_length()
                out += [self._model_window(w) for w in self.windower.finish()]
        except DecodeError as e:
            self.failed = self._data_loss(e)
        except StreamError as e:
            self.failed = e
        if self.failed is not None:
            try:
                while len(out) < most and (window := self.windower.take()) is not None:
                    out.append(self._model_window(window))
            except StreamError:
                pass  # past the windows budget: what was cut so far is all there is
            return out, False
        more = self.windower.ready or self.decoder.waiting or (self.ended and not self._complete)
        return out, more

    def _check_length(self) -> None:
        """At the clip's end, before its only window is cut: too short for the models?"""
        if self.windows:
            return
        if not self.windower.total:
            raise StreamError(
                grpc.StatusCode.DATA_LOSS, f"clip {shown(self.clip_id)} ended without any audio"
            )
        check_duration(self.clip_id, self.seconds, self.limits.min_clip_seconds)


GRID_EVERY_SECONDS = 10.0
GRID_EVERY_MOST_SECONDS = 320.0


def same_call(a: GridCall | None, b: GridCall | None) -> bool:
    """Two calls that say the same thing: the same family on the same side of the call
    (``LOSSY_AT``), or none."""
    if a is None or b is None:
        return a is b
    return a.family == b.family and (a.probability >= LOSSY_AT) == (b.probability >= LOSSY_AT)


@dataclass
class GridBudget:
    """When a stream's clips get the grid tests: the first clip, then once per ``every``
    seconds of its audio. They cost more than the detector's network does on 10 s
    (``benchmarks.grid_tests``), so a stream of short clips would multiply it. Clips between
    tests take the stream's last call: they come through the same codec path. ``every``
    starts at ``GRID_EVERY_SECONDS`` and doubles, up to ``GRID_EVERY_MOST_SECONDS``, each time a
    test repeats the stream's last call, and drops back where one differs: a stream whose path
    has been named twice stops paying for the same answer (under load the tests' CPU comes out
    of the windows' latency), and one whose audio changes is looked at again soon. Only mono
    streams with the detector on are tested (mixing stereo to mono hides a joint-stereo grid)."""

    enabled: bool
    audio: float = GRID_EVERY_SECONDS  # seconds decoded since the last test: the first clip runs
    every: float = GRID_EVERY_SECONDS  # seconds of audio between tests, for now
    tested: int = 0  # tests that came back
    previous: GridCall | None = None  # the latest test's call, none included
    last: GridCall | None = None  # the latest call of this stream's tests (not none)
    pending: asyncio.Future | None = None  # its latest test, done or not

    def claim(self) -> bool:
        if not self.enabled or self.audio < self.every:
            return False
        self.audio = 0.0
        return True

    def retry(self) -> None:
        """The claimed test did not run (its queue was full): the next clip tries again."""
        self.audio = self.every

    def settle(self, call: GridCall | None) -> None:
        """A test came back: its call (none where neither test could run) sets when the next
        test is, and becomes the stream's if it is one."""
        repeated = self.tested > 0 and same_call(call, self.previous)
        longer = min(2 * self.every, GRID_EVERY_MOST_SECONDS)
        self.every = longer if repeated else GRID_EVERY_SECONDS
        self.tested += 1
        self.previous = call
        if call is not None:
            self.last = call


def check_duration(clip_id: str, seconds: float, shortest: float) -> None:
    """INVALID_ARGUMENT for a clip shorter than the models take: checked at the door, so such
    a clip never reaches a batch (where its forward pass would raise)."""
    if seconds < shortest:
        raise StreamError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"clip {shown(clip_id)} holds {seconds:.3f} s of audio; the shortest clip this "
            f"server classifies is {shortest:g} s",
        )
