"""fit-detector resumes an interrupted run: from the last finished epoch, to the same weights as
a run that was never stopped, and only from a state of the same tracks and settings.

The interruption is an exception raised right after the first epoch's state is kept, as a kill
in the second epoch would leave things; everything else is the real training on CPU.
"""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from asc.checkpoint import Checkpoint
from training.corpora import write_lossless_corpus
from training.fit_detector import DetectorTask, DetectorTrainConfig, fit_detector


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def tracks(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    return write_lossless_corpus(root / "lossless", 10, seed=7, seconds=2.5, workers=1)


def tiny(tracks: Path, out: Path, **changes) -> DetectorTrainConfig:
    cfg = DetectorTrainConfig(
        data=tracks,
        out=out,
        codecs=["mp3:128k"],
        epochs=2,
        steps_per_epoch=3,
        batch_size=4,
        device="cpu",
        cache_dir=tracks.parent / "cache",
        workers=1,
    )
    return replace(cfg, **changes)


def interrupted_after_first_epoch(cfg: DetectorTrainConfig, monkeypatch) -> None:
    """Run ``cfg`` until its first epoch's state is written, then stop it."""
    keep = DetectorTask.end_epoch

    def end_epoch(task: DetectorTask, epochs_done: int, history: list[dict]) -> None:
        keep(task, epochs_done, history)
        raise Interrupted

    with monkeypatch.context() as m:
        m.setattr(DetectorTask, "end_epoch", end_epoch)
        with pytest.raises(Interrupted):
            fit_detector(cfg)


def assert_same_weights(a: Checkpoint, b: Checkpoint) -> None:
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_a_resumed_run_ends_as_an_uninterrupted_one(tracks, tmp_path, monkeypatch, capsys):
    whole = fit_detector(tiny(tracks, tmp_path / "whole.safetensors"))
    assert not (tmp_path / "whole.train-state.pt").exists()

    cfg = tiny(tracks, tmp_path / "cut.safetensors")
    state = tmp_path / "cut.train-state.pt"
    interrupted_after_first_epoch(cfg, monkeypatch)
    assert state.exists() and not cfg.out.exists()
    kept = tmp_path / "kept.train-state.pt"
    shutil.copy(state, kept)
    capsys.readouterr()

    resumed = fit_detector(cfg)
    assert f"resuming from epoch 1 ({state})" in capsys.readouterr().out
    assert not state.exists()
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2]
    assert resumed.metrics["history"] == whole.metrics["history"]
    assert_same_weights(resumed, whole)

    other = tiny(tracks, tmp_path / "other.safetensors", steps_per_epoch=2)
    shutil.copy(kept, other.out.with_suffix(".train-state.pt"))
    fit_detector(other)
    assert "resuming" not in capsys.readouterr().out  # other steps: the state is not its own
    assert not other.out.with_suffix(".train-state.pt").exists()


def test_no_resume_starts_afresh(tracks, tmp_path, monkeypatch, capsys):
    cfg = tiny(tracks, tmp_path / "cut.safetensors", epochs=1, resume=False)
    interrupted_after_first_epoch(cfg, monkeypatch)
    capsys.readouterr()
    fit_detector(cfg)
    assert "resuming" not in capsys.readouterr().out
    assert not cfg.out.with_suffix(".train-state.pt").exists()
