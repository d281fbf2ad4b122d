"""Network audio as live clips: RTSP cameras, ESP32 microphones, Icecast and HTTP streams.

A :class:`NetworkSource` is a named URL that FFmpeg opens (through PyAV, already the edge's
codec library): ``rtsp://``, ``rtsps://``, ``http(s)://`` (Icecast/Shoutcast, HLS, a plain
file), ``rtmp://``, ``tcp://``, ``udp://``... Only the first audio track is read; for RTSP
only the audio track is asked for (``allowed_media_types=audio``), so a camera never sends its
video. Audio is decoded, mixed to the stream's channels, resampled with soxr (as files are)
and cut into :class:`~edge.clips.LiveClip` s by :class:`~edge.live_sources.LiveSource`, so each
clip streams to the server while it is still being received.

Why a reader thread with its own reconnect loop: a camera reboots, Wi-Fi drops, an Icecast
server restarts. When the stream fails, stalls for ``timeout`` seconds or ends, the clip being
recorded ends where it is, the source says so (``on_status``) and reconnects with exponential
backoff and jitter (0.5 s doubling to 30 s; back to 0.5 s once a connection delivered audio),
for as long as the edge runs. Clips are never paced again downstream (they are live), so the
reader keeps them in real time: a source that delivers faster than real time (a file over
HTTP) is slowed to audio speed, allowing a burst of ``PACE_SLACK_SECONDS`` and a drift of
``PACE_SLACK_SHARE`` (far beyond any sound card's clock error, so a live source is never
held back and never falls behind).

Passwords in URLs (``rtsp://user:secret@camera/``) are never printed: :func:`redact` hides
them in every message.
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from asc.codecs.pcm import match_channels
from edge.errors import SourceError, warn
from edge.live_sources import LiveSource

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
BACKOFF_START, BACKOFF_FACTOR, BACKOFF_CAP = 0.5, 2.0, 30.0
PACE_SLACK_SECONDS = 5.0  # audio a source may deliver ahead of real time (a connect burst)
PACE_SLACK_SHARE = 0.001  # ... plus this share of the time connected (clock drift)
# Read timeouts, probing, and which tracks to ask for, per URL scheme (FFmpeg's options).
RTSP_SCHEMES = ("rtsp", "rtsps")
TLS_SCHEMES = ("rtsps", "https", "tls")

StatusCallback = Callable[[str, bool, str], None]  # (source name, online, message)


@dataclass(frozen=True)
class SourceSpec:
    """``NAME=URL`` from the command line: the name rides along with every result."""

    name: str
    url: str

    @property
    def shown_url(self) -> str:
        return redact(self.url)


def parse_source(text: str) -> SourceSpec:
    """``NAME=URL``; the name is 1-64 letters, digits, ``-`` or ``_`` (it becomes part of clip
    ids, MQTT topics and Home Assistant ids, which allow no more)."""
    name, sep, url = text.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not url:
        raise SourceError(f"--source {redact(text)!r}: expected NAME=URL, e.g. kitchen=rtsp://…")
    if not NAME.match(name):
        raise SourceError(
            f"--source {name!r}: a name is 1-64 letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    if "://" not in url:
        raise SourceError(f"--source {name}: {redact(url)!r} is not a URL (rtsp://, http://…)")
    return SourceSpec(name, url)


def parse_sources(items: list[str]) -> list[SourceSpec]:
    """Every ``NAME=URL``; names must differ (each is its own device downstream)."""
    specs = [parse_source(item) for item in items]
    seen: set[str] = set()
    for spec in specs:
        if spec.name.lower() in seen:
            raise SourceError(f"--source {spec.name}: the name is given twice")
        seen.add(spec.name.lower())
    return specs


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def ffmpeg_options(
    url: str, timeout: float, rtsp_transport: str = "tcp", ca_file: str | None = None
) -> dict[str, str]:
    """FFmpeg options for opening ``url``: audio only, short probing, an I/O timeout."""
    scheme = urlsplit(url).scheme.lower()
    micros = str(int(timeout * 1e6))
    options = {"analyzeduration": "1000000", "probesize": "65536"}
    if scheme in RTSP_SCHEMES:
        options.update(allowed_media_types="audio", timeout=micros)
        if scheme == "rtsp":  # rtsps always runs over TLS on TCP
            options["rtsp_transport"] = rtsp_transport
    else:
        options["rw_timeout"] = micros
    if scheme in ("http", "https"):
        options["user_agent"] = "asc-edge"
    if ca_file and scheme in TLS_SCHEMES:
        options.update(ca_file=ca_file, tls_verify="1")
    return options


def backoff(failures: int) -> float:
    """Seconds to wait before attempt ``failures + 1``: doubling, capped, with jitter so that
    a fleet of devices does not reconnect in step."""
    delay = min(BACKOFF_CAP, BACKOFF_START * BACKOFF_FACTOR ** max(0, failures - 1))
    return delay * random.uniform(0.5, 1.0)


class _Pacer:
    """Holds a source to real time: at most a burst plus a drift share ahead of the clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started = clock()

    def wait_seconds(self, audio_seconds: float) -> float:
        elapsed = self.clock() - self.started
        allowed = elapsed + PACE_SLACK_SECONDS + PACE_SLACK_SHARE * elapsed
        return max(0.0, audio_seconds - allowed)


