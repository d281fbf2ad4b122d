"""Fuzz harness for the decode and parsing paths a stream's bytes go through on the server.

Targets, picked by the input's first byte:

0. ``StreamDecoder.feed``/``finish`` on mutated real streams of several codecs (the seeds are
   genuine encoder output), fed in pieces split where the input says;
1. ``parse_spec`` (and ``resolve``, and the canonical spelling parsing to itself);
2. the wire messages: ``StreamRequest`` and ``ClipRequest`` from bytes, and the server's
   ``validate_config`` on any StreamConfig that parses;
3. ``decode_clip``, what a ClassifyClip file goes through (FFmpeg's probing, demuxers and
   decoders), on mutated real files of every container the engine writes, a 7.1 one included,
   with the codec field empty or naming the file's codec.

Only documented exceptions may escape a target: the engine's ``CodecError`` (``DecodeError``
and ``CodecUnavailable`` are kinds of it), protobuf's ``DecodeError`` and the server's
``StreamError``. Anything else, or a decoder returning absurd amounts of audio, is a finding.

    .venv/bin/python -m tests.fuzz_parsing -max_total_time=25 -max_len=8192 CORPUS_DIR
    .venv/bin/python -m tests.fuzz_parsing --random --seconds 25 [--seed 0]

The first runs atheris (libFuzzer, coverage-guided); the second, for machines without an
atheris wheel, mutates the same seeds at random with a fixed seed through the same targets.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from pathlib import Path

try:
    import atheris
except ImportError:  # the random fallback needs nothing
    atheris = None

RATE = 16000
# At 16 kHz (small seeds); he-aac is left out: its decoder is refused below 22.05 kHz.
DECODE_SPECS = ("pcm16", "flac", "opus:32k", "mp3:32k", "aac:32k", "sbc:64k", "vorbis:64k", "aptx")
SPEC_SEEDS = (
    "opus:32k", "mp3:128k,cutoff=14k", "sbc:bitpool=53>aac:64k", "he-aac-v2:24k", "pcm16",
    "fdk-aac:128k,cutoff=18k", "vorbis:128k,cutoff=14k", "sbc:64k",
)  # fmt: skip


def _load_targets():
    global CodecError, StreamDecoder, codec_delay, parse_spec, split_spec_list, resolve
    global ProtoDecodeError, pb, StreamError, validate_config, decode_clip
    from google.protobuf.message import DecodeError as ProtoDecodeError

    from asc.codecs.alignment import codec_delay
    from asc.codecs.errors import CodecError
    from asc.codecs.registry import resolve
    from asc.codecs.spec import parse_spec, split_spec_list
    from asc.codecs.stream import StreamDecoder
    from proto import scene_classifier_pb2 as pb
    from server.bounded_decode import decode_clip
    from server.session import StreamError, validate_config


def fuzz_decode(body: bytes) -> None:
    if len(body) < 2:
        return
    spec = DECODE_SPECS[body[0] % len(DECODE_SPECS)]
    piece = 1 + (body[1] * 37) % 700  # where the transport cut the stream
    stream = body[2:]
    channels = 2 if spec == "aptx" else 1
    produced = 0
    try:
        decoder = StreamDecoder(spec, RATE, channels, codec_delay(spec, RATE, channels))
        for i in range(0, len(stream), piece):
            produced += _checked(decoder.feed(stream[i : i + piece]), channels)
        produced += _checked(decoder.finish(strict=bool(body[1] & 1)), channels)
    except CodecError:
        return
    # The most audio any codec makes of a few bytes (a 120 ms Opus packet is 3 bytes), plus
    # the one second of padding an end frame may ask for.
    if produced > 2000 * len(stream) + 2 * RATE:
        raise AssertionError(f"{spec}: {len(stream)} bytes decoded to {produced} samples")


def _checked(pcm, channels: int) -> int:
    if pcm.dtype.name != "float32" or pcm.ndim != 2 or pcm.shape[1] != channels:
        raise AssertionError(f"decoder returned {pcm.dtype} {pcm.shape}")
    return len(pcm)


def fuzz_spec(body: bytes) -> None:
    text = body.decode("utf-8", errors="replace")
    with contextlib.suppress(CodecError):
        split_spec_list(text)
    try:
        spec = parse_spec(text)
    except CodecError:
        return
    canonical = str(spec)
    if str(parse_spec(canonical)) != canonical:
        raise AssertionError(f"{text!r}: canonical {canonical!r} does not parse to itself")
    for channels in (1, 2):
        with contextlib.suppress(CodecError):
            resolve(canonical, 44100, channels)


def fuzz_proto(body: bytes) -> None:
    try:
        request = pb.StreamRequest.FromString(body)
    except ProtoDecodeError:
        request = None
    if request is not None and request.WhichOneof("kind") == "config":
        with contextlib.suppress(StreamError):
            validate_config(request.config)
    with contextlib.suppress(ProtoDecodeError):
        pb.ClipRequest.FromString(body)


FILE_SECONDS = 5.0  # decode_clip's budget here: more audio than this must be refused, not kept


def fuzz_file(body: bytes) -> None:
    if not body:
        return
    codec = (None, *FILE_CODECS)[body[0] % (len(FILE_CODECS) + 1)]
    try:
        clip = decode_clip(body[1:], RATE, "fuzz", FILE_SECONDS, codec, RATE)
    except StreamError:
        return
    mono = clip.mono
    if mono.dtype.name != "float32" or mono.ndim != 1:
        raise AssertionError(f"decode_clip returned {mono.dtype} {mono.shape}")
    if len(mono) > (FILE_SECONDS + 1) * RATE:  # resampling may add a few samples
        raise AssertionError(f"{len(mono)} samples decoded past a {FILE_SECONDS} s budget")


TARGETS = (fuzz_decode, fuzz_spec, fuzz_proto, fuzz_file)
# The codec field of a ClassifyClip file (None: let the server probe it), one file per entry.
FILE_CODECS = ("pcm16", "flac", "mp3:32k", "aac:32k", "opus:32k", "vorbis:64k", "sbc:64k", "aptx")


def one_input(data: bytes) -> None:
    if data:
        TARGETS[data[0] % len(TARGETS)](data[1:])


def seeds() -> list[bytes]:
    """Real inputs for each target: encoder output, specs, serialized requests."""
    import numpy as np

    from asc.codecs.stream import StreamEncoder
    from asc.signals import full_band_clip

    out = []
    for k, spec in enumerate(DECODE_SPECS):
        channels = 2 if spec == "aptx" else 1
        pcm = full_band_clip(RATE, 0.1, channels, seed=k).astype(np.float32)
        encoder = StreamEncoder(spec, RATE, channels)
        stream = encoder.encode(pcm) + encoder.finish()
        for split in (0, 1, 150):
            out.append(bytes([0, k, split]) + stream)
    out += [b"\x01" + s.encode() for s in SPEC_SEEDS]
    config = pb.StreamConfig(
        device_id="fuzz", codec="opus:32k", sample_rate=RATE, channels=1, window_seconds=2.0
    )
    packet = pb.AudioPacket(sequence=3, clip_id="c", payload=b"P\x03abc", end_of_clip=True)
    clip = pb.ClipRequest(clip_id="c", data=b"RIFF....WAVE", codec="pcm16", sample_rate=RATE)
    for message in (pb.StreamRequest(config=config), pb.StreamRequest(packet=packet), clip):
        out.append(b"\x02" + message.SerializeToString())
    out += file_seeds()
    return out


def file_seeds() -> list[bytes]:
    """Each container the engine writes, with the codec field naming it and left empty, and a
    7.1 Ogg Vorbis file (planar frames of 8 channels once crashed the process)."""
    import io

    import numpy as np
    import soundfile as sf

    from asc.codecs.clip import encode
    from asc.signals import full_band_clip

    out = []
    for k, spec in enumerate(FILE_CODECS):
        channels = 2 if spec == "aptx" else 1
        pcm = full_band_clip(RATE, 0.1, channels, seed=k).astype(np.float32)
        data = encode(pcm, RATE, spec)
        out += [bytes([3, k + 1]) + data, bytes([3, 0]) + data]
    buffer = io.BytesIO()
    sf.write(buffer, full_band_clip(RATE, 0.1, 8, seed=9), RATE, format="OGG", subtype="VORBIS")
    out.append(bytes([3, 0]) + buffer.getvalue())
    return out


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """A few byte-level edits of the kinds libFuzzer makes; the target byte is usually kept."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(7)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:  # flip a bit
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # an interesting byte value
            b[rng.randrange(len(b))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:  # insert random bytes
            b[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and len(b) > 2:  # delete a range
            end = min(len(b), pos + rng.randint(1, 64))
            del b[pos:end]
        elif op == 4 and b:  # duplicate a range
            start = rng.randrange(len(b))
            b[pos:pos] = b[start : start + rng.randint(1, 64)]
        elif op == 5 and len(b) > 1:  # truncate
            del b[rng.randrange(1, len(b)) :]
        elif op == 6 and (other := rng.choice(pool)):  # splice in a piece of another seed
            start = rng.randrange(len(other))
            b[pos:pos] = other[start : start + rng.randint(1, 256)]
    if data and b and rng.random() < 0.9:
        b[0] = data[0]
    return bytes(b)


def random_fuzz(seconds: float, seed: int) -> int:
    """The fallback: seeded random mutations of the seeds, for ``seconds``."""
    rng = random.Random(seed)
    pool = seeds()
    for s in pool:
        one_input(s)
    runs, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = mutate(rng.choice(pool), rng, pool)
        try:
            one_input(data)
        except BaseException:
            print(f"finding after {runs} runs (seed {seed}); input: {data.hex()}", flush=True)
            raise
        runs += 1
        if data and rng.random() < 0.05 and len(pool) < 2000:  # keep some mutants as seeds
            pool.append(data)
    print(f"Done {runs} runs in {seconds:.0f} second(s) (random mutation, seed {seed})")
    return 0


def main() -> int:
    if "--random" in sys.argv or atheris is None:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--random", action="store_true")
        parser.add_argument("--seconds", type=float, default=25.0)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--write-seeds", metavar="DIR")
        args, _ = parser.parse_known_args()
        _load_targets()
        if args.write_seeds:
            return write_seeds(Path(args.write_seeds))
        return random_fuzz(args.seconds, args.seed)
    if "--write-seeds" in sys.argv:
        _load_targets()
        return write_seeds(Path(sys.argv[sys.argv.index("--write-seeds") + 1]))
    with atheris.instrument_imports(include=["asc.codecs", "server.session"]):
        _load_targets()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()  # exits the process when libFuzzer is done
    return 0


def write_seeds(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seeds()):
        (folder / f"seed-{i:03d}").write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
