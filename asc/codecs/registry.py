"""What each codec is, what it accepts, and whether this machine can run it.

One table drives validation, ``asc-codec list`` and the backends, so a limit is stated once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass, field
from functools import cache

from asc.codecs.errors import CodecError, CodecUnavailable
from asc.codecs.spec import CodecSpec, Stage, format_quantity, parse_quantity, parse_spec

MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
HE_AAC_RATES = (16000, 22050, 24000, 32000, 44100, 48000)
SBC_RATES = (16000, 32000, 44100, 48000)
MP2_RATES = (16000, 22050, 24000, 32000, 44100, 48000)
# Layer II codes only these whole-stream bitrates (kbit/s): MPEG-1's at 32 kHz and above, the
# lower sampling frequencies' (MPEG-2) below; FFmpeg refuses any other.
MP2_KBPS = (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384)
MP2_LSF_KBPS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
AC3_RATES = (32000, 44100, 48000)
APTX_RATES = (8000, 16000, 24000, 32000, 44100, 48000)
OPUS_BANDWIDTHS = (4000, 6000, 8000, 12000, 20000)
OPUS_VBR_MODES = ("on", "off", "constrained")

# SBC frames as FFmpeg's encoder lays them out with the A2DP high-quality settings it picks
# when no bitrate is forced: 8 subbands, 16 blocks, loudness allocation, joint stereo.
SBC_SUBBANDS = 8
SBC_BLOCKS = 16


def sbc_frame_bytes(bitpool: int, channels: int) -> int:
    joint = 1 if channels == 2 else 0
    return (
        4
        + (4 * SBC_SUBBANDS * channels) // 8
        + (SBC_BLOCKS * bitpool + joint * SBC_SUBBANDS + 7) // 8
    )


def sbc_bitrate(bitpool: int, rate: int, channels: int) -> float:
    return 8 * sbc_frame_bytes(bitpool, channels) * rate / (SBC_SUBBANDS * SBC_BLOCKS)


def sbc_max_bitpool(channels: int) -> int:
    return 16 * SBC_SUBBANDS if channels == 1 else 250


@dataclass(frozen=True)
class CodecInfo:
    name: str
    family: str
    lossless: bool
    backend: str  # "pyav", "fdk" or "vorbis": who encodes; FFmpeg (PyAV) always decodes
    summary: str
    container: str  # file extension of the whole-clip container
    bitrate: tuple[int, int] | None = None  # per-channel range in bit/s; None: not settable
    max_total: int | None = None  # a cap on the whole stream's bitrate, whatever the channels
    default_bitrate: int | None = None  # per channel
    rates: tuple[int, ...] | None = None  # None: any rate from 8 kHz to 192 kHz
    channels: tuple[int, ...] = (1, 2)
    cutoff: str = "none"  # "any", "discrete" (opus bandwidths) or "none"
    params: tuple[str, ...] = field(default=())
    cbr: bool = False  # the achieved bitrate should land on the asked one


CODECS: dict[str, CodecInfo] = {
    c.name: c
    for c in [
        CodecInfo("pcm16", "lossless", True, "pyav", "16-bit PCM, the uncoded reference", "wav"),
        CodecInfo("flac", "lossless", True, "pyav", "FLAC lossless compression", "flac"),
        CodecInfo(
            "opus",
            "opus",
            False,
            "pyav",
            "Opus (libopus) at 48 kHz, resampled in and out",
            "opus",
            bitrate=(6000, 256000),
            max_total=510000,
            default_bitrate=32000,
            cutoff="discrete",
            params=("vbr",),
            cbr=True,
        ),
        CodecInfo(
            "mp3",
            "mp3",
            False,
            "pyav",
            "MPEG-1/2 Layer III (LAME), CBR",
            "mp3",
            bitrate=(8000, 320000),
            max_total=320000,
            default_bitrate=64000,
            rates=MP3_RATES,
            cutoff="any",
            cbr=True,
        ),
        CodecInfo(
            "aac",
            "aac",
            False,
            "pyav",
            "AAC-LC (FFmpeg's native encoder), ADTS",
            "aac",
            bitrate=(8000, 256000),
            default_bitrate=64000,
            rates=AAC_RATES,
            cutoff="any",
            cbr=True,
        ),
        CodecInfo(
            "fdk-aac",
            "aac",
            False,
            "fdk",
            "AAC-LC (libfdk-aac), CBR, ADTS",
            "aac",
            bitrate=(8000, 256000),
            default_bitrate=128000,
            rates=AAC_RATES,
            cutoff="any",
            cbr=True,
        ),
        CodecInfo(
            "he-aac",
            "he-aac",
            False,
            "fdk",
            "HE-AAC v1: AAC-LC + SBR (libfdk-aac), ADTS",
            "aac",
            bitrate=(8000, 64000),
            default_bitrate=32000,
            rates=HE_AAC_RATES,
            cbr=True,
        ),
        CodecInfo(
            "he-aac-v2",
            "he-aac",
            False,
            "fdk",
            "HE-AAC v2: + parametric stereo (libfdk-aac)",
            "aac",
            bitrate=(4000, 32000),
            default_bitrate=12000,
            rates=HE_AAC_RATES,
            channels=(2,),
            cbr=True,
        ),
        CodecInfo(
            "vorbis",
            "vorbis",
            False,
            "vorbis",
            "Ogg Vorbis (libvorbis), managed bitrate",
            "ogg",
            bitrate=(16000, 256000),
            default_bitrate=128000,
            cutoff="any",
        ),
        CodecInfo(
            "sbc",
            "sbc",
            False,
            "pyav",
            "Bluetooth SBC, 8 subbands, 16 blocks, by bitpool",
            "sbc",
            bitrate=(1000, 400000),
            rates=SBC_RATES,
            params=("bitpool",),
            cbr=True,
        ),
        CodecInfo(
            "aptx",
            "aptx",
            False,
            "pyav",
            "Bluetooth aptX, fixed 4:1 on 16-bit stereo",
            "aptx",
            rates=APTX_RATES,
        ),
        CodecInfo(
            "mp2",
            "mp2",
            False,
            "pyav",
            "MPEG-1/2 Layer II (broadcast radio, DAB), CBR",
            "mp2",
            bitrate=(8000, 192000),
            max_total=384000,
            default_bitrate=96000,
            rates=MP2_RATES,
            cbr=True,
        ),
        CodecInfo(
            "ac3",
            "ac3",
            False,
            "pyav",
            "ATSC A/52 (AC-3, Dolby Digital), CBR",
            "ac3",
            bitrate=(32000, 320000),
            max_total=640000,
            default_bitrate=96000,
            rates=AC3_RATES,
            cbr=True,
        ),
    ]
}

# The codec paths of both papers and of the Bluetooth-then-cellular scenario: what the tests
# round-trip, the benchmarks time and the demo plays (he-aac-v2 needs stereo input).
REFERENCE_SPECS = (
    "pcm16",
    "flac",
    "opus:32k",
    "opus:64k",
    "mp3:32k",
    "mp3:64k",
    "mp3:128k,cutoff=14k",
    "aac:32k",
    "aac:64k",
    "aac:128k,cutoff=16k",
    "he-aac:16k",
    "he-aac:32k",
    "he-aac-v2:24k",
    "fdk-aac:128k,cutoff=18k",
    "vorbis:128k",
    "sbc:64k",
    "sbc:bitpool=53",
    "aptx",
    "sbc:bitpool=53>aac:64k",
)

# The lossy detector's family head, in its order. mp2 and ac3 are absent: the engine carries them
# so that training can code copies through codecs a device never streams (domain
# generalisation to unseen codecs); the detector was never taught them.
CODEC_FAMILIES = ("lossless", "mp3", "aac", "he-aac", "opus", "vorbis", "sbc", "aptx")

_PYAV_NAMES = {  # spec name -> (FFmpeg encoder, FFmpeg decoder)
    "pcm16": ("pcm_s16le", "pcm_s16le"),
    "flac": ("flac", "flac"),
    "opus": ("libopus", "opus"),
    "mp3": ("libmp3lame", "mp3float"),
    "aac": ("aac", "aac"),
    "sbc": ("sbc", "sbc"),
    "aptx": ("aptx", "aptx"),
    "mp2": ("mp2", "mp2"),
    "ac3": ("ac3", "ac3"),
    "fdk-aac": (None, "aac"),
    "he-aac": (None, "aac"),
    "he-aac-v2": (None, "aac"),
    "vorbis": (None, "vorbis"),
}


def ffmpeg_names(name: str) -> tuple[str | None, str]:
    return _PYAV_NAMES[name]


def _pyav_missing(name: str, mode: str) -> str | None:
    import av

    try:
        av.Codec(name, mode)
    except Exception:  # PyAV raises different types across versions
        kind = "encoder" if mode == "w" else "decoder"
        return f"PyAV's FFmpeg has no {name} {kind}"
    return None


@cache
def fdk_library() -> ctypes.CDLL | None:
    """libfdk-aac, or None; ASC_FDK_AAC_LIBRARY points at a copy outside the linker's path."""
    path = os.environ.get("ASC_FDK_AAC_LIBRARY") or ctypes.util.find_library("fdk-aac")
    path = path or "libfdk-aac.so.2"
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


