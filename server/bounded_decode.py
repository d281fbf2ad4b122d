"""Decoding whose output is bounded by the server's budgets, not by what the bytes claim.

A few bytes of compressed silence decode to minutes of audio, so the decoded size must be
checked while decoding, not after. ``IncrementalDecoder`` is the engine's ``StreamDecoder``
taking a stream's bytes without decoding them, then decoding a few codec packets at a time
(until ``RUN_SAMPLES``) as the stream's windows are taken, so a message holding an hour of FLAC
silence costs one window of memory and is refused once its clip passes
``--max-clip-seconds``. ``decode_clip`` decodes a whole ClassifyClip file frame by frame into
mono at the model's rate, stopping at ``--classify-max-seconds``, and checks that the container
holds the codec the request names.

Decoded audio must be finite and within ``MAX_ABS_SAMPLE`` (full scale is 1.0): NaN or
1e30 would make the front end's power spectrum overflow into NaN probabilities.
"""

from __future__ import annotations

import io
from collections import deque
from dataclasses import dataclass

import av
import grpc
import numpy as np
import soxr

from asc.codecs.backends import open_decoder
from asc.codecs.errors import DecodeError
from asc.codecs.pyav_backend import frames_to_array
from asc.codecs.spec import CodecSpec
from asc.codecs.stream import END, HEADER, PACKET, StreamDecoder, _read_varint, unpack
from server.errors import StreamError
from server.safe_log import shown

# Codec packets decoded in one run, until this many samples (at the codec's rate) came out: a
# call per short packet (SBC's 128 samples, a device's short PCM packets) spends more on the call
# than on the decoding.
RUN_SAMPLES = 4096
MAX_ABS_SAMPLE = 1000.0  # +60 dB over full scale: no recording, a sure sign of garbage
# FFmpeg decoder names each registry codec's data may show up as.
DECODED_AS = {
    "pcm16": {"pcm_s16le", "pcm_s16be"},
    "flac": {"flac"},
    "opus": {"opus", "libopus"},
    "mp3": {"mp3", "mp3float"},
    "aac": {"aac", "aac_fixed", "libfdk_aac"},
    "fdk-aac": {"aac", "aac_fixed", "libfdk_aac"},
    "he-aac": {"aac", "aac_fixed", "libfdk_aac"},
    "he-aac-v2": {"aac", "aac_fixed", "libfdk_aac"},
    "vorbis": {"vorbis", "libvorbis"},
    "sbc": {"sbc"},
    "aptx": {"aptx"},
    "mp2": {"mp2", "mp2float"},
    "ac3": {"ac3", "ac3_fixed"},
}
# What a probed file may hold: the decoders of the codecs above and WAV's PCM variants, the
# formats ClipRequest.data documents. FFmpeg has hundreds more, most rarely exercised; a client
# must not be able to pick one.
ACCEPTED_DECODERS = frozenset().union(*DECODED_AS.values())


def accepted_decoder(name: str) -> bool:
    return name in ACCEPTED_DECODERS or name.startswith("pcm_")


# Raw formats FFmpeg cannot recognise from content alone.
_DEMUXER = {"sbc": "sbc", "aptx": "aptx"}


def check_samples(x: np.ndarray, clip_id: str) -> None:
    """INVALID_ARGUMENT for NaN, infinities or absurd magnitudes."""
    if not x.size:
        return
    low, high = float(x.min()), float(x.max())  # NaN propagates; no temporary array
    if low >= -MAX_ABS_SAMPLE and high <= MAX_ABS_SAMPLE:
        return
    if not np.isfinite(x).all():
        raise StreamError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"clip {shown(clip_id)} decodes to non-finite samples (NaN or infinity)",
        )
    peak = max(-low, high)
    if peak > MAX_ABS_SAMPLE:
        raise StreamError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"clip {shown(clip_id)} decodes to samples of magnitude {peak:.3g}; audio must lie "
            f"within +-{MAX_ABS_SAMPLE:g} (full scale is 1.0)",
        )


