"""One stream's state: its validated config and the clips being decoded and windowed.

Everything here is synchronous and free of gRPC's event loop so that decoding can run on worker
threads; problems surface as ``StreamError`` carrying the status code the stream ends with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import grpc
import numpy as np

from asc.audio import resample
from asc.codecs.errors import CodecError, CodecUnavailable, DecodeError
from asc.codecs.registry import resolve
from asc.codecs.spec import parse_spec
from asc.codecs.stream import StreamDecoder
from proto import scene_classifier_pb2 as pb
from server.windows import Window, Windower

DEFAULT_WINDOW_SECONDS = 10.0
MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS = 1.0, 60.0
MIN_RATE, MAX_RATE = 8000, 192000


class StreamError(Exception):
    """Ends one stream (or call) with ``code``; the message names the problem for the client."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Limits:
    max_clip_seconds: float = 600.0  # a clip that never ends must not grow without bound
    max_open_clips: int = 4  # per stream
    max_message_bytes: int = 16 << 20  # larger messages end their stream or call
    remembered_clips: int = 10000  # finished clips whose results answer a resend (LRU)


@dataclass(frozen=True)
class StreamSettings:
    device_id: str
    codec: str  # canonical spec
    rate: int
    channels: int
    window_seconds: float
    hop_seconds: float
    detector: bool


def window_and_hop(window_seconds: float, hop_seconds: float) -> tuple[float, float]:
    """Defaults filled in (0 means 10 s windows, hop = window) and checked."""
    bad = grpc.StatusCode.INVALID_ARGUMENT
    window = window_seconds or DEFAULT_WINDOW_SECONDS
    hop = hop_seconds or window
    if not (math.isfinite(window) and MIN_WINDOW_SECONDS <= window <= MAX_WINDOW_SECONDS):
        raise StreamError(
            bad, f"window of {window} s is outside {MIN_WINDOW_SECONDS}..{MAX_WINDOW_SECONDS} s"
        )
    if not (math.isfinite(hop) and 0 < hop <= window):
        raise StreamError(
            bad, f"hop of {hop} s must be above 0 and at most the window ({window} s)"
        )
    return float(window), float(hop)


def validate_config(config: pb.StreamConfig) -> StreamSettings:
    """The stream's config, checked against the codec engine; INVALID_ARGUMENT names the fault."""
    bad = grpc.StatusCode.INVALID_ARGUMENT
    if not config.codec:
        raise StreamError(bad, "StreamConfig.codec is empty; give a codec spec such as opus:32k")
    if not MIN_RATE <= config.sample_rate <= MAX_RATE:
        raise StreamError(
            bad, f"sample rate {config.sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz"
        )
    if config.channels not in (1, 2):
        raise StreamError(bad, f"{config.channels} channels: only 1 or 2 are supported")
    try:
        spec = str(parse_spec(config.codec))
        resolve(spec, config.sample_rate, config.channels)
    except CodecUnavailable as e:
        raise StreamError(bad, f"codec not available on this server: {e}") from e
    except CodecError as e:
        raise StreamError(bad, f"bad codec for this stream: {e}") from e
    window, hop = window_and_hop(config.window_seconds, config.hop_seconds)
    return StreamSettings(
        device_id=config.device_id or "unknown",
        codec=spec,
        rate=int(config.sample_rate),
        channels=int(config.channels),
        window_seconds=window,
        hop_seconds=hop,
        detector=bool(config.detector),
    )


@dataclass
class ClipState:
    """A clip being received: its decoder, its windower and what has been classified so far."""

    clip_id: str
    settings: StreamSettings
    model_rate: int
    limits: Limits
    label: str = ""
    decoder: StreamDecoder = field(init=False)
    windower: Windower = field(init=False)
    pending: list = field(default_factory=list)  # per window, in order: futures of its result

    def __post_init__(self) -> None:
        s = self.settings
        self.decoder = StreamDecoder(s.codec, s.rate, s.channels)
        self.windower = Windower(
            window=round(s.window_seconds * s.rate),
            hop=round(s.hop_seconds * s.rate),
            min_tail=round(min(1.0, s.hop_seconds) * s.rate),
        )

    @property
    def seconds(self) -> float:
        return self.windower.total / self.settings.rate

    def _windows(self, pcm: np.ndarray) -> list[Window]:
        windows = self.windower.push(pcm.mean(axis=1) if pcm.ndim == 2 else pcm)
        if self.seconds > self.limits.max_clip_seconds:
            raise StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"clip {self.clip_id!r} exceeds {self.limits.max_clip_seconds:g} s without "
                "end_of_clip; cut long recordings into clips",
            )
        return windows

    def feed(self, payload: bytes) -> list[Window]:
        """Decode a payload (on a worker thread); DATA_LOSS when it does not decode."""
        try:
            return self._windows(self.decoder.feed(payload))
        except DecodeError as e:
            raise StreamError(
                grpc.StatusCode.DATA_LOSS, f"clip {self.clip_id!r} ({self.settings.codec}): {e}"
            ) from e

    def finish(self) -> list[Window]:
        try:
            windows = self._windows(self.decoder.finish(strict=True))
        except DecodeError as e:
            raise StreamError(
                grpc.StatusCode.DATA_LOSS, f"clip {self.clip_id!r} ({self.settings.codec}): {e}"
            ) from e
        return windows + self.windower.finish()

    def model_input(self, window: Window) -> np.ndarray:
        """The window at the model's rate (the stream may run at any rate the codec allows)."""
        return np.ascontiguousarray(resample(window.samples, self.settings.rate, self.model_rate))
