"""``asc-train evaluate``, ``rate-accuracy``, ``compare`` and ``summarize-folds``: score trained
ensembles.

The scoring modules import torch; they are imported inside the command functions so that
building the parser (and ``--help``) stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asc.cli_options import EnvOptions
from training import cli_flags


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_ensemble
    from training.report import paths_table, write_evaluation_report

    codecs = args.codecs + ("," + args.chains if args.chains else "")
    evaluation = evaluate_ensemble(
        args.checkpoint,
        args.data,
        codecs,
        device=args.device,
        cache_dir=args.cache_dir,
        workers=args.workers,
        fold=args.fold,
        quality_clips=args.quality_clips,
        max_clips_per_class=args.max_clips_per_class,
    )
    results = evaluation.to_dict()
    quality = results["quality_metric"]["short"] if results["quality_metric"] else None
    print(paths_table(results["paths"], quality))
    if args.out:
        written = write_evaluation_report(Path(args.out), results, args.command_line)
        print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def cmd_rate_accuracy(args: argparse.Namespace) -> int:
    from training.rate_accuracy import rate_accuracy, write_rate_accuracy_report

    try:
        results = rate_accuracy(
            [Path(c) for c in args.checkpoint],
            Path(args.data),
            [f.strip() for f in args.families.split(",") if f.strip()],
            fold=args.fold,
            device=args.device,
            cache_dir=Path(args.cache_dir),
            workers=args.workers,
            max_clips_per_class=args.max_clips_per_class,
        )
    except ValueError as e:
        print(f"asc-train: error: {e}", file=sys.stderr)
        return 2
    for r in results["comparisons"]:
        span = f"{r['kbps_from']:.0f}-{r['kbps_to']:.0f} kbps"
        gain = f"{100 * r['difference']:+.1f} points"
        print(f"{r['kind']:6} {r['within']:>24}: {r['b']} - {r['a']} = {gain} over {span}")
    if args.out:
        written = write_rate_accuracy_report(Path(args.out), results, args.command_line)
        print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def cmd_summarize_folds(args: argparse.Namespace) -> int:
    from training.experiments.fold_summary import summarize, write_summary

    try:
        results = summarize(Path(args.folder), seed=args.seed)
    except ValueError as e:
        print(f"asc-train: error: {e}", file=sys.stderr)
        return 2
    written = write_summary(Path(args.folder), results, args.command_line)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from training.compare_reports import compare, comparison_table

    try:
        result = compare(Path(args.a), Path(args.b), seed=args.seed)
    except (OSError, ValueError, KeyError) as e:
        print(f"asc-train: error: {e}", file=sys.stderr)
        return 2
    print(comparison_table(result))
    return 0


def add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    opts = EnvOptions(
        sub.add_parser(
            "evaluate", help="accuracy of an ensemble per codec path, as a report with plots"
        )
    )
    cli_flags.required(opts, "--checkpoint", "scene ensemble checkpoint (.safetensors) to evaluate")
    cli_flags.scene_data(opts)
    cli_flags.fold(opts, "to evaluate on; use the fold the model was trained with")
    opts.add(
        "--codecs",
        default="none,aac:64k,mp3:64k,opus:32k,he-aac:32k,sbc:64k,mp3:32k",
        help="comma-separated codec paths to score the test clips through; 'none' is the "
        "uncoded audio",
    )
    opts.add(
        "--chains",
        default="",
        help='extra chained paths, e.g. "sbc:bitpool=53>aac:64k"',
        absent="none",
    )
    opts.add(
        "--out",
        help="report folder: results.json, results.csv, README.md and PNG plots",
        absent="none, print the table only",
    )
    opts.add(
        "--quality-clips",
        type=int,
        default=20,
        help="test clips per path scored with ViSQOL (about 1 s each on a CPU core); 0: none",
    )
    opts.add(
        "--max-clips-per-class",
        type=int,
        help="evaluate on fewer test clips, for a quick run",
        absent="none, every test clip",
    )
    cli_flags.device(opts)
    cli_flags.cache_dir(opts)
    cli_flags.workers(opts, "coding the test clips")
    opts.parser.set_defaults(run=cmd_evaluate)


def add_rate_accuracy_command(sub: argparse._SubParsersAction) -> None:
    opts = EnvOptions(
        sub.add_parser(
            "rate-accuracy",
            help="accuracy against bitrate per codec family, with a Bjøntegaard-style summary",
        )
    )
    cli_flags.required(
        opts,
        "--checkpoint",
        "scene ensemble checkpoint (.safetensors); give it twice to compare two training "
        "conditions family by family",
        action="append",
    )
    cli_flags.scene_data(opts)
    cli_flags.fold(opts, "to score on; use the fold the models were trained with")
    opts.add(
        "--families",
        default="opus,mp3,aac,he-aac,vorbis,sbc",
        help="codec families, each scored over its ladder of bitrates (training/rate_accuracy.py "
        "LADDERS)",
    )
    opts.add(
        "--out",
        help="report folder: results.json, README.md and one plot per model",
        absent="none, print the summary only",
    )
    opts.add(
        "--max-clips-per-class",
        type=int,
        help="score fewer test clips, for a quick run",
        absent="none, every test clip",
    )
    cli_flags.device(opts)
    cli_flags.cache_dir(opts)
    cli_flags.workers(opts, "coding the test clips")
    opts.parser.set_defaults(run=cmd_rate_accuracy)


def add_compare_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="two evaluation reports clip by clip: b minus a per path, with bootstrap intervals",
    )
    for name, which in (("a", "the model to compare against"), ("b", "the model compared")):
        p.add_argument(  # required and positional: nothing for EnvOptions to say about a default
            name,
            help=f"{which}: an `asc-train evaluate` report (folder or results.json) or a folder "
            "of fold*/results.json; both scored on the same test clips",
        )
    cli_flags.seed(EnvOptions(p), "the bootstrap's resampling")
    p.set_defaults(run=cmd_compare)


def add_summarize_folds_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summarize-folds",
        help="pool the fold reports of scripts/real-audio-reports.sh, with bootstrap intervals",
    )
    p.add_argument(  # required and positional: nothing for EnvOptions to say about a default
        "folder",
        help="folder holding codec-augmentation/, ensemble/ and ensemble-recipe/, each with "
        "fold*/results.json; the summary (README.md, results.json, a plot) is written there",
    )
    cli_flags.seed(EnvOptions(p), "the bootstrap's resampling")
    p.set_defaults(run=cmd_summarize_folds)