class IncrementalDecoder(StreamDecoder):
    """``StreamDecoder`` split in two: ``add`` frames bytes, ``next_audio`` decodes a few packets.

    The output, packet by packet, is exactly ``StreamDecoder.feed``'s (tests compare them).
    """

    def __init__(self, spec: str | CodecSpec, rate: int, channels: int, delay: int):
        super().__init__(spec, rate, channels, delay)
        self._packets: deque[bytes | int] = deque()  # codec packets; an int: the end's total
        # a packet's error, raised once the audio of the packets before it is taken
        self._failed: DecodeError | None = None

    def add(self, data: bytes) -> None:
        """Take framed bytes; only the framing is read. DecodeError for a corrupt stream."""
        self._buffer += data
        while (item := self._take_frame()) is not None:
            kind, payload = item
            if self._decoder is None:
                if kind != HEADER:
                    raise DecodeError("corrupt stream: it does not start with a header frame")
                self._decoder = open_decoder(self.resolved, payload)
            elif kind == HEADER:
                raise DecodeError("corrupt stream: a second header frame")
            elif kind == PACKET:
                self._packets.extend(unpack(payload))
            else:
                assert kind == END
                self._packets.append(_read_varint(payload))

    @property
    def waiting(self) -> bool:
        return bool(self._packets) or self._failed is not None

    def next_audio(self) -> np.ndarray | None:
        """The audio of the next run of codec packets (possibly empty), or None when nothing
        waits (``_decode_run``)."""
        if self._failed is not None:
            raise self._failed
        while self._packets:
            item = self._packets.popleft()
            if isinstance(item, int):
                self.total = item
                continue
            return self._emit(self._decode_run(item))
        return None

    def _decode_run(self, first: bytes) -> np.ndarray:
        """``first`` and the codec packets right behind it, until RUN_SAMPLES are decoded, as
        one array: SBC's packets are 128 samples each, and converting them one at a time cost
        more than decoding them; a device's short PCM packets are read at once the same way.
        A packet that fails behind good ones ends the run, and its error waits for the next
        call, so the good ones' audio is kept; one that fails first fails the call."""
        decoder = self._decoder
        frames = decoder.frames_of(first)
        samples = decoder.samples_in(frames)
        while samples < RUN_SAMPLES and self._packets and isinstance(self._packets[0], bytes):
            try:
                more = decoder.frames_of(self._packets.popleft())
            except DecodeError as e:
                self._failed = e
                break
            frames += more
            samples += decoder.samples_in(more)
        return decoder.audio_of(frames)

    def finish(self, strict: bool = True) -> np.ndarray:
        if self._packets:
            raise RuntimeError("finish() while codec packets still wait to be decoded")
        return super().finish(strict)


@dataclass
class DecodedClip:
    mono: np.ndarray  # float32 at the model's rate
    seconds: float  # the file's duration
    codec: str  # FFmpeg's decoder name


class _MonoAudio:
    """A file's frames gathered as mono at the model's rate, refused past ``max_seconds``.

    The resampler is set up from the first frame, since only decoding tells the true rate.
    Frames are converted in runs of ``RUN_SAMPLES`` (SBC's frames are 128 samples each)."""

    def __init__(self, rate: int, clip_id: str, max_seconds: float, too_long: StreamError):
        self.rate, self.clip_id = rate, clip_id
        self.max_seconds, self.too_long = max_seconds, too_long
        self.parts: list[np.ndarray] = []
        self.waiting: list[av.AudioFrame] = []  # not yet converted
        self.waiting_samples = 0
        self.source_samples = 0
        self.source_rate = 0
        self.resampler = None

    def add(self, frame: av.AudioFrame, stream: av.audio.stream.AudioStream) -> None:
        if not self.source_rate:
            self.source_rate = int(frame.sample_rate or stream.rate or self.rate)
            if self.source_rate != self.rate:
                self.resampler = soxr.ResampleStream(
                    self.source_rate, self.rate, 1, dtype="float32", quality="HQ"
                )
        self.source_samples += frame.samples
        if self.source_samples > self.max_seconds * self.source_rate:
            raise self.too_long  # whatever the packets claimed
        self.waiting.append(frame)
        self.waiting_samples += frame.samples
        if self.waiting_samples >= RUN_SAMPLES:
            self._convert()

    def _convert(self) -> None:
        mono = frames_to_array(self.waiting, 1)[:, 0]
        self.waiting, self.waiting_samples = [], 0
        check_samples(mono, self.clip_id)
        self.parts.append(self.resampler.resample_chunk(mono) if self.resampler else mono)

    def flush(self) -> None:
        if self.waiting:
            self._convert()
        if self.resampler is not None:
            self.parts.append(self.resampler.resample_chunk(np.zeros(0, np.float32), last=True))

    def mono(self) -> np.ndarray:
        return np.concatenate(self.parts).astype(np.float32, copy=False)


