"""Codec augmentation cache and short real training runs on tiny generated data."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from asc.audio import load, save
from asc.checkpoint import load as load_checkpoint
from training.augment import UNCODED, CodedCache, parse_spec_list
from training.fit_scene import SceneTrainConfig, fit_ensemble


@pytest.fixture(scope="module")
def toy_scenes(tmp_path_factory) -> Path:
    """Three classes a small CNN can tell apart in a few epochs, in the folder-per-class layout."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    t = np.arange(44100) / 44100
    for name in ("hum", "hiss", "whistle"):
        for i in range(8):
            x = 0.05 * rng.standard_normal(len(t))
            if name == "hum":
                x += 0.4 * np.sin(2 * np.pi * (90 + 30 * rng.random()) * t)
            elif name == "hiss":
                x += 0.3 * np.diff(rng.standard_normal(len(t) + 1))
            else:
                x += 0.3 * np.sin(2 * np.pi * (3000 + 800 * rng.random()) * t)
            save(root / name / f"{i}.wav", x.astype(np.float32), 44100)
    (root / "coarse_map.csv").write_text("class,coarse\nhum,tonal\nwhistle,tonal\nhiss,noise\n")
    return root


def test_spec_lists_keep_settings_with_their_codec():
    assert parse_spec_list("none,mp3:128k,cutoff=14k,sbc:bitpool=53>aac:64k") == [
        UNCODED,
        "mp3:128k,cutoff=14k",
        "sbc:bitpool=53>aac:64k",
    ]


def test_coded_copies_are_made_once_and_keyed_by_content(tmp_path, toy_scenes):
    sources = sorted((toy_scenes / "hum").glob("*.wav"))[:2]
    cache = CodedCache(tmp_path / "cache")
    mapping = cache.ensure(sources, ["none", "mp3:64k"], workers=2, progress=False)
    coded = mapping[(sources[0], "mp3:64k")]
    assert mapping[(sources[0], UNCODED)] == sources[0]
    x, _ = load(sources[0])
    y, rate = load(coded)
    assert rate == 44100 and y.shape == x.shape  # aligned, same length
    assert np.corrcoef(x[:, 0], y[:, 0])[0, 1] > 0.9
    stamp = coded.stat().st_mtime_ns
    cache2 = CodedCache(tmp_path / "cache")
    assert cache2.ensure(sources, ["mp3:64k"], progress=False)[(sources[0], "mp3:64k")] == coded
    assert coded.stat().st_mtime_ns == stamp  # reused, not re-coded
    changed = tmp_path / "changed.wav"
    save(changed, x * 0.5, 44100)
    assert cache2.path_for(changed, "mp3:64k") != coded


def test_a_bad_spec_fails_before_any_work(tmp_path, toy_scenes):
    from asc.codecs import CodecError

    with pytest.raises(CodecError, match="unknown codec"):
        CodedCache(tmp_path).ensure([next(toy_scenes.rglob("*.wav"))], ["mp3:64k", "zip:1k"])
    assert not any(tmp_path.rglob("*.flac"))


