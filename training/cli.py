"""``asc-train``: generate corpora, train both papers' models, and describe checkpoints."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from asc.codecs.errors import CodecError
from asc.codecs.spec import parse_quantity, split_spec_list
from training.fit_detector import DS1_CODECS


def cmd_synth(args: argparse.Namespace) -> int:
    from training.synth import write_scene_corpus

    if args.clips_per_class < 2:
        print(
            "asc-train: error: --clips-per-class must be at least 2 (one clip for each side of "
            "the train/test split)",
            file=sys.stderr,
        )
        return 2
    out = write_scene_corpus(
        Path(args.out),
        args.clips_per_class,
        seed=args.seed,
        seconds=args.seconds,
        workers=args.workers,
    )
    print(f"wrote a generated scene corpus (TAU 2020 Mobile layout) to {out}")
    return 0


def cmd_synth_lossless(args: argparse.Namespace) -> int:
    from training.lossless import write_lossless_corpus

    out = write_lossless_corpus(
        Path(args.out), args.tracks, seed=args.seed, seconds=args.seconds, workers=args.workers
    )
    print(f"wrote a generated lossless corpus to {out}")
    return 0


def cmd_fit_ensemble(args: argparse.Namespace) -> int:
    from training.fit_scene import SceneTrainConfig, fit_ensemble

    cfg = SceneTrainConfig(
        data=Path(args.data),
        out=Path(args.out),
        preset=args.preset,
        augment_codecs=args.augment_codecs or [],
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        mixup_alpha=0.0 if args.no_baseline_augment else args.mixup,
        crop_frames=0 if args.no_baseline_augment else args.crop_frames,
        spec_masks=not args.no_baseline_augment,
        band_limit=args.band_limit,
        cache_dir=Path(args.cache_dir),
        workers=args.workers,
        resume=not args.no_resume,
        architectures=tuple(args.architectures.split(",")),
        coarse=not args.fine_only,
        max_clips_per_class=args.max_clips_per_class,
        epoch_size=args.epoch_size,
        fold=args.fold,
    )
    checkpoint = fit_ensemble(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only the first process reports
        print(f"wrote {cfg.out}: clean test accuracy {checkpoint.metrics['test_accuracy']:.3f}")
    return 0


def cmd_fit_detector(args: argparse.Namespace) -> int:
    from training.fit_detector import DetectorTrainConfig, fit_detector

    cfg = DetectorTrainConfig(
        data=Path(args.data),
        out=Path(args.out),
        codecs=args.codecs,
        mask_prob=args.mask_prob,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        cache_dir=Path(args.cache_dir),
        workers=args.workers,
        max_tracks=args.max_tracks,
    )
    checkpoint = fit_detector(cfg)
    print(f"wrote {cfg.out}: test file accuracy {checkpoint.metrics['test_accuracy']:.3f}")
    return 0


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
    from training.experiments.lossy_detection import (
        LossyDetectionConfig,
        run_lossy_detection,
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


def cmd_describe(args: argparse.Namespace) -> int:
    from asc.checkpoint import load
    from asc.models.scene import PRESETS, SceneEnsemble, count_parameters

    if args.checkpoint is None:
        classes = [f"class{i}" for i in range(10)]
        print("parameters per preset (10 fine classes, 3 coarse):")
        for preset in PRESETS:
            model = SceneEnsemble(classes, ["a", "b", "c"], [i % 3 for i in range(10)], preset)
            parts = {
                f"{k}/{a}": count_parameters(m)
                for k, group in (("fine", model.fine), ("coarse", model.coarse))
                for a, m in group.items()
            }
            detail = ", ".join(f"{k} {v:,}" for k, v in parts.items())
            print(f"  {preset:8} {count_parameters(model):>12,}  ({detail})")
        return 0
    checkpoint = load(args.checkpoint)
    meta = {
        "kind": checkpoint.kind,
        "config": checkpoint.config,
        "features": checkpoint.features.to_dict(),
        "codec_conditions": checkpoint.codec_conditions,
        "data_fingerprint": checkpoint.data_fingerprint,
        "metrics": {k: v for k, v in checkpoint.metrics.items() if k != "history"},
        "extra": checkpoint.extra,
    }
    print(json.dumps(meta, indent=2))
    model = checkpoint.model
    print(f"parameters: {count_parameters(model):,}")
    for name, child in model.named_children():
        for sub, module in getattr(child, "items", lambda: [])():
            print(f"  {name}/{sub}: {count_parameters(module):,}")
    return 0


def condition_list(text: str) -> tuple[int, ...]:
    try:
        chosen = tuple(sorted({int(c) for c in text.split(",")}))
    except ValueError:
        chosen = ()
    if not chosen or not all(1 <= c <= 7 for c in chosen):
        raise argparse.ArgumentTypeError(f"{text!r}: give condition numbers 1 to 7, e.g. 2,7")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asc-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write the generated scene corpus (TAU 2020 Mobile layout)")
    p.add_argument("--out", required=True)
    p.add_argument("--clips-per-class", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int)
    p.set_defaults(run=cmd_synth)

    p = sub.add_parser("synth-lossless", help="write the generated lossless corpus")
    p.add_argument("--out", required=True)
    p.add_argument("--tracks", type=int, default=300)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int)
    p.set_defaults(run=cmd_synth_lossless)

    p = sub.add_parser("fit-ensemble", help="train the two-stage scene ensemble")
    p.add_argument("--data", required=True, help="TAU 2020 Mobile, ESC-50, or a folder per class")
    p.add_argument("--fold", type=int, default=1, help="TAU fold files / ESC-50 test fold")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--preset", default="compact", choices=("compact", "paper"))
    p.add_argument(
        "--augment-codecs",
        type=str,
        default="",
        help='codec paths whose coded copies join training, e.g. "mp3:64k,aac:32k"',
    )
    p.add_argument("--architectures", default="fcnn,fsfcnn,resnet")
    p.add_argument("--fine-only", action="store_true", help="no coarse sub-models")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--mixup", type=float, default=0.4)
    p.add_argument("--crop-frames", type=int, default=400)
    p.add_argument(
        "--band-limit",
        type=float,
        default=0.0,
        help="share of examples whose upper bands are cut at a random 4-16 kHz, as a codec's "
        "lowpass would (robustness to codecs never trained on); default 0",
    )
    p.add_argument(
        "--no-baseline-augment",
        action="store_true",
        help="turn off mixup, random crop and spectrum masking",
    )
    p.add_argument("--max-clips-per-class", type=int)
    p.add_argument(
        "--epoch-size",
        type=int,
        help="examples per epoch, drawn at random (default: all clips x conditions)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--cache-dir", default=".cache/coded")
    p.add_argument("--workers", type=int)
    p.add_argument("--no-resume", action="store_true")
    p.set_defaults(run=cmd_fit_ensemble)

    p = sub.add_parser("fit-detector", help="train the lossy-compression detector")
    p.add_argument("--data", required=True, help="a folder of lossless .wav/.flac tracks")
    p.add_argument("--out", required=True)
    p.add_argument("--codecs", default=",".join(DS1_CODECS), help="codec paths to detect")
    p.add_argument("--mask-prob", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-tracks", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=".cache/coded")
    p.add_argument("--workers", type=int)
    p.set_defaults(run=cmd_fit_detector)

    p = sub.add_parser(
        "evaluate", help="accuracy of an ensemble per codec path, as a report with plots"
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--fold", type=int, default=1, help="TAU fold files / ESC-50 test fold")
    p.add_argument("--codecs", default="none,aac:64k,mp3:64k,opus:32k,he-aac:32k,sbc:64k,mp3:32k")
    p.add_argument(
        "--chains", default="", help='extra chained paths, e.g. "sbc:bitpool=53>aac:64k"'
    )
    p.add_argument(
        "--out", help="report folder: results.json, results.csv, README.md and PNG plots"
    )
    p.add_argument(
        "--quality-clips",
        type=int,
        default=20,
        help="test clips per path scored with ViSQOL (about 1 s each on a CPU core); 0: none",
    )
    p.add_argument("--max-clips-per-class", type=int, help="evaluate on fewer test clips")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=".cache/coded")
    p.add_argument("--workers", type=int)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("experiment", help="reproduce a paper's experiment as a report")
    experiments = p.add_subparsers(dest="experiment", required=True)

    p = experiments.add_parser(
        "codec-augmentation",
        help="the ASC paper's Table 3: the FCNN under seven codec-augmented training conditions",
    )
    p.add_argument("--data", required=True, help="TAU 2020 Mobile, ESC-50, or a folder per class")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument(
        "--conditions",
        type=condition_list,
        default=(1, 2, 3, 4, 5, 6, 7),
        help="which training conditions, e.g. 2,7 (default: all seven)",
    )
    p.add_argument(
        "--codecs",
        default="none,aac:32k,mp3:64k,mp3:32k,aac:48k,aac:64k,opus:64k,sbc:64k",
        help="evaluation paths",
    )
    p.add_argument("--preset", default="compact", choices=("compact", "paper"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--epoch-size",
        type=int,
        help="examples per epoch, drawn at random (default: every training example once)",
    )
    p.add_argument("--max-clips-per-class", type=int, help="fewer clips, for a quick run")
    p.add_argument(
        "--quality-clips", type=int, default=0, help="test clips per path scored with ViSQOL"
    )
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--cache-dir", default=".cache/coded")
    p.add_argument(
        "--checkpoints",
        default=".cache/experiments/codec-augmentation",
        help="where each condition's model is written",
    )
    p.add_argument("--workers", type=int)
    p.add_argument("--no-resume", action="store_true")
    p.set_defaults(run=cmd_codec_augmentation)

    p = experiments.add_parser(
        "lossy-detection",
        help="the detection paper's Tables 1 and 2: naive and masked detectors on DS1 and DS2",
    )
    p.add_argument("--data", required=True, help="a folder of lossless .wav/.flac tracks")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--codecs", default=",".join(DS1_CODECS), help="DS1's codec settings")
    p.add_argument("--cutoffs", default="14k,16k,18k,20k", help="DS2's codec cutoffs")
    p.add_argument("--mask-prob", type=float, default=1.0, help="the masked detector's")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-tracks", type=int, help="use only the first N tracks")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--saliency-examples", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=".cache/coded")
    p.add_argument(
        "--checkpoints",
        default=".cache/experiments/lossy-detection",
        help="where the two detectors are written",
    )
    p.add_argument("--workers", type=int)
    p.set_defaults(run=cmd_lossy_detection)

    p = sub.add_parser("describe", help="a checkpoint's metadata, or parameters per preset")
    p.add_argument("checkpoint", nargs="?")
    p.set_defaults(run=cmd_describe)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["asc-train", *argv])  # for reports: how to repeat the run
    from asc.checkpoint import CheckpointError
    from asc.features import FeatureConfigError
    from training.datasets import DatasetError
    from training.fit_detector import LosslessDataError

    try:
        return args.run(args)
    except (CodecError, CheckpointError, DatasetError, FeatureConfigError, LosslessDataError) as e:
        print(f"asc-train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