def _open_options(codec: str | None, raw_rate: int) -> tuple[str | None, dict[str, str]]:
    """The demuxer and its options for formats FFmpeg cannot probe (raw sbc, aptx)."""
    options, fmt = {}, None
    if codec is not None:
        fmt = _DEMUXER.get(codec)
        if codec == "aptx":
            options["sample_rate"] = str(raw_rate or 44100)
    return fmt, options


def _audio_stream(
    container: av.container.InputContainer,
    codec: str | None,
    name: str,
    max_seconds: float,
    too_long: StreamError,
) -> av.audio.stream.AudioStream:
    """The file's first audio stream, checked against its declared length and the codec the
    request names, before anything is decoded."""
    if not container.streams.audio:
        raise DecodeError("no audio stream in the data")
    stream = container.streams.audio[0]
    if stream.codec_context is None:  # a header naming a format no decoder takes
        raise DecodeError("no decoder takes the audio this file declares")
    if _declared_seconds(container, stream) > max_seconds:
        raise too_long  # the file says so: refused before anything is decoded
    found = stream.codec_context.name
    if not accepted_decoder(found):
        raise StreamError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"clip {name}: the data holds {shown(found, 24)} audio, which this server does not "
            "decode; send WAV, FLAC, Ogg (Vorbis, Opus), MP3, AAC (ADTS, M4A), SBC or aptX",
        )
    if codec is not None and found not in DECODED_AS.get(codec, {found}):
        raise StreamError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"clip {name}: the data holds {shown(found, 24)} audio, not {codec} as its "
            "codec field says (leave codec empty to let the server probe the file)",
        )
    return stream


def decode_clip(
    data: bytes,
    rate: int,
    clip_id: str,
    max_seconds: float,
    codec: str | None = None,
    raw_rate: int = 0,
) -> DecodedClip:
    """A whole file as mono at ``rate``; refuses more than ``max_seconds`` of audio.

    ``codec`` (a registry codec name: the last stage of the request's spec) must be what the
    container holds, so a metric labelled ``aac`` counts AAC. ``raw_rate`` is the rate of raw
    aptx, which carries none. Raises StreamError: DATA_LOSS for undecodable data,
    INVALID_ARGUMENT for a codec mismatch or bad samples, RESOURCE_EXHAUSTED past the budget.
    """
    fmt, options = _open_options(codec, raw_rate)
    name = shown(clip_id)
    too_long = StreamError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"clip {name} decodes to more than {max_seconds:g} s of audio, the most one "
        "ClassifyClip call takes (--classify-max-seconds); stream it with StreamScenes instead",
    )
    audio = _MonoAudio(rate, clip_id, max_seconds, too_long)
    try:
        with av.open(io.BytesIO(data), "r", format=fmt, options=options) as container:
            stream = _audio_stream(container, codec, name, max_seconds, too_long)
            found = stream.codec_context.name
            for frame in container.decode(stream):
                audio.add(frame, stream)
    except (av.error.FFmpegError, DecodeError, ValueError, IndexError, OSError) as e:
        raise StreamError(
            grpc.StatusCode.DATA_LOSS, f"clip {name}: undecodable audio data: {shown(str(e), 200)}"
        ) from e
    audio.flush()
    if not audio.source_samples:
        raise StreamError(
            grpc.StatusCode.DATA_LOSS, f"clip {name}: no audio decoded from {len(data)} bytes"
        )
    return DecodedClip(audio.mono(), audio.source_samples / audio.source_rate, found)


def _declared_seconds(container, stream) -> float:
    """The duration the file's header declares (0 when it declares none). A file declaring
    more than the budget is refused without decoding; one that declares less than it holds is
    stopped by the count of decoded samples."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0
