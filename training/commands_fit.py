"""``asc-train fit-ensemble``, ``fit-detector`` and ``describe``: train models, read checkpoints.

The training modules import torch; they are imported inside the command functions so that
building the parser (and ``--help``) stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from asc.cli_options import EnvOptions
from training import cli_flags
from training.detector_data import DEVICE_CODECS, DS1_CODECS
from training.spec_augment import JITTER_HIGH, JITTER_LOW


def spread(text: str) -> tuple[float, float]:
    """LOW,HIGH: the range a spread is drawn from, 0 <= LOW <= HIGH."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give LOW,HIGH (two numbers), got {text!r}") from None
    if not 0.0 <= low <= high:
        raise argparse.ArgumentTypeError(f"need 0 <= LOW <= HIGH, got {text!r}")
    return low, high


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
        jitter=args.jitter,
        jitter_spread=args.jitter_spread,
        consistency=args.consistency,
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
        data=[Path(d) for d in args.data],
        out=Path(args.out),
        codecs=args.codecs,
        copies_per_track=args.copies_per_track,
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
        resume=not args.no_resume,
    )
    checkpoint = fit_detector(cfg)
    print(f"wrote {cfg.out}: test file accuracy {checkpoint.metrics['test_accuracy']:.3f}")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from asc.checkpoint import load
    from asc.models.scene import count_parameters

    if args.checkpoint is None:
        print_preset_sizes()
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


def print_preset_sizes() -> None:
    """Parameters of each preset's ensemble, built for TAU's 10 fine and 3 coarse classes."""
    from asc.models.scene import PRESETS, SceneEnsemble, count_parameters

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


def add_fit_commands(sub: argparse._SubParsersAction) -> None:
    opts = EnvOptions(sub.add_parser("fit-ensemble", help="train the two-stage scene ensemble"))
    cli_flags.scene_data(opts)
    cli_flags.fold(opts, "to hold out")
    _ensemble_model_flags(opts)
    cli_flags.scene_training(opts, epochs=30, lr=2e-3)
    _ensemble_augment_flags(opts)
    cli_flags.seed(opts, "initialisation, shuffling and augmentation")
    cli_flags.device(opts)
    cli_flags.cache_dir(opts)
    cli_flags.workers(opts, "coding the training audio through --augment-codecs")
    _no_resume(opts)
    opts.parser.set_defaults(run=cmd_fit_ensemble)

    opts = EnvOptions(sub.add_parser("fit-detector", help="train the lossy-compression detector"))
    cli_flags.lossless_roots(opts)
    _out_with_state(opts)
    cli_flags.named_default(
        opts,
        "--codecs",
        ",".join(DS1_CODECS),
        "the paper's DS1",
        help="comma-separated codec paths the detector learns to recognise; each track is "
        f"coded with --copies-per-track of them. 'ds1' names the paper's list, 'device' every "
        f"family of the engine at a device's settings ({len(DEVICE_CODECS)} paths, "
        "training/detector_data.py)",
    )
    opts.add(
        "--copies-per-track",
        type=int,
        default=1,
        help="coded copies of each track, distinct settings drawn with every codec family "
        "equally likely; 1 is the paper's one copy",
    )
    opts.add(
        "--mask-prob",
        type=float,
        default=1.0,
        help="probability of the random cutoff mask on each example; 1.0 is the paper's masked "
        "detector, 0 the naive one that leans on the codec's lowpass",
    )
    cli_flags.detector_training(opts, "training epochs; fewer for a quick run")
    cli_flags.seed(opts, "the split, codec choice per track, crops and initialisation")
    cli_flags.device(opts)
    cli_flags.cache_dir(opts)
    cli_flags.workers(opts, "coding the tracks")
    _no_resume(opts)
    opts.parser.set_defaults(run=cmd_fit_detector)


