"""Every codec path on real signals through the real encoders and decoders."""

import numpy as np
import pytest

from asc.codecs import (
    CODECS,
    CodecError,
    DecodeError,
    StreamDecoder,
    StreamEncoder,
    decode,
    encode,
    parse_spec,
    resolve,
    roundtrip,
)
from asc.codecs.alignment import codec_delay, find_lag
from asc.codecs.measure import measure_roundtrip, noise_over_floor_db, power_spectrum, snr_db
from asc.signals import full_band_clip
from tests.conftest import RATE
from tests.test_codec_spec import ISSUE_SPECS


def _input(spec: str, clip, stereo_clip):
    return stereo_clip if parse_spec(spec).last.name == "he-aac-v2" else clip


@pytest.mark.parametrize("spec", ISSUE_SPECS)
def test_roundtrip_is_aligned_and_equal_in_length(spec, clip, stereo_clip):
    x = _input(spec, clip, stereo_clip)
    y = roundtrip(x, RATE, spec)
    assert y.shape == x.shape and y.dtype == np.float32
    # compare a stretch in the middle, allowing a lag either way
    margin = 2000
    lag, score = find_lag(x[margin:-margin], y, 2 * margin)
    assert abs(lag - margin) <= 1, f"{spec}: output is {lag - margin} samples off"
    assert score > 0.5, f"{spec}: output barely resembles the input (correlation {score:.2f})"


@pytest.mark.parametrize(
    "spec", [s for s in ISSUE_SPECS if CODECS[parse_spec(s).last.name].cbr and ">" not in s]
)
def test_cbr_codecs_land_near_the_asked_bitrate(spec, stereo_clip, clip):
    x = _input(spec, clip, stereo_clip)
    x = np.concatenate([x, x])  # 6 s, so end-of-stream padding weighs little
    (r,) = resolve(spec, RATE, x.shape[1])
    report = measure_roundtrip(x, RATE, spec)
    asked = r.bitrate / 1000
    assert abs(report.kbps - asked) <= 0.15 * asked, f"{spec}: {report.kbps:.1f} kbps for {asked}"


@pytest.mark.parametrize("spec", ["pcm16", "flac"])
@pytest.mark.parametrize("channels", [1, 2])
def test_lossless_paths_are_bit_exact(spec, channels):
    rng = np.random.default_rng(7)
    x = (rng.integers(-32768, 32768, size=(RATE + 123, channels)) / 32768).astype(np.float32)
    assert np.array_equal(roundtrip(x, RATE, spec), x)
    y, rate = decode(encode(x, RATE, spec), spec=spec)
    assert rate == RATE and np.array_equal(y, x)


@pytest.mark.parametrize(
    "spec",
    [
        "mp3:128k,cutoff=14k",
        "aac:128k,cutoff=16k",
        "fdk-aac:128k,cutoff=18k",
        "vorbis:128k,cutoff=14k",
        "opus:64k,cutoff=12k",
    ],
)
def test_cutoff_leaves_the_band_above_it_30_db_down(spec, white_noise):
    cutoff = resolve(spec, RATE, 1)[0].cutoff
    y = roundtrip(white_noise, RATE, spec)
    freqs, power = power_spectrum(y, RATE)
    below = power[(freqs > 0.5 * cutoff) & (freqs < 0.9 * cutoff)].mean()
    above = power[(freqs > 1.08 * cutoff) & (freqs < min(1.4 * cutoff, RATE / 2 - 500))].mean()
    assert 10 * np.log10(below / above) >= 30, f"{spec}: only {10 * np.log10(below / above):.1f} dB"


