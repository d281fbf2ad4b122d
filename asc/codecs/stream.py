"""Incremental encode and decode, for the edge (PCM chunks in) and the server (bytes in).

The byte stream is a sequence of frames, each ``kind (1 byte) + varint length + payload``:

- ``H``: the codec header (FFmpeg extradata; may be empty), always first;
- ``P``: the codec packets one ``encode`` call produced: ``varint count``, then each packet's
  ``varint length``, then the packets back to back;
- ``E``: the number of PCM samples the encoder was given, sent before the encoder's final
  packets so the decoder can cut the codec's end padding exactly.

Grouping packets costs about one byte per codec packet (opus:32k sends 50 packets of ~70 bytes
a second), and any split of the bytes into transport messages decodes the same. The decoder
removes the codec delay so its output lines up sample for sample with the encoder's input.
"""

from __future__ import annotations

import numpy as np

from asc.codecs.alignment import codec_delay
from asc.codecs.backends import open_decoder, open_encoder
from asc.codecs.errors import CodecError, DecodeError
from asc.codecs.pcm import as_pcm
from asc.codecs.registry import resolve
from asc.codecs.spec import CodecSpec

HEADER, PACKET, END = b"H", b"P", b"E"
MAX_FRAME_BYTES = 1 << 20  # no codec packet comes near this; a larger length means corruption
# A codec may end a few samples short of the end frame's count (SBC: 169); the gap is padded with
# silence up to one second, beyond which the end frame lies (and padding it would let 6 bytes
# claim gigabytes of audio).
MAX_END_PAD_SECONDS = 1.0


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def frame(kind: bytes, payload: bytes) -> bytes:
    return kind + varint(len(payload)) + payload


def pack(packets: list[bytes]) -> bytes:
    """A P frame's body: the count, each length, then the packets."""
    return b"".join([varint(len(packets)), *(varint(len(p)) for p in packets), *packets])


def unpack(body: bytes) -> list[bytes]:
    """The packets of a P frame's body; DecodeError when the counts and lengths do not add up."""
    view = memoryview(body)
    count, pos = _varint_at(view, 0)
    lengths = []
    for _ in range(count):
        length, pos = _varint_at(view, pos)
        lengths.append(length)
    if pos + sum(lengths) != len(body):
        raise DecodeError(
            f"corrupt stream: a packet frame of {len(body)} bytes does not hold the "
            f"{count} packets it lists"
        )
    packets = []
    for length in lengths:
        packets.append(bytes(view[pos : pos + length]))
        pos += length
    return packets