def _out_with_state(opts: EnvOptions) -> None:
    """--out of a trainer that resumes: the state it resumes from lies next to the checkpoint."""
    cli_flags.required(
        opts,
        "--out",
        "checkpoint to write (.safetensors); an interrupted run's state is kept next to it as "
        "OUT.train-state.pt",
    )


def _no_resume(opts: EnvOptions) -> None:
    """Both trainers resume an interrupted run unless told not to, and say so the same way."""
    opts.add(
        "--no-resume",
        action="store_true",
        help="start from epoch 0 even when an interrupted run of the same data left "
        "OUT.train-state.pt",
        absent="off, resume it",
    )


def _ensemble_model_flags(opts: EnvOptions) -> None:
    """fit-ensemble: where the checkpoint goes, and which model on which data."""
    _out_with_state(opts)
    cli_flags.preset(opts)
    opts.add(
        "--augment-codecs",
        type=str,
        default="",
        help='codec paths whose coded copies join training, e.g. "mp3:64k,aac:32k", for a '
        "model that holds up on those codecs",
        absent="none, uncoded audio only",
    )
    opts.add(
        "--architectures",
        default="fcnn,fsfcnn,resnet",
        help="comma-separated sub-models of the ensemble; fewer train faster",
    )
    opts.add(
        "--fine-only",
        action="store_true",
        help="train no coarse (indoor/outdoor/transport) sub-models, only the fine-class ones",
        absent="off, both stages",
    )


# long: one flat declaration per augmentation flag, nothing to split into steps
def _ensemble_augment_flags(opts: EnvOptions) -> None:
    """fit-ensemble: the augmentations that need no extra data, and how much data per epoch."""
    opts.add(
        "--mixup",
        type=float,
        default=0.4,
        help="mixup alpha, blending pairs of examples; 0 turns mixup off",
    )
    opts.add(
        "--crop-frames",
        type=int,
        default=400,
        help="random time crop, in spectrogram frames; 0 turns it off",
    )
    opts.add(
        "--band-limit",
        type=float,
        default=0.0,
        help="share of examples whose upper bands are cut at a random 4-16 kHz, as a codec's "
        "lowpass would (robustness to codecs never trained on); 0 turns it off",
    )
    opts.add(
        "--jitter",
        type=float,
        default=0.0,
        help="share of examples with level noise in every band, as a low-rate codec that keeps "
        "the band gives (robustness to codecs never trained on); 0 turns it off",
    )
    opts.add(
        "--jitter-spread",
        type=spread,
        default=f"{JITTER_LOW},{JITTER_HIGH}",
        metavar="LOW,HIGH",
        help="the level noise's spread, drawn per example between LOW and HIGH, in the clip's "
        "own standard deviations",
    )
    opts.add(
        "--consistency",
        type=float,
        default=0.0,
        help="weight of a Jensen-Shannon term between each coded copy's class probabilities "
        "and its original's (robustness to codecs never trained on); 0 turns it off",
    )
    opts.add(
        "--no-baseline-augment",
        action="store_true",
        help="turn off mixup, random crop and spectrum masking, e.g. to measure what codec "
        "augmentation alone does",
        absent="off, all three on",
    )
    opts.add(
        "--max-clips-per-class",
        type=int,
        help="train on at most this many clips per class, for a quick run",
        absent="none, every clip",
    )
    opts.add(
        "--epoch-size",
        type=int,
        help="examples per epoch, drawn at random; smaller epochs cost less each and still see "
        "every coded copy over the run",
        absent="none, all clips x conditions",
    )


def add_describe_command(sub: argparse._SubParsersAction) -> None:
    opts = EnvOptions(
        sub.add_parser("describe", help="a checkpoint's metadata, or parameters per preset")
    )
    opts.add(
        "checkpoint",
        nargs="?",
        help="checkpoint (.safetensors) to describe",
        absent="none, list the parameter counts of each --preset instead",
    )
    opts.parser.set_defaults(run=cmd_describe)
