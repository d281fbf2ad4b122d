"""Which Kitchen20 clips can stand for lossless audio, and why each of the others cannot.

Kitchen20's Freesound clips are stored as FLAC, but a FLAC is only as lossless as the upload it
was cut from. Five reasons keep a clip off the lossless side of the detector's data:

- *lossy upload*: ``freesound_file`` ends in a lossy container's extension (.mp3, .m4a, .ogg,
  ...): the audio went through a codec before it reached Kitchen20 (31 clips: 21 .mp3, 5 .m4a
  with about 16.2 kHz left, 5 .ogg);
- *band-limited*: the clip's effective bandwidth (the highest frequency within 60 dB of the
  spectrum's peak, ``asc.codecs.measure.effective_bandwidth``) lies below 16.5 kHz, the lowpass
  of a codec at a middling bitrate. About 18 % of the .wav uploads do; whether from a lossy past
  or a recorder with a low sample rate cannot be told, so none of them counts as lossless.
- *cut to the 16-bit floor*: in at least 15 % of the frames whose sound reaches 12 kHz, the
  spectrum falls by 25 dB or more within 1 kHz to nothing but 16-bit rounding noise, somewhere
  between 12 and 20.5 kHz. A microphone's own noise lies far above that floor, so a cliff onto
  it is a lowpass applied in the digital domain: an encoder's. It catches 17 of the 21 .mp3
  uploads by their audio alone (median cliffs at 15.7 to 18.9 kHz), and
  7 clips of .wav uploads that pass the bandwidth rule (cliffs at 13.6 to 19.6 kHz), among them
  3-27367-A-3, which the detector trained without this rule calls lossy. Clips cut from one
  upload are judged one by one: a quiet cut of a file measures band-limited while its loud cuts
  keep their full band and show no cliff (19 such clips in Kitchen20).
- *steep fall*: the clip's mean spectrum falls by 30 dB or more within 1 kHz, anywhere from
  1 kHz to 2 kHz under Nyquist (clear of the recorder's anti-alias filter), onto a floor that
  noise added after the fall (dither, often shaped to rise towards Nyquist) holds within 60 dB
  of the peak, which hides the band limit from the bandwidth rule. A sound's own spectrum does
  not drop that far that fast when averaged over seconds; a digital lowpass does. 12 clips of
  .wav uploads, among them both clips of recording 318615, whose sound ends at 3.8 kHz (an
  8 kHz recording brought to 44.1 kHz) and which the detector trained without this rule
  called lossy, and three cuts of one upload cut at 16.1 to 16.3 kHz,
  MP3's lowpass at 128 kbit/s. The same measure finds 16 of the 21 .mp3 and all 5 .m4a
  uploads, and none of 40 tracks of the generated lossless corpus (the test's).
- *upload cut by a digital lowpass*: another clip of the same upload is cut to the 16-bit floor
  or falls steeply. A lowpass in the digital domain was applied to the whole file, but a cut
  whose sound is quiet near the edge hides it (0-144185-A-18 falls 22 dB where its sibling
  0-144185-B-18 falls 33 dB). The bandwidth rule's finds do not carry: a quiet cut of a file
  measures band-limited while its loud cuts keep their full band. 2 clips.

Kept free of torch: the report lists the exclusions without loading a model.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from asc.audio import load
from asc.codecs.measure import effective_bandwidth
from training.detector_data import LosslessDataError

META = "meta.csv"
LOSSY_UPLOADS = frozenset({".mp3", ".m4a", ".mp4", ".aac", ".ogg", ".oga", ".opus", ".wma"})
MIN_BANDWIDTH_HZ = 16500.0
BANDWIDTH_FLOOR_DB = 60.0
CLIFF_FRAME = 2048  # samples per frame (46 ms at 44.1 kHz), Hann windows at 50 % overlap
CLIFF_LOWEST_HZ = 12000.0  # below this a drop is the sound's own, not a codec's lowpass
CLIFF_MARGIN_HZ = 1500.0  # above Nyquist less this, a cliff is the recorder's anti-alias filter
CLIFF_WIDTH_HZ = 1000.0  # the spans either side of the edge whose levels are compared
CLIFF_DB = 25.0
CLIFF_OVER_FLOOR_DB = 10.0  # the edge: the highest frequency this far over the 16-bit floor
MIN_CLIFF_SHARE = 0.15
MIN_CLIFF_FRAMES = 10  # frames reaching 12 kHz needed before a share means anything
FALL_DB = 30.0  # the drop of the mean spectrum within CLIFF_WIDTH_HZ that only a lowpass makes
FALL_LOWEST_HZ = 1000.0  # below this the spans either side hold too few bins to compare
FALL_TOP_MARGIN_HZ = 1000.0  # the span above an edge ends this far under Nyquist, clear of the
# recorder's anti-alias filter (at 44.1 kHz it falls from about 20 kHz towards Nyquist)
CUT_TO_FLOOR = "cut to the 16-bit floor"  # the reasons that find a digital lowpass, which
STEEP_FALL = "steep fall"  # carries to the upload's other cuts


class Kitchen20Error(LosslessDataError):
    """A folder that is not Kitchen20's Freesound part as ``meta.csv`` describes it."""


