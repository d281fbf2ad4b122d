import pytest

from asc.codecs import CodecError, parse_spec, resolve
from asc.codecs.registry import REFERENCE_SPECS, sbc_bitrate

# The reference paths, and the two codecs the engine carries for training only (no device streams
# them by default, but they are real paths all the same).
ISSUE_SPECS = [*REFERENCE_SPECS, "mp2:64k", "ac3:64k"]


@pytest.mark.parametrize("text", ISSUE_SPECS)
def test_canonical_form_parses_back_to_itself(text):
    spec = parse_spec(text)
    assert str(spec) == text
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize("text", ISSUE_SPECS)
def test_every_issue_spec_validates(text):
    channels = 2 if text.startswith("he-aac-v2") else 1
    stages = resolve(text, 44100, channels)
    assert len(stages) == text.count(">") + 1


def test_spelling_variants_share_one_canonical_form():
    assert str(parse_spec(" MP3:128000 , cutoff=14000 ")) == "mp3:128k,cutoff=14000"
    assert str(parse_spec("opus:32k").last) == "opus:32k"


@pytest.mark.parametrize(
    ("text", "rate", "channels", "needle"),
    [
        ("foo:32k", 44100, 1, "unknown codec 'foo'"),
        ("mp3:1k", 44100, 1, "out of range for mp3"),
        ("opus:900k", 44100, 2, "out of range for opus"),
        ("sbc:64k", 22050, 1, "sample rate 22050 Hz is unsupported by sbc"),
        ("he-aac-v2:24k", 44100, 1, "needs 2 channel(s)"),
        ("sbc:64k,cutoff=10k", 44100, 1, "sbc has no lowpass setting"),
        ("aptx:300k", 44100, 1, "fixed bitrate"),
        ("flac:700k", 44100, 1, "fixed bitrate"),
        ("opus:32k,cutoff=14k", 44100, 1, "opus cutoff must be one of"),
        ("mp3:64k,cutoff=30k", 44100, 1, "cutoff 30000 Hz must lie in"),
        ("sbc:64k,bitpool=20", 44100, 1, "either a bitrate or a bitpool"),
        ("sbc:bitpool=300", 44100, 1, "bitpool 300 is outside"),
        ("mp3:64k,quality=2", 44100, 1, "unknown setting 'quality'"),
        ("mp2:40k", 44100, 1, "mp2 at 44100 Hz codes only these bitrates: 32k, 48k"),
        ("mp2:192k", 16000, 1, "mp2 at 16000 Hz codes only these bitrates: 8k"),
        ("ac3:64k", 22050, 1, "sample rate 22050 Hz is unsupported by ac3"),
        ("mp3:fast", 44100, 1, "is not a number"),
        ("mp3:64k>", 44100, 1, "empty codec stage"),
        ("", 44100, 1, "empty codec spec"),
        ("aac:64k,64k", 44100, 1, "only the first item"),
        ("opus:32k,vbr=maybe", 44100, 1, "opus vbr must be one of"),
    ],
)
def test_bad_specs_name_the_bad_part(text, rate, channels, needle):
    with pytest.raises(CodecError) as info:
        resolve(text, rate, channels)
    assert needle in str(info.value)


def test_sbc_bitrate_picks_the_closest_bitpool():
    (r,) = resolve("sbc:64k", 44100, 1)
    for bitpool in (r.bitpool - 1, r.bitpool + 1):
        assert abs(sbc_bitrate(bitpool, 44100, 1) - 64000) >= abs(r.bitrate - 64000)


def test_a2dp_high_quality_bitpool_is_328k_in_joint_stereo():
    (r,) = resolve("sbc:bitpool=53", 44100, 2)
    assert round(r.bitrate / 1000) == 328
