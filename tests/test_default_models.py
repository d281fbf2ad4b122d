"""The checkpoints shipped in models/: they load, they are small, and they do their job."""

from pathlib import Path

import numpy as np
import pytest
import torch

from asc.checkpoint import load
from asc.codecs import roundtrip
from asc.features import FeatureExtractor
from asc.models.detector import WINDOW_SECONDS, cut_windows
from training.corpora import synth_clip
from training.corpora.lossless_corpus import synth_track
from training.corpora.scenes import FINE_CLASSES

MODELS = Path(__file__).resolve().parent.parent / "models"
ENSEMBLE = MODELS / "ensemble.safetensors"
DETECTOR = MODELS / "detector.safetensors"


def test_shipped_checkpoints_fit_in_25_mb():
    assert ENSEMBLE.is_file() and DETECTOR.is_file()
    assert ENSEMBLE.stat().st_size + DETECTOR.stat().st_size <= 25 * 1024 * 1024


def test_default_ensemble_is_the_compact_codec_augmented_one():
    checkpoint = load(ENSEMBLE, expect_kind="scene_ensemble")
    assert checkpoint.config["preset"] == "compact"
    assert checkpoint.model.fine_classes == FINE_CLASSES
    assert {"mp3:64k", "aac:32k", "he-aac:16k", "he-aac:32k"} <= set(checkpoint.codec_conditions)
    assert checkpoint.data_fingerprint and "test_accuracy" in checkpoint.metrics


def test_default_ensemble_classifies_generated_scenes():
    checkpoint = load(ENSEMBLE, expect_kind="scene_ensemble")
    extractor = FeatureExtractor(checkpoint.features)
    rng = np.random.default_rng(1234)
    waves = np.stack([synth_clip(scene, "a", rng) for scene in FINE_CLASSES])
    with torch.inference_mode():
        scores = checkpoint.model(extractor(torch.from_numpy(waves)))["scores"]
    assert scores.shape == (10, 10) and torch.all(scores >= 0)
    correct = int((scores.argmax(1) == torch.arange(10)).sum())
    assert correct >= 4, f"only {correct} of 10 generated scenes recognised"


@pytest.mark.parametrize("spec", ["mp3:128k", "vorbis:128k", "fdk-aac:256k"])
def test_default_detector_scores_coded_audio_above_the_original(spec):
    checkpoint = load(DETECTOR, expect_kind="lossy_detector")
    assert checkpoint.config["mask_prob"] == 1.0
    extractor = FeatureExtractor(checkpoint.features)
    window = int(WINDOW_SECONDS * checkpoint.features.sample_rate)
    track = synth_track("music", np.random.default_rng(99), seconds=6.0)
    coded = roundtrip(track, 44100, spec)

    def score(x: np.ndarray) -> float:
        with torch.inference_mode():
            mono = torch.from_numpy(x.mean(axis=1).astype(np.float32))
            out = checkpoint.model(extractor(cut_windows(mono, window)))
            return float(out["lossy_prob"].mean())

    assert score(coded) > score(track)
