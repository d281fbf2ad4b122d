"""Vorbis's lattice: the floor's levels times integers, on Vorbis's moving long-block grid.

Each coefficient Vorbis keeps is its floor curve's level there times an integer (the residue),
and the floor takes its levels from one table of 256 about 0.55 dB apart, so groups of
neighbouring bins, which mostly share a level, fall on integer multiples of one of those levels
when the decoded wave is analysed again on Vorbis's frames. Its long blocks keep their 1024-sample
hop only until a short block, which moves the later ones by 128 samples, so each frame takes the
best of its eight offsets 128 apart (an off-grid offset gets the same choice). Searched on the
zero test's own spectra and measured against off-grid offsets as AAC's lattice is
(``asc.codecs.mdct_trace``), with two sets of steps: the coarse ones take a group's least
coefficient as 1, 2 or 3 levels; the fine ones, for high bitrates where the integers grow large,
try every level its loudest coefficient allows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from asc.codecs.mdct_frames import (
    AAC_BANDS,
    FRAME,
    HOPS,
    LATTICE_FRAMES_AT_ONCE,
    LATTICE_NULL,
    LATTICE_STEPS,
    WINDOWS,
    ZERO,
    counted_mean,
    lattice_excess,
    mdct,
)

# Vorbis's quantiser: each coefficient it keeps is its floor curve's value there times an integer
# (the residue), and the floor takes its values from one table of 256 levels about 0.55 dB apart
# (the Vorbis I specification's floor1_inverse_dB_table, 1.0649863e-07 to 1) at every rate. In
# this module's MDCT scale libvorbis's levels are exp(VORBIS_RATIO (n + VORBIS_PHASE)) for
# integers n (tests/test_mdct_trace.py fits the phase on real clips' copies).
VORBIS_RATIO = math.log(1 / 1.0649863e-07) / 255
VORBIS_PHASE = 0.54
VORBIS_GROUP = 12  # neighbouring bins, which mostly share one floor level
VORBIS_GROUPS = (AAC_BANDS[-1] - AAC_BANDS[0]) // VORBIS_GROUP  # over AAC's counted bins
VORBIS_SEARCH_GROUPS = 20  # the lowest (0.9 to 6 kHz) searched on the loudest search frames
VORBIS_CANDIDATES = 4  # offsets (modulo the hop) that search keeps for all search frames
# A group's least coefficient that is not zero is taken as 1, 2 or 3 levels of the floor's
# table: each gives a step, and the group counts at the one it lies closest to.
_VORBIS_MULTIPLES = np.array([1.0, 2.0, 3.0], np.float32)
# At high bitrates the residues are large (a group's loudest coefficient tens of levels), and
# its least coefficient no longer gives the step: there the fine steps try every level on which
# a group's loudest spans VORBIS_FINE_SPAN steps, on its lowest groups (0.9 to 8.6 kHz), at
# several times the coarse steps' cost.
VORBIS_FINE_GROUPS = 30
VORBIS_FINE_SPAN = (6.0, LATTICE_STEPS[1])
_VORBIS_LEVELS = np.arange(
    math.ceil(math.log(VORBIS_FINE_SPAN[1] / VORBIS_FINE_SPAN[0]) / VORBIS_RATIO) + 1,
    dtype=np.float32,
)


def vorbis_search(spectra: np.ndarray) -> np.ndarray:
    """Vorbis's lattice search on the zero test's spectra: its low groups' coarse scores."""
    return _vorbis_group_scores(spectra, VORBIS_SEARCH_GROUPS)[..., 0]


def vorbis_lattice(
    signal: np.ndarray,
    searched: np.ndarray,
    zeros_at: np.ndarray,
    search: np.ndarray,
    measure: np.ndarray,
    pace: Callable[[], None] | None,
) -> tuple[float, int]:
    """Vorbis's lattice on its best grid, measured as AAC's is; each frame takes the best of
    the offsets 128 apart, as on the zeros' grid. ``searched``: the low groups' coarse scores
    at every offset of every search frame (offsets x frames); the best bases overall and on
    each frame (any may be short blocks, without the long blocks' lattice), and those where
    Vorbis's zeros stood out (``zeros_at``), are tried on all search frames. Measured with the
    coarse steps and the fine ones, each on its own best grid: the surer of the two."""
    hop = HOPS["vorbis"]
    phases = FRAME // hop
    free = searched.reshape(phases, hop, -1).max(axis=0)  # (hop, frames)
    candidates = np.unique(
        np.concatenate(
            [
                np.argsort(-free.mean(axis=1), kind="stable")[:VORBIS_CANDIDATES],
                np.argsort(-free, axis=0, kind="stable")[:2].ravel(),
                zeros_at % hop,
            ]
        )
    )
    offsets = candidates[:, None] + hop * np.arange(phases)  # (candidates, phases)
    tried = _vorbis_scores(signal, offsets[..., None] + search, pace, fine=True)
    found = []
    for k, free in enumerate(tried.max(axis=1).mean(axis=1).T):  # each measure on its own grid
        at = int(np.argmax(free))
        base = int(candidates[at])
        others = np.delete(np.arange(hop), (base + np.arange(-2, 3)) % hop)
        null = np.random.default_rng(2).choice(others, LATTICE_NULL, replace=False)
        bases = np.concatenate([[base], null])
        starts = (bases[:, None] + hop * np.arange(phases))[..., None] + measure
        measured = _vorbis_scores(signal, starts, pace, coarse=k == 0, fine=k == 1)[..., 0]
        on, *off = measured.max(axis=1).mean(axis=1)
        offset = int(offsets[at, int(np.argmax(tried[at, ..., k].mean(axis=-1)))])
        found.append((lattice_excess(on, off), offset))
    return max(found)