def _varint_at(data: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 35:
            raise DecodeError("corrupt stream: bad varint in a packet frame")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


class StreamEncoder:
    """PCM chunks in, framed bytes out; a chain's earlier hops are coded and decoded in-process."""

    def __init__(self, spec: str | CodecSpec, rate: int, channels: int):
        stages = resolve(spec, rate, channels)
        self.rate, self.channels = rate, channels
        self.spec = stages
        self.resolved = stages[-1]
        # Each earlier hop (e.g. Bluetooth before cellular) is a full encode/decode round trip,
        # aligned like the last stage's decoder on the far side.
        hops = [str(s.stage) for s in stages[:-1]]
        self._hops = [
            (
                StreamEncoder(hop, rate, channels),
                StreamDecoder(hop, rate, channels, codec_delay(hop, rate, channels)),
            )
            for hop in hops
        ]
        self._encoder = open_encoder(self.resolved)
        self.samples_in = 0
        self.payload_bytes = 0  # codec bytes alone, for wire-efficiency figures
        self.packets = 0
        self._started = False
        self._finished = False

    def _frames(self, packets: list[bytes]) -> bytes:
        self.packets += len(packets)
        self.payload_bytes += sum(len(p) for p in packets)
        out = frame(PACKET, pack(packets)) if packets else b""
        if not self._started:
            self._started = True
            out = frame(HEADER, self._encoder.header) + out
        return out

    def _through_hops(self, x: np.ndarray, last: bool) -> np.ndarray:
        for encoder, decoder in self._hops:
            data = encoder.encode(x)
            if last:
                data += encoder.finish()
            x = decoder.feed(data)
            if last:
                x = np.concatenate([x, decoder.finish()])
        return x

    def encode(self, pcm: np.ndarray) -> bytes:
        if self._finished:
            raise CodecError("encode() after finish(): start a new StreamEncoder per clip")
        x = self._through_hops(as_pcm(pcm, self.channels), last=False)
        self.samples_in += len(x)
        return self._frames(self._encoder.encode(x))

    def finish(self) -> bytes:
        if self._finished:
            return b""
        tail = self._through_hops(np.zeros((0, self.channels), np.float32), last=True)
        self.samples_in += len(tail)
        out = self._frames(self._encoder.encode(tail))
        self._finished = True
        out += frame(END, varint(self.samples_in))
        return out + self._frames(self._encoder.flush())


class StreamDecoder:
    """Framed bytes in (split anywhere), PCM out, aligned with what the encoder was given.

    ``delay`` is the number of leading samples to drop: ``codec_delay(spec, rate, channels)``
    (asc/codecs/alignment.py), which whoever builds the decoder measures where it can afford
    to, since the first measurement of a codec path codes a calibration signal.
    """

    def __init__(self, spec: str | CodecSpec, rate: int, channels: int, delay: int):
        self.resolved = resolve(spec, rate, channels)[-1]
        self.rate, self.channels = rate, channels
        self._delay = delay
        self._buffer = bytearray()
        self._decoder = None
        self._to_skip = self._delay
        self.samples_out = 0
        self.total: int | None = None  # from the end frame
        self.truncated = False

    @property
    def integer_samples(self) -> bool:
        """Whether everything decoded so far came from integer samples (see PyAVDecoder)."""
        return self._decoder is not None and self._decoder.integer_samples

    def _take_frame(self) -> tuple[bytes, bytes] | None:
        buf = self._buffer
        if not buf:
            return None
        kind = bytes(buf[:1])
        if kind not in (HEADER, PACKET, END):
            raise DecodeError(f"corrupt stream: unknown frame kind {kind!r}")
        length, shift, pos = 0, 0, 1
        while True:
            if pos >= len(buf):
                return None
            byte = buf[pos]
            length |= (byte & 0x7F) << shift
            pos += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 35:
                raise DecodeError("corrupt stream: frame length varint too long")
        if length > MAX_FRAME_BYTES:
            raise DecodeError(f"corrupt stream: frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        return kind, payload

    def _emit(self, x: np.ndarray) -> np.ndarray:
        if self._to_skip:
            drop = min(self._to_skip, len(x))
            x, self._to_skip = x[drop:], self._to_skip - drop
        if self.total is not None:
            x = x[: max(0, self.total - self.samples_out)]
        self.samples_out += len(x)
        return x

    def feed(self, data: bytes) -> np.ndarray:
        """Decode what ``data`` completes; raises DecodeError naming what is wrong."""
        self._buffer += data
        parts: list[np.ndarray] = []
        while (item := self._take_frame()) is not None:
            kind, payload = item
            if self._decoder is None:
                if kind != HEADER:
                    raise DecodeError("corrupt stream: it does not start with a header frame")
                self._decoder = open_decoder(self.resolved, payload)
            elif kind == HEADER:
                raise DecodeError("corrupt stream: a second header frame")
            elif kind == PACKET:
                parts.append(self._emit(self._decoder.decode_packets(unpack(payload))))
            else:
                self.total = _read_varint(payload)
        return np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)

    def finish(self, strict: bool = True) -> np.ndarray:
        """Flush the codec and return the last samples.

        A stream without its end frame was cut short: with ``strict`` that raises DecodeError
        (after everything decodable was returned by ``feed``); otherwise ``truncated`` is set
        and the tail is returned, for callers that keep partial clips.
        """
        if self._buffer:
            self.truncated = True
            self._buffer.clear()
        if self._decoder is None:
            self.truncated = True
            if strict:
                raise DecodeError(f"{self.resolved.stage}: stream truncated before its header")
            return np.zeros((0, self.channels), np.float32)
        x = self._emit(self._decoder.flush())
        if self.total is None:
            self.truncated = True
        elif self.samples_out < self.total:  # a codec may end a few samples short: pad
            if self.total - self.samples_out > MAX_END_PAD_SECONDS * self.rate:
                raise DecodeError(
                    f"corrupt stream: the end frame claims {self.total} samples but "
                    f"{self.samples_out} decoded"
                )
            pad = np.zeros((self.total - self.samples_out, self.channels), np.float32)
            self.samples_out = self.total
            x = np.concatenate([x, pad])
        if self.truncated and strict:
            raise DecodeError(
                f"{self.resolved.stage}: stream truncated after {self.samples_out} samples "
                "(no end frame)"
            )
        return x


def _read_varint(data: bytes) -> int:
    value, shift = 0, 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value
    raise DecodeError("corrupt stream: bad end frame")
