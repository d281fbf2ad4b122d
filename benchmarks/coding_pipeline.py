"""Training data pipeline: coded copies per second, the engine's workers against ffmpeg per clip.

Run: .venv/bin/python -m benchmarks.coding_pipeline [--specs mp3:64k,aac:32k,opus:32k]
     [--clips-per-class 4] [--seconds 10] [--workers 2] [--data DIR] [--quick]

The clips are a generated scene corpus (``asc-train synth``, made in a temporary folder unless
``--data`` names one). For each codec path, side by side, with the same number of clips in
flight at once (``--workers``):

- the engine: ``training.augment.CodedCache.ensure`` into an empty cache, the code that makes
  training's coded copies (spawned worker processes, each loading the clip, coding it through
  the stream engine and back, measuring it, and writing a 16-bit FLAC aligned with the source);
- ``ffmpeg`` encode only: one Debian ``ffmpeg`` command-line process per clip writing the coded
  file (what a shell loop over the corpus would do first);
- ``ffmpeg`` encode | decode: the like-for-like coded copy, one ``ffmpeg`` encoding to a pipe and
  one decoding it to 16-bit FLAC per clip.

Same settings: mp3 is LAME CBR, aac FFmpeg's native AAC-LC, opus libopus at 48 kHz (VBR,
``application=audio``, 20 ms frames), vorbis libvorbis, at the spec's bitrate and cutoff. The
last column says how far each pipeline's copies are from the source's length: the engine
removes the codec delay and padding, the command line keeps them.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf

from asc.codecs import resolve
from training.augment import CodedCache, canonical

RATE = 44100
SPECS = "mp3:64k,aac:32k,opus:32k"
# codec name -> (ffmpeg encoder, muxer (also the file extension), demuxer, extra options)
FFMPEG = {
    "mp3": ("libmp3lame", "mp3", "mp3", []),
    "aac": ("aac", "adts", "aac", []),
    "opus": (
        "libopus",
        "ogg",
        "ogg",
        ["-application", "audio", "-frame_duration", "20", "-ar", "48000"],
    ),
    "vorbis": ("libvorbis", "ogg", "ogg", []),
}


def ffmpeg_encode_args(spec: str) -> tuple[list[str], str, str]:
    """The ffmpeg output options for ``spec`` (one hop), its muxer and its demuxer."""
    stages = resolve(spec, RATE, 1)
    r = stages[-1]
    if len(stages) > 1 or r.name not in FFMPEG:
        raise SystemExit(f"{spec}: no ffmpeg command-line equivalent here (have {list(FFMPEG)})")
    encoder, muxer, demuxer, extra = FFMPEG[r.name]
    args = ["-ac", "1", "-c:a", encoder, *extra]
    if r.bitrate is not None:
        args += ["-b:a", str(r.bitrate)]
    if r.cutoff is not None:
        args += ["-cutoff", str(r.cutoff)]
    if r.vbr is not None:
        args += ["-vbr", {"off": "0", "on": "1", "constrained": "2"}.get(r.vbr, r.vbr)]
    return args, muxer, demuxer


FF = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def ffmpeg_encode(source: Path, out: Path, spec: str) -> None:
    args, muxer, _ = ffmpeg_encode_args(spec)
    subprocess.run([*FF, "-i", str(source), *args, "-f", muxer, str(out)], check=True)


def ffmpeg_roundtrip(source: Path, out: Path, spec: str) -> None:
    args, muxer, demuxer = ffmpeg_encode_args(spec)
    encode = subprocess.Popen(
        [*FF, "-i", str(source), *args, "-f", muxer, "pipe:1"], stdout=subprocess.PIPE
    )
    to_flac = ["-ar", str(RATE), "-ac", "1", "-c:a", "flac", "-sample_fmt", "s16", str(out)]
    decode = subprocess.run([*FF, "-f", demuxer, "-i", "pipe:0", *to_flac], stdin=encode.stdout)
    encode.stdout.close()
    if encode.wait() != 0 or decode.returncode != 0:
        raise RuntimeError(f"ffmpeg failed on {source} ({spec})")


def run_parallel(work, jobs: list[tuple], workers: int) -> float:
    """Seconds to run ``work(*job)`` for every job, ``workers`` at a time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda job: work(*job), jobs))
    return time.perf_counter() - start


def length_error(pairs: list[tuple[Path, Path]]) -> int:
    """The largest |output length - source length| in samples at the source's rate."""
    worst = 0
    for source, out in pairs:
        src, dst = sf.info(str(source)), sf.info(str(out))
        worst = max(worst, abs(round(dst.frames * src.samplerate / dst.samplerate) - src.frames))
    return worst


