"""Accuracy against bitrate: the Bjøntegaard-style summary, and the command end to end."""

from __future__ import annotations

import numpy as np
import pytest

from training.rate_accuracy import bd_accuracy, comparisons


def line(kbps, offset: float, slope: float = 0.1) -> list[tuple[float, float]]:
    return [(k, offset + slope * np.log2(k)) for k in kbps]


def test_parallel_curves_differ_by_their_offset_over_the_common_range():
    a = line([16, 32, 64, 128], 0.2)
    b = line([24, 48, 96, 192], 0.3)
    diff, low, high = bd_accuracy(a, b)
    assert diff == pytest.approx(0.1, abs=1e-9)
    assert (low, high) == pytest.approx((24, 128))
    assert bd_accuracy(b, a)[0] == pytest.approx(-0.1, abs=1e-9)


def test_curves_that_share_no_range_or_have_one_point_give_nothing():
    assert bd_accuracy(line([8, 16], 0.2), line([32, 64], 0.3)) is None
    assert bd_accuracy(line([32], 0.2), line([16, 64], 0.3)) is None


def test_crossing_curves_average_out():
    a = [(16.0, 0.2), (64.0, 0.6)]
    b = [(16.0, 0.6), (64.0, 0.2)]
    assert bd_accuracy(a, b)[0] == pytest.approx(0.0, abs=1e-9)


def test_comparisons_pair_families_within_a_model_and_models_within_a_family():
    def paths(offset):
        return [{"path": "none", "kbps": 705.6, "accuracy": 0.8}] + [
            {"path": f"{fam}:{k}k", "kbps": float(k), "accuracy": offset + d + 0.01 * k}
            for fam, d in (("mp3", 0.0), ("aac", 0.05))
            for k in (32, 64)
        ]

    rows = comparisons({"plain": paths(0.1), "augmented": paths(0.3)})
    codecs = [r for r in rows if r["kind"] == "codecs"]
    models = [r for r in rows if r["kind"] == "models"]
    assert {(r["within"], r["a"], r["b"]) for r in codecs} == {
        ("plain", "aac", "mp3"), ("augmented", "aac", "mp3")
    }  # fmt: skip
    assert all(r["difference"] == pytest.approx(-0.05) for r in codecs)
    assert {r["within"] for r in models} == {"aac", "mp3"}
    assert all(r["difference"] == pytest.approx(0.2) for r in models)


def test_intervals_come_from_clip_resamples_and_separate_a_real_gap():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 200)

    def predicted(right: int) -> list[int]:
        hit = np.zeros(200, bool)
        hit[rng.choice(200, right, replace=False)] = True
        return np.where(hit, truth, (truth + 1) % 4).tolist()

    def paths(rights: dict[str, int]) -> list[dict]:
        return [
            {"path": p, "kbps": float(p.split(":")[1][:-1]), "accuracy": r / 200,
             "predicted": predicted(r)}
            for p, r in rights.items()
        ]  # fmt: skip

    model = paths({"mp3:32k": 100, "mp3:64k": 120, "opus:32k": 170, "opus:64k": 180})
    (row,) = comparisons({"m": model}, truth.tolist())
    assert (row["a"], row["b"]) == ("mp3", "opus")
    assert row["difference"] == pytest.approx(0.325)
    low, high = row["ci"]
    assert 0 < low < 0.325 < high  # a 30-point gap on 200 clips: beyond the noise
    close = paths({"mp3:32k": 100, "mp3:64k": 120, "opus:32k": 102, "opus:64k": 121})
    (row,) = comparisons({"m": close}, truth.tolist())
    assert row["ci"][0] < 0 < row["ci"][1]  # a 1.5-point gap is not
