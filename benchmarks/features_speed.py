"""Features: the project's batched log-mel front end against librosa clip by clip, same values.

Run: .venv/bin/python -m benchmarks.features_speed [--clips 32] [--threads 2] [--device auto]
     [--quick]

The project's front end (asc/features.py ``FeatureExtractor(LOGMEL)``: 44.1 kHz, FFT 2048, hop
1024, 128 HTK mel bands without filter normalisation, power 2, log, per-clip scaling, deltas
and delta-deltas of width 5) on a batch of ten-second clips, against what one would otherwise
write: librosa computing the same features one clip at a time (``melspectrogram`` with the same
settings and reflect padding, ``log``, the clip's mean and unbiased std, ``delta`` with the same
width and edge-replicating padding, the delta-delta as the delta of the delta). The clips are
samples/ repeated to fill the batch. Rows: librosa on one thread, the project's front end on
one thread, on ``--threads`` threads, and on the GPU when there is one (host-to-device copy
included);
each with clips per second and its ratio to librosa, and the largest absolute difference between
the two front ends' features, which must stay within the stated tolerance.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
from threadpoolctl import threadpool_limits

from asc.features import LOGMEL, FeatureConfig, FeatureExtractor

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
# Absolute, on features scaled to zero mean and unit variance per clip. The two agree to about
# 2e-4 on samples/: torchaudio builds its mel filter bank in float32 (weights off by up to 1e-5
# from librosa's float64 bank), which moves a quiet mel band by up to 1.6e-4 relative, in float64
# arithmetic as much as in float32.
TOLERANCE = 1e-3


def librosa_features(y: np.ndarray, c: FeatureConfig) -> np.ndarray:
    """One clip's (channels, mels, frames) features, computed the usual librosa way."""
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=c.sample_rate,
        n_fft=c.n_fft,
        hop_length=c.hop_length,
        n_mels=c.n_mels,
        fmin=c.f_min,
        fmax=c.f_max,
        htk=c.mel_scale == "htk",
        norm=None,
        power=2.0,
        center=True,
        pad_mode="reflect",
        window="hann",
    )
    x = np.log(mel + c.log_offset)
    if c.per_clip_scaling:
        x = (x - x.mean()) / max(float(x.std(ddof=1)), 1e-5)
    channels = [x]
    for _ in range(c.deltas):
        channels.append(librosa.feature.delta(channels[-1], width=c.delta_win, mode="nearest"))
    return np.stack(channels)


def best_of(repeats: int, work) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = work()
        best = min(best, time.perf_counter() - start)
    return best, out


def load_clips(n: int, seconds: float, rate: int) -> np.ndarray:
    files = sorted(SAMPLES.glob("*.flac"))
    if not files:
        raise SystemExit(f"no sample clips in {SAMPLES} (scripts/make_samples.py makes them)")
    samples = int(seconds * rate)
    clips = []
    for i in range(n):
        y, file_rate = sf.read(files[i % len(files)], dtype="float32", always_2d=True)
        if file_rate != rate:
            y = librosa.resample(y.T, orig_sr=file_rate, target_sr=rate).T
        y = np.resize(y.mean(axis=1), samples)  # repeats a short file, cuts a long one
        clips.append(y.astype(np.float32))
    return np.stack(clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32, help="batch size (default: %(default)s)")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="clip length (default: %(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads for the fast row (default: %(default)s)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="default: %(default)s")
    parser.add_argument("--quick", action="store_true", help="4 clips, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.repeats = 4, 1
    config = LOGMEL
    waves = load_clips(args.clips, args.seconds, config.sample_rate)
    extractor = FeatureExtractor(config)

    with threadpool_limits(1):  # numpy/scipy BLAS and FFT on one thread, clip by clip
        librosa_features(waves[0], config)  # warm-up (numba compiles, filter banks are cached)
        t_librosa, reference = best_of(
            args.repeats, lambda: np.stack([librosa_features(y, config) for y in waves])
        )

    def torch_cpu(threads: int) -> tuple[float, np.ndarray]:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            batch = torch.from_numpy(waves)
            with torch.inference_mode():
                extractor(batch)  # warm-up
                seconds, out = best_of(args.repeats, lambda: extractor(batch))
            return seconds, out.numpy()
        finally:
            torch.set_num_threads(previous)

    rows = [("librosa, clip by clip, 1 thread", t_librosa, reference)]
    rows.append(("asc.features, batched, CPU, 1 thread", *torch_cpu(1)))
    if args.threads != 1:
        rows.append(
            (f"asc.features, batched, CPU, {args.threads} threads", *torch_cpu(args.threads))
        )
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if device.type == "cuda":
        on_device = extractor.to(device)

        def gpu():
            with torch.inference_mode():
                out = on_device(torch.from_numpy(waves).to(device))
                torch.cuda.synchronize(device)
            return out

        gpu()  # warm-up
        seconds, out = best_of(args.repeats, gpu)
        name = torch.cuda.get_device_name(device)
        rows.append((f"asc.features, batched, {name} (copy included)", seconds, out.cpu().numpy()))

    print(
        f"# log-mel front end, {args.clips} clips of {args.seconds:g} s at {config.sample_rate} "
        f"Hz -> {tuple(reference.shape[1:])} each, best of {args.repeats}; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"librosa {librosa.__version__}"
    )
    print()
    print("| front end | clips/s | ratio to librosa | max abs difference from librosa |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for name, seconds, features in rows:
        if features.shape != reference.shape:
            raise RuntimeError(f"{name}: shape {features.shape}, librosa {reference.shape}")
        diff = float(np.abs(features - reference).max())
        worst = max(worst, diff)
        print(
            f"| {name} | {args.clips / seconds:.1f} | {t_librosa / seconds:.2f}x | {diff:.2e} |",
            flush=True,
        )
    print()
    verdict = "yes" if worst <= TOLERANCE else "NO"
    print(f"same values within {TOLERANCE:g} (absolute): {verdict}, max difference {worst:.2e}")
    if worst > TOLERANCE:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
