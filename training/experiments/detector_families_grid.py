"""The codecs' grid tests beside the detector's network, in the detector-families report.

The network sees a spectrogram, and on real recordings SBC's and high-rate AAC's noise hides
under the recording's own (``asc.codecs.grid_tests``), so the report scores each file twice: the
network alone, and the detector as the server would run it, the network joined by the grid
tests. A file is as lossy as the surer of the two says, and its family is the one whose grid a
test finds. Both sets of figures are kept, so the report shows what the tests add and what they
cost in false alarms.
"""

from __future__ import annotations

from dataclasses import replace

from asc.audio import load
from asc.codecs.grid_tests import join_detector, named_family, surer_call
from asc.codecs.mdct_trace import mdct_trace
from asc.codecs.sbc_trace import sbc_trace
from training.augment import parallel_map
from training.experiments.detector_families_scores import DETECTOR, NETWORK, ScoredFile


def grid_scores(files: list[ScoredFile], workers: int | None, progress: bool) -> None:
    """Each file's grid tests on the file as stored (its rate, its channels), in parallel."""
    paths = [str(f.audio) for f in files]
    traced = parallel_map(_trace, paths, workers, progress, "grid tests", unit="file")
    for f, (contrast, mdct, call) in zip(files, traced, strict=True):
        f.sbc_contrast_db, f.grid = contrast, call
        f.mdct_family, f.mdct_excess, f.mdct_lattice = mdct.family, mdct.excess, mdct.lattice
        f.mdct_vorbis_lattice = mdct.vorbis_lattice


def combine(files: list[ScoredFile]) -> None:
    """The detector's call, joined as the server joins it (``join_detector``)."""
    for f in files:
        lossy, families = join_detector(f.scores[NETWORK], f.network_families, f.grid)
        f.scores[DETECTOR] = lossy
        f.family_guess = named_family(lossy, families)


def network_alone(files: list[ScoredFile]) -> list[ScoredFile]:
    """The same files as the network alone scored them."""
    return [
        replace(f, scores={DETECTOR: f.scores[NETWORK]}, family_guess=f.network_guess)
        for f in files
    ]


def _trace(path: str):
    wave, rate = load(path)
    sbc, mdct = sbc_trace(wave, rate), mdct_trace(wave, rate)
    return sbc.contrast_db, mdct, surer_call(sbc, mdct)