def make_corpus(out: Path, clips_per_class: int, seconds: float, workers: int) -> None:
    script = Path(sys.executable).with_name("asc-train")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "training.cli"]
    size = ["--clips-per-class", str(clips_per_class), "--seconds", f"{seconds:g}"]
    size += ["--workers", str(workers)]
    done = subprocess.run(
        [*cmd, "synth", "--out", str(out), *size, "--seed", "0"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"asc-train synth failed: {done.stderr.strip().splitlines()[-1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--specs", default=SPECS, help="comma list of codec paths (default: %(default)s)"
    )
    parser.add_argument("--data", type=Path, help="a corpus folder (audio/*.wav); default: made")
    parser.add_argument(
        "--clips-per-class",
        type=int,
        default=4,
        help="for the made corpus (at least 2) (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="for the made corpus (default: %(default)s)"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="default: %(default)s"
    )
    parser.add_argument(
        "--clips",
        type=int,
        default=0,
        help="code the first N clips (0: all) (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds; the best of each is kept (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="6 clips of 1 s")
    args = parser.parse_args()
    if args.quick:
        args.clips_per_class, args.seconds, args.clips = 2, 1.0, args.clips or 6
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is not installed (scripts/setup-system.sh installs it)")
    specs = [s.strip() for s in args.specs.split(",") if s.strip()]
    for spec in specs:
        ffmpeg_encode_args(spec)  # refuse a path without an equivalent before any work

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if data is None:
            data = tmp / "corpus"
            small = args.clips_per_class * args.seconds <= 20  # a worker pool costs more
            make_corpus(data, args.clips_per_class, args.seconds, 1 if small else args.workers)
        sources = sorted((data / "audio").glob("*.wav")) or sorted(data.rglob("*.wav"))
        sources = sources[: args.clips] if args.clips else sources
        if not sources:
            raise SystemExit(f"{data}: no .wav clips")
        audio = sum(sf.info(str(s)).duration for s in sources)
        version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True)
        print(
            f"# coded copies of {len(sources)} clips ({audio:.0f} s of audio), "
            f"{args.workers} at a time, best of {args.repeats}; "
            f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores; {version.stdout.split(' Copyright')[0]}"
        )
        print()
        print(
            "| path | engine workers (copies/s) | ffmpeg encode only (copies/s) "
            "| ffmpeg encode, decode to FLAC (copies/s) | engine / encode only "
            "| engine / encode + decode | length off by, samples (engine / ffmpeg) |"
        )
        print("|---|---:|---:|---:|---:|---:|---|")
        for n, spec in enumerate(specs):
            _, muxer, _ = ffmpeg_encode_args(spec)
            t_engine = t_encode = t_roundtrip = float("inf")
            for r in range(args.repeats):  # the three in turn, each round, best of the rounds
                cache = CodedCache(tmp / f"cache{n}-{r}", rate=RATE, channels=1)
                start = time.perf_counter()
                made = cache.ensure(sources, [spec], workers=args.workers, progress=False)
                t_engine = min(t_engine, time.perf_counter() - start)
                coded = [made[(s, canonical(spec))] for s in sources]

                encoded_dir, decoded_dir = tmp / f"ffmpeg-enc{n}-{r}", tmp / f"ffmpeg-dec{n}-{r}"
                encoded_dir.mkdir()
                decoded_dir.mkdir()
                encoded = [(s, encoded_dir / f"{s.stem}.{muxer}", spec) for s in sources]
                t_encode = min(t_encode, run_parallel(ffmpeg_encode, encoded, args.workers))
                flacs = [decoded_dir / f"{s.stem}.flac" for s in sources]
                jobs = [(s, f, spec) for s, f in zip(sources, flacs, strict=True)]
                t_roundtrip = min(t_roundtrip, run_parallel(ffmpeg_roundtrip, jobs, args.workers))
            rates = [len(sources) / t for t in (t_engine, t_encode, t_roundtrip)]
            print(
                f"| `{spec}` | {rates[0]:.2f} | {rates[1]:.2f} | {rates[2]:.2f} "
                f"| {t_encode / t_engine:.2f}x | {t_roundtrip / t_engine:.2f}x "
                f"| {length_error(list(zip(sources, coded, strict=True)))} / "
                f"{length_error(list(zip(sources, flacs, strict=True)))} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
