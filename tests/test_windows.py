"""Cutting decoded audio into windows: positions, the clip's end, and bounded memory."""

import numpy as np
import pytest

from server.windows import Windower


def run(total: int, window: int, hop: int, chunk: int, min_tail: int = 1):
    signal = np.arange(total, dtype=np.float32)
    w = Windower(window, hop, min_tail)
    out, held = [], 0
    for i in range(0, total, chunk):
        out += w.push(signal[i : i + chunk])
        held = max(held, sum(len(c) for c in w._chunks))
    out += w.finish()
    for win in out:  # every window holds exactly the samples of its span
        assert np.array_equal(win.samples, signal[win.start : win.end])
    return [(x.start, x.end) for x in out], held


@pytest.mark.parametrize("chunk", [1, 7, 100, 1000])
def test_windows_do_not_depend_on_how_audio_arrives(chunk):
    spans, held = run(1000, 200, 100, chunk)
    assert spans == [(s, s + 200) for s in range(0, 801, 100)]
    assert held <= 200 + 100 + chunk  # one window, one hop and one chunk at most


def test_end_aligned_window_covers_the_tail_unless_it_is_tiny():
    assert run(1050, 200, 200, 64, min_tail=30)[0][-1] == (850, 1050)
    assert run(1010, 200, 200, 64, min_tail=30)[0][-1] == (800, 1000)


def test_short_clip_is_one_shorter_window_and_empty_clip_none():
    assert run(150, 200, 100, 64)[0] == [(0, 150)]
    assert run(0, 200, 100, 64)[0] == []


def test_bad_window_and_hop_are_refused():
    with pytest.raises(ValueError, match="hop"):
        Windower(100, 0, 1)
    with pytest.raises(ValueError, match="hop"):
        Windower(100, 101, 1)