@pytest.mark.parametrize("spec", ISSUE_SPECS)
def test_streaming_in_pieces_equals_the_whole_clip(spec, clip, stereo_clip):
    x = _input(spec, clip, stereo_clip)
    whole = roundtrip(x, RATE, spec)
    rng = np.random.default_rng(11)
    encoder = StreamEncoder(spec, RATE, x.shape[1])
    decoder = StreamDecoder(spec, RATE, x.shape[1], codec_delay(spec, RATE, x.shape[1]))
    data, start = b"", 0
    while start < len(x):  # PCM in uneven chunks, as a microphone delivers it
        step = int(rng.integers(1, 5000))
        data += encoder.encode(x[start : start + step])
        start += step
    data += encoder.finish()
    parts, pos = [], 0
    while pos < len(data):  # bytes split anywhere, as transport messages may cut them
        step = int(rng.integers(1, 700))
        parts.append(decoder.feed(data[pos : pos + step]))
        pos += step
    parts.append(decoder.finish())
    y = np.concatenate(parts)
    assert y.shape == whole.shape
    assert snr_db(whole, y) > 40, f"{spec}: streamed differs from whole clip"


@pytest.mark.parametrize("spec", ISSUE_SPECS)
def test_container_file_decodes_to_the_same_audio(spec, clip, stereo_clip):
    x = _input(spec, clip, stereo_clip)
    data = encode(x, RATE, spec)
    y, rate = decode(data, rate=RATE, channels=x.shape[1], spec=spec)
    assert rate == RATE and len(y) >= len(x) - 2048
    reference = roundtrip(x, RATE, spec)
    lag, score = find_lag(reference[4000:-4000], y, 12000)
    # the container may keep the codec's priming samples; after aligning, the audio matches
    segment = y[lag : lag + len(reference) - 8000]
    assert score > 0.99 and snr_db(reference[4000:-4000], segment) > 25, spec


