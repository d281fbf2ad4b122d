"""Features, both papers' models and the checkpoint format, on real torch modules."""

import json
import struct

import pytest
import torch

from asc.checkpoint import Checkpoint, CheckpointError, load, read_metadata, save
from asc.features import (
    DETECTOR_SPECTROGRAM,
    LOGMEL,
    FeatureConfig,
    FeatureConfigError,
    FeatureExtractor,
)
from asc.labels import DCASE_CLASSES, DCASE_COARSE, DCASE_COARSE_OF
from asc.models.detector import CODEC_FAMILIES, LossyDetector, RandomCutoffMask
from asc.models.scene import PRESETS, SceneEnsemble, count_parameters, fuse

FINE = DCASE_CLASSES
COARSE = DCASE_COARSE
COARSE_OF = DCASE_COARSE_OF


def test_logmel_shape_matches_the_hu_et_al_front_end():
    x = torch.randn(2, 441000) * 0.1
    features = FeatureExtractor(LOGMEL)(x)
    assert features.shape == (2, 3, 128, 431)  # log-mel, deltas, delta-deltas
    clip = features[0, 0]
    assert abs(clip.mean().item()) < 1e-4 and abs(clip.std().item() - 1) < 1e-3  # per-clip scaling


def test_features_are_batched_consistently():
    x = torch.randn(3, 44100) * 0.1
    extractor = FeatureExtractor(LOGMEL)
    together = extractor(x)
    alone = torch.cat([extractor(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_detector_spectrogram_has_1024_bins():
    assert FeatureExtractor(DETECTOR_SPECTROGRAM)(torch.randn(1, 88200)).shape[2] == 1024


def test_feature_config_round_trips_and_rejects_the_unknown():
    assert FeatureConfig.from_dict(LOGMEL.to_dict()) == LOGMEL
    with pytest.raises(FeatureConfigError, match="lacks"):
        FeatureConfig.from_dict({**LOGMEL.to_dict(), "pcen": True})
    with pytest.raises(FeatureConfigError, match="kind"):
        FeatureConfig.from_dict({**LOGMEL.to_dict(), "kind": "mfcc"})


@pytest.mark.parametrize(
    ("preset", "low", "high"), [("compact", 1e5, 1e6), ("paper", 120e6, 140e6)]
)
def test_preset_parameter_counts(preset, low, high):
    model = SceneEnsemble(FINE, COARSE, COARSE_OF, preset)
    assert low <= count_parameters(model) <= high
    assert set(PRESETS) == {"compact", "paper"}


def test_ensemble_outputs_and_fusion_arithmetic():
    model = SceneEnsemble(FINE, COARSE, COARSE_OF, "compact").eval()
    with torch.no_grad():
        out = model(torch.randn(4, 3, 128, 40))
    assert out["scores"].shape == (4, 10) and out["coarse_probs"].shape == (4, 3)
    expected = out["fine_probs"] * out["coarse_probs"][:, torch.tensor(COARSE_OF)]
    assert torch.allclose(out["scores"], expected)
    fine = torch.tensor([[0.5, 0.3, 0.2]])
    coarse = torch.tensor([[0.9, 0.1]])
    fused = fuse(fine, coarse, torch.tensor([0, 1, 1]))
    assert torch.allclose(fused, torch.tensor([[0.45, 0.03, 0.02]]))


def test_any_class_list_with_a_coarse_map_works():
    model = SceneEnsemble(["dog", "rain", "siren", "chirp"], ["animals", "noise"], [0, 1, 1, 0])
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 128, 30))["scores"].shape == (2, 4)
    with pytest.raises(ValueError, match="coarse"):
        SceneEnsemble(["a", "b"], ["x"], [0, 3])


def test_mask_sets_bins_above_the_cutoff_to_the_minimum():
    torch.manual_seed(0)
    mask = RandomCutoffMask(prob=1.0).train()
    spec = torch.rand(16, 1, 1024, 20) + 1.0
    out = mask(spec)
    bin_hz = torch.arange(1024) * (22050 / 1023)
    for example in range(16):
        changed = (out[example, 0] != spec[example, 0]).any(dim=1)
        first = int(changed.float().argmax())
        assert changed[first:].all() and not changed[:first].any()  # one contiguous top band
        assert bin_hz[first] >= 14000
        assert torch.all(out[example, 0, first:] == spec[example].min())


def test_mask_touches_nothing_when_it_does_not_fire_or_in_eval():
    spec = torch.rand(8, 1, 1024, 10)
    assert torch.equal(RandomCutoffMask(prob=0.0).train()(spec), spec)
    assert torch.equal(RandomCutoffMask(prob=1.0).eval()(spec), spec)


def test_detector_shapes():
    detector = LossyDetector(mask_prob=0.5).eval()
    with torch.no_grad():
        out = detector(FeatureExtractor(DETECTOR_SPECTROGRAM)(torch.randn(3, 88200)))
    assert out["lossy_prob"].shape == (3,) and out["family_probs"].shape == (3, len(CODEC_FAMILIES))


def _ensemble_checkpoint() -> Checkpoint:
    model = SceneEnsemble(FINE, COARSE, COARSE_OF, "compact").eval()
    return Checkpoint(
        "scene_ensemble", model.config, LOGMEL, model, ["mp3:64k"], "abc123", {"acc": 0.5}
    )


def test_checkpoint_round_trip(tmp_path):
    original = _ensemble_checkpoint()
    path = save(original, tmp_path / "e.safetensors")
    loaded = load(path, expect_kind="scene_ensemble")
    assert loaded.features == LOGMEL and loaded.codec_conditions == ["mp3:64k"]
    x = torch.randn(2, 3, 128, 30)
    with torch.no_grad():
        assert torch.allclose(original.model(x)["scores"], loaded.model(x)["scores"])
    assert read_metadata(path)["data_fingerprint"] == "abc123"


def test_corrupt_truncated_and_mismatched_checkpoints_are_refused(tmp_path):
    path = save(_ensemble_checkpoint(), tmp_path / "e.safetensors")
    data = path.read_bytes()

    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load(tmp_path / "trunc.safetensors")

    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"trunc|corrupt"):
        load(tmp_path / "junk.safetensors")

    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load(tmp_path / "missing.safetensors")

    with pytest.raises(CheckpointError, match="lossy_detector is needed"):
        load(path, expect_kind="lossy_detector")

    # metadata that describes another model than the weights hold
    header_len = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + header_len])
    meta = json.loads(header["__metadata__"]["asc"])
    meta["config"]["preset"] = "paper"
    header["__metadata__"]["asc"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (tmp_path / "mismatch.safetensors").write_bytes(
        struct.pack("<Q", len(raw)) + raw + data[8 + header_len :]
    )
    with pytest.raises(CheckpointError, match=r"shape|do not match"):
        load(tmp_path / "mismatch.safetensors")