class _Converter:
    """Decoded frames to float32 (samples, channels) at the stream's rate: PyAV for the sample
    format, the engine's channel mix, soxr (HQ, as for files) for the rate."""

    def __init__(self, rate: int, channels: int) -> None:
        import av

        self.av = av
        self.rate, self.channels = rate, channels
        self._format: tuple[int, int] | None = None
        self._reformat = None
        self._resample = None

    def _setup(self, in_rate: int, in_channels: int) -> None:
        import soxr

        layout = "mono" if in_channels == 1 else "stereo"
        self._reformat = self.av.AudioResampler(format="flt", layout=layout, rate=in_rate)
        self._resample = (
            None
            if in_rate == self.rate
            else soxr.ResampleStream(in_rate, self.rate, self.channels, dtype="float32")
        )
        self._format = (in_rate, in_channels)

    def convert(self, frame) -> np.ndarray:
        key = (frame.sample_rate, frame.layout.nb_channels)
        if key != self._format:
            self._setup(*key)
        pieces = []
        for out in self._reformat.resample(frame):
            pcm = out.to_ndarray().reshape(-1, out.layout.nb_channels)
            pcm = match_channels(pcm.astype(np.float32, copy=False), self.channels)
            if self._resample is not None:
                pcm = self._resample.resample_chunk(pcm)
            if len(pcm):
                pieces.append(np.ascontiguousarray(pcm, dtype=np.float32))
        if not pieces:
            return np.zeros((0, self.channels), np.float32)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


class NetworkSource(LiveSource):
    """One named network stream, read by a thread into consecutive live clips.

    ``start()`` returns at once (the first connection happens in the thread: a camera that is
    still booting is retried like a lost one); ``stop()`` ends the iteration after the clip
    being recorded. ``on_status(name, online, message)`` hears every connect and loss.
    Clip ids are ``<name>-<UTC start>-<n>``.
    """

    def __init__(
        self,
        spec: SourceSpec,
        rate: int = 44100,
        channels: int = 1,
        clip_seconds: float = 10.0,
        *,
        label: str = "",
        timeout: float = 10.0,
        rtsp_transport: str = "tcp",
        ca_file: str | None = None,
        backlog: int = 60,
        on_status: StatusCallback | None = None,
        on_warning: Callable[[str], None] = warn,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            rate,
            channels,
            clip_seconds,
            prefix=spec.name,
            label=label,
            backlog=backlog,
            on_warning=on_warning,
        )
        if timeout <= 0:
            raise SourceError(f"source timeout must be positive, got {timeout} s")
        self.spec = spec
        self.name = spec.name
        self.timeout = timeout
        self.options = ffmpeg_options(spec.url, timeout, rtsp_transport, ca_file)
        self.on_status = on_status
        self.clock = clock
        self.connects = 0  # connections that delivered audio
        self.losses = 0  # connections lost (or never made) and retried
        self.seconds_received = 0.0
        self._wake = threading.Event()  # set by stop(): ends a backoff or pacing wait
        self._thread = threading.Thread(target=self._run, name=f"asc-edge {self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        super().stop()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _status(self, online: bool, message: str) -> None:
        if self.on_status is not None:
            self.on_status(self.name, online, message)

    def _run(self) -> None:
        failures = 0
        while not self._stopped:
            delivered, reason = self._read_once()
            if self._stopped:
                return
            self.end_clip()  # the clip ends where the source broke off
            self.losses += 1
            failures = 1 if delivered else failures + 1
            delay = backoff(failures)
            self._status(False, f"{reason}; reconnecting in {delay:.1f} s")
            self._wake.wait(delay)

    def _read_once(self) -> tuple[bool, str]:
        """One connection, read until it fails or ends: (audio arrived, why it ended)."""
        import av

        delivered = False
        started = time.monotonic()
        try:
            container = av.open(
                self.spec.url,
                options=self.options,
                timeout=(self.timeout, self.timeout),
            )
        except (av.FFmpegError, OSError) as e:
            if time.monotonic() - started >= self.timeout:  # FFmpeg's words for it mislead
                return False, f"{self.spec.shown_url} did not answer within {self.timeout:g} s"
            return False, f"cannot open {self.spec.shown_url}: {_reason(e)}"
        try:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                return False, f"{self.spec.shown_url} has no audio track"
            converter = _Converter(self.rate, self.channels)
            pacer = _Pacer(self.clock)
            samples = 0
            described = (
                f"{stream.codec_context.name} {stream.codec_context.sample_rate} Hz "
                f"{stream.codec_context.channels} ch"
            )
            for packet in container.demux(stream):
                if self._stopped:
                    return delivered, "stopped"
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    continue  # one damaged packet (a lost RTP packet): skip it, keep going
                for frame in frames:
                    pcm = converter.convert(frame)
                    if not len(pcm):
                        continue
                    if not delivered:
                        delivered = True
                        self.connects += 1
                        self._status(True, f"connected to {self.spec.shown_url} ({described})")
                    self.feed(pcm)
                    samples += len(pcm)
                    self.seconds_received += len(pcm) / self.rate
                wait = pacer.wait_seconds(samples / self.rate)
                if wait > 0 and self._wake.wait(wait):
                    return delivered, "stopped"
            return delivered, "the stream ended"
        except av.error.ExitError:  # the read timeout interrupted FFmpeg
            return delivered, f"lost: no data for {self.timeout:g} s"
        except (av.FFmpegError, OSError) as e:
            return delivered, f"lost: {_reason(e)}"
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                container.close()


def _reason(error: BaseException) -> str:
    """An FFmpeg error in a few words, without the URL (which may hold a password)."""
    text = getattr(error, "strerror", None) or str(error)
    return redact(str(text)).split(": '", 1)[0]
