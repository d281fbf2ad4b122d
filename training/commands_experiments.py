"""``asc-train experiment codec-augmentation`` and ``experiment lossy-detection``: the papers'
experiments, each rerun as a report.

The experiment modules import torch; they are imported inside the command functions so that
building the parser (and ``--help``) stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asc.cli_options import EnvOptions
from asc.codecs.spec import parse_quantity, split_spec_list
from training import cli_flags
from training.detector_data import DS1_CODECS


def cmd_codec_augmentation(args: argparse.Namespace) -> int:
    from training.augment import parse_spec_list
    from training.experiments.codec_augmentation import (
        CodecAugmentationConfig,
        matrix_text,
        run_codec_augmentation,
        write_codec_augmentation_report,
    )

    cfg = CodecAugmentationConfig(
        data=Path(args.data),
        out=Path(args.out),
        conditions=args.conditions,
        codecs=tuple(parse_spec_list(args.codecs)),
        preset=args.preset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        epoch_size=args.epoch_size,
        max_clips_per_class=args.max_clips_per_class,
        seed=args.seed,
        device=args.device,
        fold=args.fold,
        cache_dir=Path(args.cache_dir),
        checkpoints=Path(args.checkpoints),
        workers=args.workers,
        quality_clips=args.quality_clips,
        resume=not args.no_resume,
        command=args.command_line,
    )
    results = run_codec_augmentation(cfg)
    print(matrix_text(results))
    written = write_codec_augmentation_report(cfg.out, results)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def cmd_lossy_detection(args: argparse.Namespace) -> int:
    from training.experiments.lossy_detection import LossyDetectionConfig, run_lossy_detection
    from training.experiments.lossy_detection_report import (
        table2_markdown,
        write_lossy_detection_report,
    )

    cfg = LossyDetectionConfig(
        data=Path(args.data),
        out=Path(args.out),
        codecs=tuple(split_spec_list(args.codecs)),
        cutoffs_hz=tuple(parse_quantity(c, "cutoff") for c in args.cutoffs.split(",")),
        mask_prob=args.mask_prob,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        max_tracks=args.max_tracks,
        threshold=args.threshold,
        saliency_examples=args.saliency_examples,
        seed=args.seed,
        device=args.device,
        cache_dir=Path(args.cache_dir),
        checkpoints=Path(args.checkpoints),
        workers=args.workers,
        command=args.command_line,
    )
    run = run_lossy_detection(cfg)
    print(table2_markdown(run.results))
    written = write_lossy_detection_report(cfg.out, run, cfg.saliency_examples)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def cmd_detector_families(args: argparse.Namespace) -> int:
    from training.experiments.detector_families import (
        DetectorFamiliesConfig,
        run_detector_families,
    )
    from training.experiments.detector_families_report import write_detector_families_report

    cfg = DetectorFamiliesConfig(
        checkpoint=Path(args.checkpoint),
        data=[Path(d) for d in args.data],
        out=Path(args.out),
        codecs=split_spec_list(args.codecs),
        seed=args.seed,
        max_tracks=args.max_tracks,
        threshold=args.threshold,
        device=args.device,
        cache_dir=Path(args.cache_dir),
        workers=args.workers,
        grid_tests=not args.no_grid_tests,
        command=args.command_line,
    )
    run = run_detector_families(cfg)
    for name, source in run.results["sources"].items():
        missed = [r for r in source["goals"] if not r["met"]]
        print(f"{name}: {len(source['goals']) - len(missed)} of {len(source['goals'])} goals met")
        for r in missed:
            print(f"  {r['family']} {r['goal']}: {r['measured']:.3f}, short by {r['short_by']:.3f}")
    written = write_detector_families_report(cfg.out, run)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def condition_list(text: str) -> tuple[int, ...]:
    try:
        chosen = tuple(sorted({int(c) for c in text.split(",")}))
    except ValueError:
        chosen = ()
    if not chosen or not all(1 <= c <= 7 for c in chosen):
        raise argparse.ArgumentTypeError(f"{text!r}: give condition numbers 1 to 7, e.g. 2,7")
    return chosen


def add_experiment_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="reproduce a paper's experiment as a report")
    experiments = p.add_subparsers(dest="experiment", required=True)
    _add_codec_augmentation(experiments)
    _add_lossy_detection(experiments)
    _add_detector_families(experiments)


def _add_codec_augmentation(experiments: argparse._SubParsersAction) -> None:
    opts = EnvOptions(
        experiments.add_parser(
            "codec-augmentation",
            help="the ASC paper's Table 3: the FCNN under seven codec-augmented training "
            "conditions",
        )
    )
    cli_flags.scene_data(opts)
    cli_flags.required(opts, "--out", "report folder")
    cli_flags.named_default(
        opts,
        "--conditions",
        "1,2,3,4,5,6,7",
        "all seven",
        type=condition_list,
        help="which training conditions, e.g. 2,7, to rerun only some",
    )
    opts.add(
        "--codecs",
        default="none,aac:32k,mp3:64k,mp3:32k,aac:48k,aac:64k,opus:64k,sbc:64k",
        help="comma-separated evaluation paths; 'none' is the uncoded audio",
    )
    cli_flags.preset(opts)
    cli_flags.scene_training(opts, epochs=30, lr=2e-3)
    opts.add(
        "--epoch-size",
        type=int,
        help="examples per epoch, drawn at random; smaller epochs cost less each",
        absent="none, every training example once",
    )
    opts.add(
        "--max-clips-per-class",
        type=int,
        help="fewer clips, for a quick run",
        absent="none, every clip",
    )
    opts.add(
        "--quality-clips",
        type=int,
        default=0,
        help="test clips per path scored with ViSQOL (about 1 s each on a CPU core); 0: none",
    )
    cli_flags.fold(opts, "to hold out")
    cli_flags.seed(opts, "every condition's training")
    cli_flags.device(opts)
    cli_flags.cache_dir(opts)
    opts.add(
        "--checkpoints",
        default=".cache/experiments/codec-augmentation",
        help="where each condition's model is written",
    )
    cli_flags.workers(opts, "coding the audio")
    opts.add(
        "--no-resume",
        action="store_true",
        help="retrain every condition from epoch 0 instead of resuming interrupted training",
        absent="off, resume",
    )
    opts.parser.set_defaults(run=cmd_codec_augmentation)


def _add_lossy_detection(experiments: argparse._SubParsersAction) -> None:
    opts = EnvOptions(
        experiments.add_parser(
            "lossy-detection",
            help="the detection paper's Tables 1 and 2: naive and masked detectors on DS1 and DS2",
        )
    )
    cli_flags.lossless_data(opts)
    cli_flags.required(opts, "--out", "report folder")
    opts.add(
        "--codecs",
        default=",".join(DS1_CODECS),
        help="DS1's codec settings, comma-separated",
    )
    opts.add(
        "--cutoffs",
        default="14k,16k,18k,20k",
        help="DS2's codec cutoff frequencies, comma-separated",
    )
    opts.add(
        "--mask-prob",
        type=float,
        default=1.0,
        help="the masked detector's cutoff-mask probability; the naive one has none",
    )
    cli_flags.detector_training(opts, "training epochs of each detector; fewer for a quick run")
    opts.add(
        "--threshold",
        type=float,
        default=0.5,
        help="detector score at or above which a file counts as lossy in the tables",
    )
    opts.add(
        "--saliency-examples",
        type=int,
        default=3,
        help="saliency maps drawn for the report (Figure 4)",
    )
    cli_flags.seed(opts, "the split, codec choice per track and training")
    cli_flags.device(opts)
    cli_flags.cache_dir(opts)
    opts.add(
        "--checkpoints",
        default=".cache/experiments/lossy-detection",
        help="where the two detectors are written",
    )
    cli_flags.workers(opts, "coding the tracks")
    opts.parser.set_defaults(run=cmd_lossy_detection)


def _add_detector_families(experiments: argparse._SubParsersAction) -> None:
    opts = EnvOptions(
        experiments.add_parser(
            "detector-families",
            help="a trained lossy detector on real and generated test tracks through every codec "
            "family: goals per family, confusion, F1, calibration, saliency",
        )
    )
    cli_flags.required(opts, "--checkpoint", "the lossy detector to score (.safetensors)")
    cli_flags.lossless_roots(opts)
    cli_flags.required(opts, "--out", "report folder")
    cli_flags.named_default(
        opts,
        "--codecs",
        "device",
        "every family at a device's settings",
        help="comma-separated codec paths each test track is coded through; 'device' and 'ds1' "
        "name the lists of training/detector_data.py",
    )
    opts.add(
        "--max-tracks",
        type=int,
        help="use only the first N tracks of each folder, as fit-detector's --max-tracks; give "
        "the detector's own value so the test split is the one it never trained on",
        absent="none, every track",
    )
    opts.add(
        "--threshold",
        type=float,
        default=0.5,
        help="mean lossy probability at or above which a file is called lossy",
    )
    opts.add(
        "--no-grid-tests",
        action="store_true",
        help="score with the network alone, without the SBC and MDCT grid tests "
        "(asc.codecs.grid_tests) that the report otherwise runs on every file beside it",
    )
    cli_flags.seed(opts, "the split; give the detector's training seed to test held-out tracks")
    cli_flags.device(opts)
    cli_flags.cache_dir(opts)
    cli_flags.workers(opts, "coding the test tracks and the grid tests")
    opts.parser.set_defaults(run=cmd_detector_families)