def _vorbis_scores(
    signal: np.ndarray,
    starts: np.ndarray,
    pace: Callable[[], None] | None,
    groups: int = VORBIS_GROUPS,
    coarse: bool = True,
    fine: bool = False,
) -> np.ndarray:
    """``_vorbis_group_scores`` of the frames at ``starts`` (any shape; a last axis is added),
    a few frames at a time."""
    frames = np.lib.stride_tricks.sliding_window_view(signal, 2 * FRAME)
    scores = []
    for rows in np.array_split(starts.ravel(), max(1, starts.size // LATTICE_FRAMES_AT_ONCE)):
        spectra = mdct(frames[rows] * WINDOWS["vorbis"])
        scores.append(_vorbis_group_scores(spectra, groups, coarse, fine))
        if pace is not None:
            pace()
    return np.concatenate(scores).reshape(*starts.shape, -1)


def _vorbis_group_scores(
    spectra: np.ndarray, groups: int, coarse: bool = True, fine: bool = False
) -> np.ndarray:
    """Per frame of ``spectra`` (any leading shape x FRAME, on Vorbis's window), how close its
    first ``groups`` groups of bins lie to Vorbis's lattice: per group, the mean of
    cos(2 pi |c| / step) over the coefficients that are not zero, at the best of the steps
    tried (coarse: those its least coefficient gives; fine: every level), over the counted
    groups (1 on the lattice, about 0 off it). A last axis holds the coarse and the fine
    scores, those asked for."""
    shape = spectra.shape[:-1]
    bins = slice(AAC_BANDS[0], AAC_BANDS[0] + groups * VORBIS_GROUP)
    c = np.abs(spectra[..., bins]).reshape(-1, groups, VORBIS_GROUP)
    kept = c >= ZERO
    count = kept.sum(axis=-1)
    top = c.max(axis=-1)
    row = []
    if coarse:
        least = np.where(kept, c, np.inf).min(axis=-1, initial=np.inf)
        level = np.log(np.minimum(least, 1.0)[..., None] / _VORBIS_MULTIPLES) / VORBIS_RATIO
        step = np.exp(VORBIS_RATIO * (np.round(level - VORBIS_PHASE) + VORBIS_PHASE))
        row.append(_vorbis_closeness(c, kept, count, top, step.astype(np.float32)))
    if fine:  # every level from the one a group's loudest spans VORBIS_FINE_SPAN[0] of
        f = slice(0, VORBIS_FINE_GROUPS)
        span = np.log(np.maximum(top[:, f], 1e-12) / VORBIS_FINE_SPAN[0]) / VORBIS_RATIO
        level = np.floor(span - VORBIS_PHASE)[..., None] - _VORBIS_LEVELS
        step = np.exp(VORBIS_RATIO * (level + VORBIS_PHASE)).astype(np.float32)
        row.append(_vorbis_closeness(c[:, f], kept[:, f], count[:, f], top[:, f], step))
    return np.stack(row, axis=-1).reshape(*shape, -1)


def _vorbis_closeness(
    c: np.ndarray, kept: np.ndarray, count: np.ndarray, top: np.ndarray, step: np.ndarray
) -> np.ndarray:
    """Per frame, the counted groups' mean closeness to the lattice at the steps tried on each
    (rows x groups x steps)."""
    phase = c[..., None, :] * ((2 * np.pi) / step)[..., None]
    np.cos(phase, out=phase)
    phase *= kept[..., None, :]
    closeness = phase.sum(axis=-1) / np.maximum(count, 1)[..., None]
    return counted_mean(closeness, top[..., None] / step, top, count, -1)
