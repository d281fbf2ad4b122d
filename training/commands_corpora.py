"""``asc-train synth``, ``synth-lossless`` and ``corpus-stats``: write and measure corpora."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asc.cli_options import EnvOptions
from training import cli_flags


def cmd_synth(args: argparse.Namespace) -> int:
    from training.corpora import write_scene_corpus

    if args.clips_per_class < 2:
        print(
            "asc-train: error: --clips-per-class must be at least 2 (one clip for each side of "
            "the train/test split)",
            file=sys.stderr,
        )
        return 2
    if args.brightness[0] > args.brightness[1]:
        print("asc-train: error: --brightness LOW,HIGH needs LOW <= HIGH", file=sys.stderr)
        return 2
    out = write_scene_corpus(
        Path(args.out),
        args.clips_per_class,
        seed=args.seed,
        seconds=args.seconds,
        workers=args.workers,
        brightness=args.brightness,
    )
    print(f"wrote a generated scene corpus (TAU 2020 Mobile layout) to {out}")
    return 0


def _db_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        expected = f"expected LOW,HIGH in dB per octave, got {text!r}"
        raise argparse.ArgumentTypeError(expected) from None
    return low, high


def cmd_synth_lossless(args: argparse.Namespace) -> int:
    from training.corpora import write_lossless_corpus

    out = write_lossless_corpus(
        Path(args.out), args.tracks, seed=args.seed, seconds=args.seconds, workers=args.workers
    )
    print(f"wrote a generated lossless corpus to {out}")
    return 0


def cmd_corpus_stats(args: argparse.Namespace) -> int:
    from training.corpus_stats import (
        codec_damage,
        compare,
        corpus_stats,
        corpus_stats_readme,
        damage_paths,
        damage_table,
        evenly_spaced,
        plot_ltas,
    )
    from training.datasets import load_dataset
    from training.report import write_json

    specs = damage_paths(args.codecs) if args.codecs else []  # a bad path fails before the work
    if args.codec_clips < 1:
        print("asc-train: error: --codec-clips must be at least 1", file=sys.stderr)
        return 2
    corpora, damage, damage_clips = {}, {}, {}
    for root in args.data:
        dataset = load_dataset(root)
        clips = dataset.clips[:: max(1, len(dataset.clips) // args.max_clips)]
        name = Path(root).name
        corpora[name] = corpus_stats([c.path for c in clips], [c.label for c in clips])
        if specs:
            coded = evenly_spaced(sorted(c.path for c in dataset.clips), args.codec_clips)
            damage[name] = codec_damage(coded, specs, args.workers)
            damage_clips[name] = len(coded)
    table = compare(corpora)
    print(table)
    damage_md = damage_table(damage) if specs else None
    if damage_md is not None:
        print()
        print(damage_md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        results: dict = {"corpora": corpora, "command": args.command_line}
        if specs:
            results["codec_damage"] = damage
            results["codec_damage_clips"] = damage_clips
        write_json(out / "corpus_stats.json", results)
        plot_ltas(corpora, out / "ltas.png")
        readme = corpus_stats_readme(table, args.command_line, damage_md, damage_clips)
        (out / "README.md").write_text(readme)
        print(f"wrote {out / 'corpus_stats.json'}, {out / 'README.md'}, {out / 'ltas.png'}")
    return 0


def add_synth_commands(sub: argparse._SubParsersAction) -> None:
    opts = EnvOptions(
        sub.add_parser("synth", help="write the generated scene corpus (TAU 2020 Mobile layout)")
    )
    cli_flags.required(
        opts, "--out", "folder to write the corpus to (audio/, meta.csv, evaluation_setup/)"
    )
    opts.add(
        "--clips-per-class",
        type=int,
        default=100,
        help="clips generated for each of the 10 scene classes, at least 2; fewer for a quick "
        "smoke test, more for a larger corpus",
    )
    opts.add(
        "--seconds",
        type=float,
        default=10.0,
        help="length of each clip; 10 s matches TAU 2020 Mobile",
    )
    opts.add(
        "--brightness",
        type=_db_range,
        default=(0.0, 0.0),
        help="LOW,HIGH: tilt each clip's spectrum by a slope drawn from this range, in dB per "
        "octave around 1 kHz (a close microphone, a bright capsule); 0,0 leaves generator "
        "2.0's clips as they are",
    )
    cli_flags.seed(opts, "the generator; the same seed writes byte-identical files")
    cli_flags.workers(opts, "generating clips (any count writes the same files)")
    opts.parser.set_defaults(run=cmd_synth)

    opts = EnvOptions(sub.add_parser("synth-lossless", help="write the generated lossless corpus"))
    cli_flags.required(opts, "--out", "folder to write the corpus to (audio/ and meta.csv)")
    opts.add(
        "--tracks",
        type=int,
        default=300,
        help="stereo 44.1 kHz 16-bit tracks to generate; fewer for a quick run",
    )
    opts.add("--seconds", type=float, default=10.0, help="length of each track")
    cli_flags.seed(opts, "the generator; the same seed writes the same tracks")
    cli_flags.workers(opts, "generating tracks")
    opts.parser.set_defaults(run=cmd_synth_lossless)


def add_corpus_stats_command(sub: argparse._SubParsersAction) -> None:
    opts = EnvOptions(
        sub.add_parser(
            "corpus-stats",
            help="level, crest factor, energy and class cues above codec cutoffs, corpora side "
            "by side",
        )
    )
    cli_flags.required(
        opts,
        "--data",
        "a data set in any layout --data accepts elsewhere; give it once per corpus to compare",
        action="append",
    )
    opts.add(
        "--max-clips",
        type=int,
        default=600,
        help="clips measured per corpus, spread evenly over it",
    )
    opts.add(
        "--codecs",
        help="codec paths (e.g. sbc:64k,opus:64k) to code sampled clips through, measuring per "
        "mel-band group what each does to the model's log-mel features: a second table, and "
        "codec_damage in corpus_stats.json",
        absent="none, no codec is run",
    )
    opts.add(
        "--codec-clips",
        type=int,
        default=80,
        help="clips per corpus coded for --codecs, spread evenly over its clips in path order",
    )
    cli_flags.workers(opts, "coding clips for --codecs")
    opts.add(
        "--out",
        help="folder for corpus_stats.json, README.md (the tables) and ltas.png",
        absent="none, print the tables only",
    )
    opts.parser.set_defaults(run=cmd_corpus_stats)