@dataclass(frozen=True)
class RealClip:
    """A Kitchen20 clip kept as lossless: its audio, class, recording and measured bandwidth."""

    path: Path
    label: str
    recording: str  # source_id: the Freesound sound the clip was cut from
    upload: str  # freesound_file
    bandwidth_hz: float


@dataclass(frozen=True)
class Exclusion:
    """A clip left off the lossless side, and why."""

    filename: str
    label: str
    recording: str
    upload: str
    reason: str  # "lossy upload (.mp3)", "band-limited (15.2 kHz < 16.5 kHz)", ...
    bandwidth_hz: float

    def to_dict(self) -> dict:
        return asdict(self) | {"bandwidth_hz": round(self.bandwidth_hz)}


@dataclass(frozen=True)
class SteepFall:
    """The mean spectrum's steepest fall: its drop in dB within 1 kHz, and where."""

    db: float
    hz: float


def is_kitchen20(root: Path) -> bool:
    """A folder whose meta.csv names each clip's Freesound upload (``freesound_file``)."""
    meta = root / META
    if not meta.is_file():
        return False
    with open(meta, newline="") as f:
        header = next(csv.reader(f), [])
    return {"filename", "label", "source_id", "freesound_file"} <= set(header)


def upload_suffix(upload: str) -> str:
    return Path(upload).suffix.lower()


@dataclass(frozen=True)
class FloorCliff:
    """How often a clip's spectrum drops onto the 16-bit floor, and where."""

    share: float  # of the frames whose sound reaches 12 kHz
    hz: float  # median frequency of those cliffs (0: none)


def sixteen_bit_floor_db(channels: int) -> float:
    """Power per bin of 16-bit rounding noise (uniform, variance q^2 / 12) in one Hann frame
    of the mean of ``channels`` channels, in the units of ``floor_cliff``'s spectra."""
    variance = (1.0 / 32768) ** 2 / 12 / channels
    return float(10 * np.log10(variance * np.sum(np.hanning(CLIFF_FRAME) ** 2)))


