"""FFmpeg through PyAV: encoders for the codecs FFmpeg ships, and the decoder for every codec."""

from __future__ import annotations

import itertools
from fractions import Fraction

import av
import numpy as np
import soxr

from asc.codecs.errors import CodecError, DecodeError
from asc.codecs.pcm import match_channels, to_int16, to_int32
from asc.codecs.registry import Resolved, ffmpeg_names

# FFmpeg's sbc encoder takes the bitpool from global_quality; the bitrate it is given only picks
# the frame layout, and any value under 180k selects 8 subbands, 16 blocks and joint stereo, the
# layout registry.sbc_frame_bytes assumes.
SBC_LAYOUT_BITRATE = 128000
_SAMPLE_FORMAT = {
    "pcm_s16le": "s16",
    "flac": "s16",
    "libopus": "flt",
    "libmp3lame": "fltp",
    "aac": "fltp",
    "sbc": "s16",
    "aptx": "s32p",
    "mp2": "s16",
    "ac3": "fltp",
}
# Codecs without a frame size (PCM) send each encode call's samples at once, none held back for
# the next call (a window's end never waits a packet interval for them), in packets of at most
# this many samples: few enough that a receiver's cost per packet (framing, a call per packet)
# stays small (with 1024-sample packets it was about half of a pcm16 stream's decoding on the
# server), and far under the 131072 samples a server takes in one packet.
_PCM_PACKET = 8192
_ENCODE_RUN = 4096  # samples handed to FFmpeg in one call, at most (or one frame if longer)
# AV_CODEC_CAP_SMALL_LAST_FRAME | AV_CODEC_CAP_VARIABLE_FRAME_SIZE: a short last frame is fine.
_SHORT_LAST_FRAME_OK = (1 << 6) | (1 << 16)
_DTYPE_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}
_INTEGER_FORMATS = frozenset({"u8", "u8p", "s16", "s16p", "s32", "s32p", "s64", "s64p"})


def codec_rate(r: Resolved) -> int:
    """The rate the codec itself runs at: Opus only runs at 48 kHz, so we resample around it."""
    return 48000 if r.name == "opus" else r.rate


def codec_channels(r: Resolved) -> int:
    """aptX is a stereo-only codec; mono input is duplicated and averaged back after decoding."""
    return 2 if r.name == "aptx" else r.channels


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


# PyAV finds a frame's planes by walking FFmpeg's plane pointers up to a NULL one, and a planar
# frame of 8 or more channels has none after its last plane: touching ``planes`` (or
# ``to_ndarray``) then reads past the array and dies with a segmentation fault. A 7.1 file or one
# hostile AAC packet that switches a mono stream to 7.1 is enough, so such frames are first made
# packed (one plane) by FFmpeg itself, which knows how many planes there are.
_SAFE_PLANAR_CHANNELS = 7


def _packed(frame: av.AudioFrame) -> list[av.AudioFrame]:
    resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
    return resampler.resample(frame) + resampler.resample(None)


def frames_to_array(frames: list[av.AudioFrame], channels: int) -> np.ndarray:
    """Decoded frames as one float32 (samples, ``channels``) array. Each run of frames of one
    format and layout is converted at once: a codec with short frames (SBC's are 128 samples)
    would otherwise pay numpy's per-call cost on every frame of a clip."""
    runs = itertools.groupby(frames, key=lambda f: (f.format.name, len(f.layout.channels)))
    parts = [match_channels(_alike_to_array(list(run)), channels) for _, run in runs]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros((0, channels), np.float32)


def _alike_to_array(frames: list[av.AudioFrame]) -> np.ndarray:
    """Frames of one format and channel count as float32 (samples, channels)."""
    first = frames[0]
    channels = len(first.layout.channels)
    if first.format.is_planar and channels > _SAFE_PLANAR_CHANNELS:
        packed = [p for f in frames for p in _packed(f)]
        return _alike_to_array(packed) if packed else np.zeros((0, channels), np.float32)
    arrays = [f.to_ndarray() for f in frames]
    data = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1)
    data = data.T if first.format.is_planar else data.reshape(-1, channels)
    scale = _DTYPE_SCALE.get(data.dtype)
    out = data.astype(np.float32) / scale if scale else data.astype(np.float32, copy=False)
    return np.ascontiguousarray(out)