@cache
def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot run here, or None when it can."""
    info = CODECS[name]
    encoder, decoder = _PYAV_NAMES[name]
    if info.backend == "pyav" and encoder and (why := _pyav_missing(encoder, "w")):
        return why
    if why := _pyav_missing(decoder, "r"):
        return why
    if info.backend == "fdk" and fdk_library() is None:
        where = os.environ.get("ASC_FDK_AAC_LIBRARY", "libfdk-aac.so.2")
        return (
            f"{where} cannot be loaded (Debian package libfdk-aac2, libfdk-aac2t64 on Debian 13, "
            "from the non-free component; 'make setup' installs it)"
        )
    if info.backend == "vorbis":
        try:
            import pyogg
        except ImportError:
            return "the pyogg package is not installed"
        if not (pyogg.PYOGG_VORBIS_AVAIL and pyogg.PYOGG_OGG_AVAIL):
            return "libvorbis/libogg are not installed (Debian libvorbisenc2, libogg0)"
    return None


def lookup(name: str) -> CodecInfo:
    info = CODECS.get(name)
    if info is None:
        known = ", ".join(CODECS)
        raise CodecError(f"unknown codec {name!r}; known codecs: {known}")
    return info


@dataclass(frozen=True)
class Resolved:
    """A stage checked against its codec for one input format, with every default filled in."""

    stage: Stage
    info: CodecInfo
    rate: int
    channels: int
    bitrate: int | None  # total bit/s asked of the encoder (None: not settable)
    cutoff: int | None
    bitpool: int | None = None
    vbr: str | None = None

    @property
    def name(self) -> str:
        return self.info.name


def _resolve_sbc(stage: Stage, rate: int, channels: int) -> tuple[int, int]:
    top = sbc_max_bitpool(channels)
    if stage.param("bitpool") is not None:
        if stage.bitrate is not None:
            raise CodecError(f"{stage}: give sbc either a bitrate or a bitpool, not both")
        try:
            bitpool = int(stage.param("bitpool") or "")
        except ValueError:
            raise CodecError(f"{stage}: bitpool must be an integer") from None
        if not 2 <= bitpool <= top:
            raise CodecError(f"{stage}: sbc bitpool {bitpool} is outside 2..{top}")
    else:
        target = stage.bitrate if stage.bitrate is not None else 328000
        lo, hi = sbc_bitrate(2, rate, channels), sbc_bitrate(top, rate, channels)
        if not lo * 0.9 <= target <= hi * 1.1:
            raise CodecError(
                f"{stage}: bitrate {format_quantity(target)} is out of range for sbc at {rate} Hz "
                f"with {channels} channel(s) ({lo / 1000:.0f}k..{hi / 1000:.0f}k)"
            )
        bitpool = min(range(2, top + 1), key=lambda b: abs(sbc_bitrate(b, rate, channels) - target))
    return bitpool, round(sbc_bitrate(bitpool, rate, channels))


def _check_format(stage: Stage, info: CodecInfo, rate: int, channels: int) -> None:
    if channels not in info.channels:
        need = " or ".join(str(c) for c in info.channels)
        raise CodecError(f"{stage}: {info.name} needs {need} channel(s), got {channels}")
    if info.rates is not None and rate not in info.rates:
        rates = ", ".join(str(r) for r in info.rates)
        raise CodecError(f"{stage}: sample rate {rate} Hz is unsupported by {info.name} ({rates})")
    if info.rates is None and not 8000 <= rate <= 192000:
        raise CodecError(f"{stage}: sample rate {rate} Hz is outside 8000..192000")


def _check_settings(stage: Stage, info: CodecInfo) -> None:
    unknown = [k for k, _ in stage.params if k not in (*info.params, "cutoff")]
    if unknown:
        allowed = (
            ", ".join((*info.params, "cutoff")) if info.cutoff != "none" else ", ".join(info.params)
        )
        raise CodecError(
            f"{stage}: unknown setting {unknown[0]!r} for {info.name}"
            + (f" (allowed: {allowed})" if allowed else " (it takes none)")
        )


def _resolve_cutoff(stage: Stage, info: CodecInfo, rate: int) -> int | None:
    if (text := stage.param("cutoff")) is None:
        return None
    if info.cutoff == "none":
        raise CodecError(f"{stage}: {info.name} has no lowpass setting; drop cutoff=")
    cutoff = parse_quantity(text, f"cutoff of {info.name}")
    if info.cutoff == "discrete" and cutoff not in OPUS_BANDWIDTHS:
        allowed = ", ".join(format_quantity(b) for b in OPUS_BANDWIDTHS)
        raise CodecError(f"{stage}: opus cutoff must be one of its bandwidths: {allowed}")
    if info.cutoff == "any" and not 1000 <= cutoff < rate // 2:
        raise CodecError(f"{stage}: cutoff {cutoff} Hz must lie in 1000..{rate // 2 - 1} Hz")
    return cutoff


def _resolve_bitrate(stage: Stage, info: CodecInfo, rate: int, channels: int) -> int | None:
    """The total bit/s asked of the encoder: the stage's, or the codec's default per channel
    (capped at the codec's whole-stream limit); None for fixed-rate codecs."""
    if info.bitrate is None:
        if stage.bitrate is not None:
            raise CodecError(f"{stage}: {info.name} has a fixed bitrate; drop the bitrate")
        return None
    lo, hi = info.bitrate[0] * channels, info.bitrate[1] * channels
    hi = min(hi, info.max_total or hi)
    bitrate = stage.bitrate if stage.bitrate is not None else info.default_bitrate * channels
    bitrate = min(bitrate, hi) if stage.bitrate is None else bitrate
    if not lo <= bitrate <= hi:
        raise CodecError(
            f"{stage}: bitrate {format_quantity(bitrate)} is out of range for {info.name} "
            f"with {channels} channel(s) ({format_quantity(lo)}..{format_quantity(hi)})"
        )
    if info.name == "mp3" and rate >= 32000 and bitrate < 32000:
        raise CodecError(f"{stage}: mp3 at {rate} Hz needs at least 32k (MPEG-1 layer III)")
    if info.name == "mp3" and rate < 32000 and bitrate > 160000:
        raise CodecError(f"{stage}: mp3 at {rate} Hz allows at most 160k (MPEG-2 layer III)")
    table = MP2_KBPS if rate >= 32000 else MP2_LSF_KBPS
    if info.name == "mp2" and bitrate not in [k * 1000 for k in table]:
        allowed = ", ".join(f"{k}k" for k in table)
        raise CodecError(f"{stage}: mp2 at {rate} Hz codes only these bitrates: {allowed}")
    return bitrate


def _resolve_vbr(stage: Stage, info: CodecInfo) -> str | None:
    if info.name != "opus":
        return None
    vbr = stage.param("vbr") or "on"
    if vbr not in OPUS_VBR_MODES:
        raise CodecError(f"{stage}: opus vbr must be one of {', '.join(OPUS_VBR_MODES)}")
    return vbr


def resolve_stage(stage: Stage, rate: int, channels: int) -> Resolved:
    """Check one stage for ``rate`` Hz and ``channels``; raise a CodecError naming the bad part.

    The checks run in a fixed order (format, settings, cutoff, bitrate), so a stage with
    several faults always reports the same one.
    """
    info = lookup(stage.name)
    _check_format(stage, info, rate, channels)
    _check_settings(stage, info)
    cutoff = _resolve_cutoff(stage, info, rate)
    if info.name == "sbc":
        bitpool, bitrate = _resolve_sbc(stage, rate, channels)
        return Resolved(stage, info, rate, channels, bitrate, None, bitpool=bitpool)
    bitrate = _resolve_bitrate(stage, info, rate, channels)
    vbr = _resolve_vbr(stage, info)
    return Resolved(stage, info, rate, channels, bitrate, cutoff, vbr=vbr)


def resolve(spec: str | CodecSpec, rate: int, channels: int) -> list[Resolved]:
    """Validate every stage of a chain and check that each codec can run on this machine."""
    parsed = parse_spec(spec)
    stages = [resolve_stage(stage, rate, channels) for stage in parsed.stages]
    for r in stages:
        if (why := unavailable_reason(r.name)) is not None:
            raise CodecUnavailable(f"{r.stage}: codec {r.name} is unavailable here: {why}")
    return stages