def frame_power(x: np.ndarray) -> np.ndarray:
    """Power spectra of the channels' mean in Hann frames of ``CLIFF_FRAME`` at 50 % overlap
    (frames by bins; none for a clip shorter than a frame)."""
    mono = (x.mean(axis=1) if x.ndim == 2 else x).astype(np.float64)
    if len(mono) < CLIFF_FRAME:
        return np.zeros((0, CLIFF_FRAME // 2 + 1))
    frames = np.lib.stride_tricks.sliding_window_view(mono, CLIFF_FRAME)[:: CLIFF_FRAME // 2]
    return np.abs(np.fft.rfft(frames * np.hanning(CLIFF_FRAME), axis=1)) ** 2


def steep_fall(x: np.ndarray, rate: int, power: np.ndarray | None = None) -> SteepFall:
    """Over the clip's mean spectrum, the largest drop from the median level of the 1 kHz below
    a bin (itself included) to that of the 1 kHz above it, for bins from ``FALL_LOWEST_HZ`` up
    to where the span above ends 1 kHz under Nyquist. Medians, so a tone or a notch does not
    count as a band. ``power``: ``frame_power(x)`` when the caller has it already."""
    power = frame_power(x) if power is None else power
    if len(power) == 0:
        return SteepFall(0.0, 0.0)
    db = 10 * np.log10(power.mean(axis=0) + 1e-30)
    freqs = np.fft.rfftfreq(CLIFF_FRAME, 1 / rate)
    width = round(CLIFF_WIDTH_HZ / freqs[1])
    spans = np.median(np.lib.stride_tricks.sliding_window_view(db, width + 1), axis=1)
    # spans[k] covers bins k..k+width: below bin i is spans[i - width], above it spans[i + 1]
    bins = np.arange(width, len(db) - width - 1)
    drops = spans[bins - width] - spans[bins + 1]
    top = rate / 2 - FALL_TOP_MARGIN_HZ - CLIFF_WIDTH_HZ
    allowed = (freqs[bins] >= FALL_LOWEST_HZ) & (freqs[bins] <= top)
    if not allowed.any():
        return SteepFall(0.0, 0.0)
    best = int(np.argmax(np.where(allowed, drops, -np.inf)))
    return SteepFall(float(drops[best]), float(freqs[bins[best]]))


def floor_cliff(x: np.ndarray, rate: int, power: np.ndarray | None = None) -> FloorCliff:
    """Per frame, the edge (the highest frequency over the 16-bit floor) counts as a cliff when
    the 1 kHz below it lies ``CLIFF_DB`` over the 1 kHz above it and it sits between 12 kHz and
    1.5 kHz under Nyquist; the share of cliffs among the frames whose edge reaches 12 kHz."""
    channels = x.shape[1] if x.ndim == 2 else 1
    power = frame_power(x) if power is None else power
    if len(power) == 0:
        return FloorCliff(0.0, 0.0)
    db = 10 * np.log10(power + 1e-30)
    freqs = np.fft.rfftfreq(CLIFF_FRAME, 1 / rate)
    over = db > sixteen_bit_floor_db(channels) + CLIFF_OVER_FLOOR_DB
    edge = np.where(over.any(axis=1), over.shape[1] - 1 - np.argmax(over[:, ::-1], axis=1), 0)
    reaching = freqs[edge] >= CLIFF_LOWEST_HZ
    if reaching.sum() < MIN_CLIFF_FRAMES:
        return FloorCliff(0.0, 0.0)
    width = round(CLIFF_WIDTH_HZ / freqs[1])
    cliffs = []
    for row, i in zip(db, edge, strict=True):
        if CLIFF_LOWEST_HZ <= freqs[i] <= rate / 2 - CLIFF_MARGIN_HZ:
            drop = np.median(row[i - width : i + 1]) - np.median(row[i + 1 : i + 1 + width])
            if drop >= CLIFF_DB:
                cliffs.append(freqs[i])
    share = len(cliffs) / int(reaching.sum())
    return FloorCliff(share, float(np.median(cliffs)) if cliffs else 0.0)


def exclusion_reason(
    upload: str,
    bandwidth_hz: float,
    min_bandwidth_hz: float,
    cliff: FloorCliff = FloorCliff(0.0, 0.0),
    fall: SteepFall = SteepFall(0.0, 0.0),
) -> str | None:
    """Why a clip is not lossless, or None when it is: the upload's extension first."""
    suffix = upload_suffix(upload)
    if suffix in LOSSY_UPLOADS:
        return f"lossy upload ({suffix})"
    if bandwidth_hz < min_bandwidth_hz:
        return f"band-limited ({bandwidth_hz / 1000:.1f} kHz < {min_bandwidth_hz / 1000:.1f} kHz)"
    if cliff.share >= MIN_CLIFF_SHARE:
        return f"{CUT_TO_FLOOR} ({100 * cliff.share:.0f} % of frames, at {cliff.hz / 1000:.1f} kHz)"
    if fall.db >= FALL_DB:
        return f"{STEEP_FALL} ({fall.db:.0f} dB within 1 kHz at {fall.hz / 1000:.1f} kHz)"
    return None


def clip_measures(path: Path) -> tuple[float, FloorCliff, SteepFall]:
    """The clip's effective bandwidth, its cliffs onto the 16-bit floor and its steepest fall."""
    x, rate = load(path)
    power = frame_power(x)  # both lowpass measures read the same frames
    return (
        effective_bandwidth(x, rate, BANDWIDTH_FLOOR_DB),
        floor_cliff(x, rate, power),
        steep_fall(x, rate, power),
    )


def kitchen20_lossless(
    root: Path, min_bandwidth_hz: float = MIN_BANDWIDTH_HZ
) -> tuple[list[RealClip], list[Exclusion]]:
    """Kitchen20's lossless originals in meta.csv order, and every excluded clip with its reason.

    Every clip is measured, lossy uploads too, so the list of exclusions shows what a lossy upload
    left.
    """
    if not is_kitchen20(root):
        raise Kitchen20Error(
            f"{root}: no {META} with filename, label, source_id and freesound_file columns"
        )
    with open(root / META, newline="") as f:
        rows = list(csv.DictReader(f))
    kept: list[RealClip] = []
    excluded: list[Exclusion] = []
    for row in rows:
        path = root / row["filename"]
        if not path.is_file():
            raise Kitchen20Error(f"{root / META} lists a missing clip: {path}")
        bandwidth, cliff, fall = clip_measures(path)
        reason = exclusion_reason(row["freesound_file"], bandwidth, min_bandwidth_hz, cliff, fall)
        if reason is None:
            kept.append(
                RealClip(path, row["label"], row["source_id"], row["freesound_file"], bandwidth)
            )
        else:
            excluded.append(
                Exclusion(
                    row["filename"],
                    row["label"],
                    row["source_id"],
                    row["freesound_file"],
                    reason,
                    bandwidth,
                )
            )
    kept, excluded = carry_lowpass_to_upload(root, kept, excluded)
    if not kept:
        raise Kitchen20Error(f"{root}: no clip left as lossless")
    return kept, excluded


def carry_lowpass_to_upload(
    root: Path, kept: list[RealClip], excluded: list[Exclusion]
) -> tuple[list[RealClip], list[Exclusion]]:
    """Moves the kept cuts of an upload that another cut shows a digital lowpass in (a cliff
    onto the 16-bit floor or a steep fall) to the excluded, naming that cut."""
    lowpassed: dict[str, Exclusion] = {}
    for e in excluded:
        if e.reason.startswith((CUT_TO_FLOOR, STEEP_FALL)):
            lowpassed.setdefault(e.upload, e)
    still: list[RealClip] = []
    carried: list[Exclusion] = []
    for clip in kept:
        sibling = lowpassed.get(clip.upload)
        if sibling is None:
            still.append(clip)
            continue
        carried.append(
            Exclusion(
                clip.path.relative_to(root).as_posix(),
                clip.label,
                clip.recording,
                clip.upload,
                f"upload cut by a digital lowpass ({Path(sibling.filename).stem}: "
                f"{sibling.reason})",
                clip.bandwidth_hz,
            )
        )
    return still, excluded + carried


def exclusion_counts(excluded: list[Exclusion]) -> dict[str, int]:
    """How many clips each kind of reason excludes: by lossy extension, and band-limited."""
    counts: dict[str, int] = {}
    for e in excluded:
        kind = e.reason.split(" (")[0] + (
            f" {upload_suffix(e.upload)}" if e.reason.startswith("lossy") else ""
        )
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))