class PyAVEncoder:
    """Encodes float32 PCM into codec packets; muxes them instead when given an output stream."""

    def __init__(self, r: Resolved, container: av.container.OutputContainer | None = None):
        name = ffmpeg_names(r.name)[0]
        assert name is not None
        self.resolved = r
        self.rate = codec_rate(r)
        self.channels = codec_channels(r)
        self._container = container
        self._resampler = (
            soxr.ResampleStream(r.rate, self.rate, r.channels, dtype="float32", quality="HQ")
            if self.rate != r.rate
            else None
        )
        if container is not None:
            self._stream = container.add_stream(name, rate=self.rate)
            ctx = self._stream.codec_context
        else:
            self._stream = None
            ctx = av.CodecContext.create(name, "w")
        self._format = _SAMPLE_FORMAT[name]
        ctx.sample_rate = self.rate
        ctx.layout = _layout(self.channels)
        ctx.format = self._format
        ctx.time_base = Fraction(1, self.rate)
        options: dict[str, str] = {}
        if r.bitrate is not None and r.name != "sbc":
            ctx.bit_rate = r.bitrate
        if r.cutoff is not None:
            options["cutoff"] = str(r.cutoff)
        if r.name == "opus":
            options.update(application="audio", frame_duration="20", vbr=r.vbr or "on")
        if r.name == "sbc":
            ctx.bit_rate = SBC_LAYOUT_BITRATE
            ctx.global_quality = r.bitpool or 0
        ctx.options = options
        try:
            ctx.open()
        except av.error.FFmpegError as e:
            raise CodecError(f"{r.stage}: FFmpeg's {name} encoder refused the settings: {e}") from e
        self._ctx = ctx
        self.frame_size = ctx.frame_size or 1  # PCM: any whole number of samples
        self._pad_last_frame = not ctx.codec.capabilities & _SHORT_LAST_FRAME_OK
        self.header = bytes(ctx.extradata or b"")
        self._pending = np.zeros((0, self.channels), np.float32)
        self._pts = 0
        self._layout = _layout(self.channels)
        self._time_base = Fraction(1, self.rate)

    def _codec_array(self, block: np.ndarray) -> np.ndarray:
        """``block`` (samples, channels) in the encoder's sample format, converted once for all
        its frames: planar formats as (channels, samples), packed ones as one row."""
        if self._format == "fltp":
            return block.T
        if self._format == "flt":
            return block.reshape(1, -1)
        if self._format == "s16":
            return to_int16(block).reshape(1, -1)
        return to_int32(block).T  # s32p

    def _frames(self, block: np.ndarray) -> list[av.AudioFrame]:
        """``block``, a whole number of frames (or the padded last one), as codec frames."""
        array = self._codec_array(block)
        width = array.shape[1] // block.shape[0]  # values per sample in a row: 1 or channels
        # A codec with a frame size of its own takes up to _ENCODE_RUN samples as one frame,
        # which PyAV's queue cuts into the codec's frames: the same packets, about 3x cheaper
        # than a frame from here per 128 SBC samples. Not the whole block at once: PyAV holds
        # the GIL through a call, and a server's event loop shares it.
        n = self.frame_size
        step = (max(n, _ENCODE_RUN // n * n) if self._ctx.frame_size else _PCM_PACKET) * width
        frames = []
        for start in range(0, array.shape[1], step):
            part = np.ascontiguousarray(array[:, start : start + step])
            frame = av.AudioFrame.from_ndarray(part, format=self._format, layout=self._layout)
            frame.sample_rate = self.rate
            frame.time_base = self._time_base
            frame.pts = self._pts
            self._pts += part.shape[1] // width
            frames.append(frame)
        return frames

    def _emit(self, frame: av.AudioFrame | None) -> list[bytes]:
        if self._stream is not None:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            return []
        return [bytes(p) for p in self._ctx.encode(frame) if p.size]

    def _push(self, x: np.ndarray) -> list[bytes]:
        x = match_channels(x, self.channels)
        self._pending = np.concatenate([self._pending, x]) if len(self._pending) else x
        out: list[bytes] = []
        n = self.frame_size
        full = len(self._pending) // n * n
        if full:
            for frame in self._frames(self._pending[:full]):
                out += self._emit(frame)
        self._pending = self._pending[full:]
        return out

    def encode(self, pcm: np.ndarray) -> list[bytes]:
        x = match_channels(pcm, self.resolved.channels)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        return self._push(x)

    def flush(self) -> list[bytes]:
        out: list[bytes] = []
        if self._resampler is not None:
            empty = np.zeros((0, self.resolved.channels), np.float32)
            out += self._push(self._resampler.resample_chunk(empty, last=True))
        if len(self._pending):
            block = self._pending
            if self._pad_last_frame:
                block = np.zeros((self.frame_size, self.channels), np.float32)
                block[: len(self._pending)] = self._pending
            self._pending = self._pending[:0]
            for frame in self._frames(block):
                out += self._emit(frame)
        out += self._emit(None)
        return out


class PyAVDecoder:
    """Decodes one codec's packets (any codec of the registry) to float32 at the stream's rate."""

    def __init__(self, r: Resolved, header: bytes):
        name = ffmpeg_names(r.name)[1]
        self.resolved = r
        self.rate = codec_rate(r)
        ctx = av.CodecContext.create(name, "r")
        ctx.sample_rate = self.rate
        ctx.layout = _layout(codec_channels(r))
        if header:
            ctx.extradata = header
        try:
            ctx.open()
        except av.error.FFmpegError as e:
            raise DecodeError(f"{r.stage}: the stream header does not open {name}: {e}") from e
        self._ctx = ctx
        # Every frame so far came as integers: their float copy is finite and within full
        # scale by construction, so a caller may skip looking for NaN or huge samples in it.
        self.integer_samples = True
        self._resampler = (
            soxr.ResampleStream(self.rate, r.rate, r.channels, dtype="float32", quality="HQ")
            if self.rate != r.rate
            else None
        )

    def _checked(self, frame: av.AudioFrame) -> av.AudioFrame:
        """A stream's frames keep the rate its header opened and at most stereo (FFmpeg
        decodes mono HE-AAC as stereo, since parametric stereo may turn up): a packet that
        switches them (AAC can, with a program config element) is corrupt or hostile."""
        channels = len(frame.layout.channels)
        most = max(2, codec_channels(self.resolved))
        if channels > most or frame.sample_rate != self.rate:
            raise DecodeError(
                f"{self.resolved.stage}: a packet switched the stream to {channels} channels at "
                f"{frame.sample_rate} Hz; its header opened {codec_channels(self.resolved)} at "
                f"{self.rate} Hz"
            )
        if frame.format.name not in _INTEGER_FORMATS:
            self.integer_samples = False
        return frame

    def frames_of(self, payload: bytes) -> list[av.AudioFrame]:
        """One packet's decoded frames, checked; ``audio_of`` turns frames into samples."""
        if not payload:  # an empty packet would put FFmpeg's decoder into draining mode
            raise DecodeError(f"{self.resolved.stage}: empty packet")
        try:
            frames = self._ctx.decode(av.Packet(payload))
        except av.error.FFmpegError as e:
            raise DecodeError(
                f"{self.resolved.stage}: undecodable packet ({len(payload)} bytes): {e}"
            ) from e
        return [self._checked(f) for f in frames]

    def samples_in(self, frames: list[av.AudioFrame]) -> int:
        return sum(f.samples for f in frames)

    def audio_of(self, frames: list[av.AudioFrame], last: bool = False) -> np.ndarray:
        """Frames (of consecutive packets) as float32 at the stream's rate, converted at once:
        SBC's packets are 128 samples each, and converting them one by one cost more than
        decoding them."""
        x = frames_to_array(frames, self.resolved.channels)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        return x

    def decode(self, payload: bytes) -> np.ndarray:
        return self.audio_of(self.frames_of(payload))

    def decode_packets(self, payloads: list[bytes]) -> np.ndarray:
        """The audio of several packets in order, converted once."""
        return self.audio_of([f for payload in payloads for f in self.frames_of(payload)])

    def flush(self) -> np.ndarray:
        try:
            frames = self._ctx.decode(None)
        except av.error.FFmpegError as e:
            raise DecodeError(f"{self.resolved.stage}: decoder flush failed: {e}") from e
        return self.audio_of([self._checked(f) for f in frames], last=True)