@pytest.mark.parametrize("spec", ISSUE_SPECS)
def test_corrupt_and_truncated_streams_raise_the_engine_error(spec, clip, stereo_clip):
    x = _input(spec, clip, stereo_clip)[: RATE // 2]
    channels = x.shape[1]
    delay = codec_delay(spec, RATE, channels)
    encoder = StreamEncoder(spec, RATE, channels)
    data = encoder.encode(x) + encoder.finish()

    with pytest.raises(DecodeError):  # garbage where the frames should be
        StreamDecoder(spec, RATE, channels, delay).feed(bytes(range(256)) * 4)

    decoder = StreamDecoder(spec, RATE, channels, delay)  # cut in the middle
    decoder.feed(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="truncated"):
        decoder.finish()

    rng = np.random.default_rng(5)  # flipped bytes inside packets: an error or audio, no crash
    for _ in range(20):
        damaged = bytearray(data)
        for i in rng.integers(len(damaged) // 4, len(damaged), size=8):
            damaged[i] ^= 0xFF
        decoder = StreamDecoder(spec, RATE, channels, delay)
        try:
            out = decoder.feed(bytes(damaged))
            out = np.concatenate([out, decoder.finish()])
            assert out.dtype == np.float32
        except CodecError:
            pass


@pytest.mark.parametrize("spec", ["mp3:64k", "aac:64k", "opus:32k", "vorbis:128k", "flac"])
def test_corrupt_files_raise_the_engine_error(spec, clip):
    with pytest.raises(DecodeError):
        decode(b"\x00\x01garbage" * 50)
    with pytest.raises(DecodeError):
        decode(b"")
    data = encode(clip, RATE, spec)
    try:  # a file cut short decodes what it holds, or says it cannot
        y, _ = decode(data[: len(data) // 3])
        assert 0 < len(y) < len(clip)
    except DecodeError:
        pass


def test_stream_decoder_rejects_a_missing_header():
    encoder = StreamEncoder("mp3:64k", RATE, 1)
    data = encoder.encode(np.zeros((RATE, 1), np.float32)) + encoder.finish()
    header_end = 2 + data[1]
    decoder = StreamDecoder("mp3:64k", RATE, 1, codec_delay("mp3:64k", RATE, 1))
    with pytest.raises(DecodeError, match="header"):
        decoder.feed(data[header_end:])


def test_bad_audio_input_is_refused(clip):
    with pytest.raises(CodecError, match="channel"):
        StreamEncoder("opus:32k", RATE, 2).encode(clip)
    with pytest.raises(CodecError, match="NaN"):
        roundtrip(np.full((100, 1), np.nan, np.float32), RATE, "mp3:64k")
    with pytest.raises(CodecError, match="floating point"):
        roundtrip(np.zeros((100, 1), np.int16), RATE, "mp3:64k")


def test_a_long_clip_in_one_call_codes_through_vorbis():
    # libvorbis once overflowed its stack on a minute of audio submitted in one call.
    x = full_band_clip(44100, 60.0, 1, seed=11)
    y = roundtrip(x, 44100, "vorbis:128k")
    assert y.shape == x.shape and np.corrcoef(x[:, 0], y[:, 0])[0, 1] > 0.95


def test_noise_over_floor_reads_an_added_noise_against_the_recordings_own():
    """A known noise 6 dB under a recording's steady floor reads -6 dB in every band; the same
    noise 6 dB over it reads +6, and a bit-exact copy reads far below."""
    rng = np.random.default_rng(3)
    rate, edges = 44100, [0.0, 4000.0, 8000.0, 16000.0, 22050.0]
    floor = 0.01 * rng.standard_normal(rate * 3)
    events = np.zeros_like(floor)
    events[rate : rate + rate // 2] = 0.5 * rng.standard_normal(rate // 2)  # loud, then quiet
    original = (floor + events).astype(np.float32)
    for gain_db in (-6.0, 6.0):
        noise = 0.01 * 10 ** (gain_db / 20) * rng.standard_normal(len(original))
        rise = noise_over_floor_db(original, original + noise.astype(np.float32), rate, edges)
        assert rise == pytest.approx([gain_db] * 4, abs=1.0)
    assert np.all(noise_over_floor_db(original, original.copy(), rate, edges) < -100)


def test_noise_over_floor_tells_a_lowpass_from_a_transparent_codec(white_noise):
    """mp3:32k empties the top band (noise as loud as the signal cut, over the floor); a pcm16
    roundtrip adds only rounding, far under it."""
    edges = [0.0, 8000.0, 14000.0, RATE / 2]
    mp3 = measure_roundtrip(white_noise, RATE, "mp3:32k").decoded
    pcm = measure_roundtrip(white_noise, RATE, "pcm16").decoded
    assert noise_over_floor_db(white_noise, mp3, RATE, edges)[-1] > -1.0
    assert np.all(noise_over_floor_db(white_noise, pcm, RATE, edges) < -40.0)


@pytest.mark.parametrize(
    ("spec", "integer"),
    [
        ("pcm16", True),
        ("flac", True),
        ("sbc:bitpool=35", True),
        ("aptx", True),
        ("mp3:64k", False),
        ("aac:64k", False),
        ("opus:32k", False),
        ("vorbis:64k", False),
    ],
)
def test_a_stream_decoder_says_whether_its_samples_came_as_integers(spec, integer, clip):
    """The server skips its NaN and magnitude check only where this says integers."""
    encoder = StreamEncoder(spec, RATE, 1)
    decoder = StreamDecoder(spec, RATE, 1, codec_delay(spec, RATE, 1))
    assert not decoder.integer_samples  # nothing decoded yet: nothing vouched for
    decoder.feed(encoder.encode(clip) + encoder.finish())
    assert decoder.integer_samples is integer


def test_aptx_codes_two_equal_channels_apart(clip):
    """aptX is stereo only, so a mono wave goes out on both channels; its sync rule forces one
    channel's parity every eighth codeword, so the two channels' codings part there and each
    adds noise of its own. A mono copy (their mean) then lies on neither coding's quantiser,
    one reason no grid test reaches aptX (docs/reports.md)."""
    both = np.repeat(clip, 2, axis=1)
    y = roundtrip(both, RATE, "aptx")
    noise = np.mean((y[:, 0] - both[:, 0]) ** 2)
    apart = np.mean((y[:, 0] - y[:, 1]) ** 2)
    # apart as much as two codings whose noises do not share a sample: about 3 dB over one's
    assert 10 * np.log10(apart / noise) > 1.5