@pytest.mark.parametrize("consistency", [0.0, 10.0])
def test_short_training_lowers_the_loss_and_writes_a_checkpoint(tmp_path, toy_scenes, consistency):
    """Also with the consistency term, each copy drawn with its original (fit_scene)."""
    cfg = SceneTrainConfig(
        data=toy_scenes,
        out=tmp_path / "toy.safetensors",
        augment_codecs=["mp3:64k"],
        epochs=6,
        batch_size=8,
        consistency=consistency,
        cache_dir=tmp_path / "cache",
        workers=1,
        progress=False,
        crop_frames=30,
    )
    checkpoint = fit_ensemble(cfg)
    history = checkpoint.metrics["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert checkpoint.extra["augmentations"]["consistency"] == consistency
    loaded = load_checkpoint(cfg.out, expect_kind="scene_ensemble")
    assert loaded.codec_conditions == [UNCODED, "mp3:64k"]
    assert loaded.model.coarse_classes == ["noise", "tonal"]
    assert not cfg.out.with_suffix(".train-state.pt").exists()


def test_training_resumes_from_its_last_epoch(tmp_path, toy_scenes):
    out = tmp_path / "r.safetensors"
    state = tmp_path / "r.train-state.pt"
    command = [
        sys.executable,
        "-m",
        "training.cli",
        "fit-ensemble",
        "--data",
        str(toy_scenes),
        "--out",
        str(out),
        "--epochs",
        "40",
        "--batch-size",
        "8",
        "--crop-frames",
        "30",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--workers",
        "1",
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    first.kill()  # a crash mid-training
    first.wait()
    assert state.exists() and not out.exists()
    second = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "resuming from epoch" in second.stderr + second.stdout
    history = load_checkpoint(out).metrics["history"]
    assert [h["epoch"] for h in history] == list(range(1, 41))


def test_describe_prints_parameter_counts_per_preset():
    result = subprocess.run(
        [sys.executable, "-m", "training.cli", "describe"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "compact" in result.stdout and "paper" in result.stdout
    paper = next(line for line in result.stdout.splitlines() if line.strip().startswith("paper"))
    assert 120_000_000 < int(paper.split()[1].replace(",", "")) < 140_000_000


def test_distributed_training_with_torchrun_on_cpu(tmp_path, toy_scenes):
    out = tmp_path / "ddp.safetensors"
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "training.cli",
            "fit-ensemble",
            "--data",
            str(toy_scenes),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--crop-frames",
            "30",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--workers",
            "1",
            "--device",
            "cpu",
            "--no-resume",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("wrote") == 1
    assert load_checkpoint(out).metrics["epochs"] == 2


def test_band_limit_looks_like_a_codec_lowpass_to_the_model():
    import torch

    from asc.codecs import roundtrip
    from asc.features import LOGMEL, FeatureExtractor
    from asc.signals import full_band_clip
    from training.spec_augment import limit_band

    clip = full_band_clip(44100, 4.0, 1, seed=5)
    extractor = FeatureExtractor(LOGMEL)
    clean = extractor(torch.from_numpy(clip[:, 0])[None])
    coded = extractor(torch.from_numpy(roundtrip(clip, 44100, "mp3:32k")[:, 0])[None])
    torch.manual_seed(0)
    limited = limit_band(clean, 1.0, low=0.69, high=0.69)  # mp3:32k cuts near band 88 of 128
    cut = int(0.69 * 128) + 1
    assert torch.all(limited[0, 0, cut:] == limited[0, 0, cut:].min())  # one floor level
    assert torch.all(limited[0, 1:, cut:] == 0)  # no movement where nothing is left
    assert abs(limited[0, 0].mean().item()) < 1e-4 and abs(limited[0, 0].std().item() - 1) < 1e-3
    assert (limited - coded).pow(2).mean() < 0.5 * (clean - coded).pow(2).mean()
    assert torch.equal(limit_band(clean, 0.0), clean)


def test_consistency_term_is_the_jensen_shannon_divergence_of_each_pair():
    import math

    import torch

    from training.fit_scene import consistency_loss

    sure = torch.tensor([[20.0, -20.0], [20.0, -20.0]])  # two rows answering class 0
    other = torch.tensor([[-20.0, 20.0], [20.0, -20.0]])  # the first pair disagrees
    out = {"fine/a": torch.cat([sure, sure]), "scores": torch.zeros(4, 2)}
    assert consistency_loss(out, 2).item() == pytest.approx(0.0, abs=1e-6)
    out = {"fine/a": torch.cat([sure, other]), "coarse/a": torch.cat([sure, other])}
    # each sub-model: JS of two opposite certain answers is ln 2, averaged over 2 pairs
    assert consistency_loss(out, 2).item() == pytest.approx(2 * math.log(2) / 2, rel=1e-3)


def test_level_jitter_moves_every_band_and_keeps_the_clip_scaled():
    import torch

    from asc.features import LOGMEL, FeatureExtractor
    from asc.signals import full_band_clip
    from training.spec_augment import jitter_levels

    clip = full_band_clip(44100, 4.0, 1, seed=6)
    clean = FeatureExtractor(LOGMEL)(torch.from_numpy(clip[:, 0])[None])
    torch.manual_seed(0)
    jittered = jitter_levels(clean, 1.0, low=0.3, high=0.3)
    moved = (jittered[0, 0] - clean[0, 0]).abs().mean(dim=1)  # per band
    assert torch.all(moved > 0.1)  # every band, the top ones too: nothing is cut
    assert abs(jittered[0, 0].mean().item()) < 1e-4 and abs(jittered[0, 0].std().item() - 1) < 1e-3
    # The deltas follow the noisy levels, as the feature function computes them.
    from asc.torchaudio_pair import load_torchaudio

    deltas = load_torchaudio().functional.compute_deltas(jittered[:, 0], LOGMEL.delta_win)
    assert torch.allclose(jittered[:, 1], deltas, atol=1e-5)
    assert not torch.allclose(jittered[:, 1], clean[:, 1], atol=0.05)
    assert torch.equal(jitter_levels(clean, 0.0), clean)


def test_the_jitter_spread_flag_sets_how_far_the_noise_moves_a_cell():
    """``--jitter-spread LOW,HIGH`` reaches SpecAugment: a milder spread moves the log-mels
    less, in proportion; a bad range is refused by the flag's parser."""
    import argparse

    import torch

    from asc.features import LOGMEL, FeatureExtractor
    from asc.signals import full_band_clip
    from training.commands_fit import spread
    from training.spec_augment import SpecAugment

    clean = FeatureExtractor(LOGMEL)(
        torch.from_numpy(full_band_clip(44100, 4.0, 1, seed=7)[:, 0])[None]
    )
    moved = {}
    for text in ("0.05,0.05", "0.2,0.2"):
        augment = SpecAugment(0, masks=False, jitter=1.0, jitter_spread=spread(text))
        torch.manual_seed(0)
        moved[text] = (augment(clean)[0, 0] - clean[0, 0]).abs().mean().item()
    assert moved["0.2,0.2"] == pytest.approx(4 * moved["0.05,0.05"], rel=0.05)
    for bad in ("0.3,0.1", "-1,0.2", "0.2"):
        with pytest.raises(argparse.ArgumentTypeError):
            spread(bad)
