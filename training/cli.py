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
    from training.corpora import write_scene_corpus

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
    from training.corpora import write_lossless_corpus

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


def cmd_corpus_stats(args: argparse.Namespace) -> int:
    from training.corpus_stats import compare, corpus_stats, plot_ltas
    from training.datasets import load_dataset
    from training.report import write_json

    corpora = {}
    for root in args.data:
        dataset = load_dataset(root)
        clips = dataset.clips[:: max(1, len(dataset.clips) // args.max_clips)]
        corpora[Path(root).name] = corpus_stats([c.path for c in clips], [c.label for c in clips])
    table = compare(corpora)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "corpus_stats.json", {"corpora": corpora, "command": args.command_line})
        plot_ltas(corpora, out / "ltas.png")
        (out / "corpus_stats.md").write_text(table + "\n")
        print(f"wrote {out / 'corpus_stats.json'}, {out / 'corpus_stats.md'}, {out / 'ltas.png'}")
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


def _seed(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help=f"random seed for {what}; change it for an independent repeat (default: %(default)s)",
    )


def _workers(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--workers",
        type=int,
        help=f"processes {what}; lower it to save memory or leave cores free "
        "(default: none, one per CPU core)",
    )


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (the first GPU if there is one, else the CPU), cpu, cuda or "
        "cuda:N (default: %(default)s)",
    )


def _cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        default=".cache/coded",
        help="where coded copies of the audio are kept and reused between runs; point it at a "
        "disk with room, or at a fresh folder to recode (default: %(default)s)",
    )


def _training(p: argparse.ArgumentParser, epochs: int, lr: float) -> None:
    p.add_argument(
        "--epochs",
        type=int,
        default=epochs,
        help="passes over the training data; fewer for a quick run (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="examples per optimiser step; lower it when GPU memory runs out "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=lr,
        help="peak learning rate (default: %(default)s)",
    )


def _scene_data(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="TAU 2020 Mobile, ESC-50, Kitchen20 or a folder per class (required)",
    )


def _fold(p: argparse.ArgumentParser, purpose: str) -> None:
    p.add_argument(
        "--fold",
        type=int,
        default=1,
        help=f"TAU fold files / ESC-50 or Kitchen20 test fold {purpose} (default: %(default)s)",
    )


def _preset(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        default="compact",
        choices=("compact", "paper"),
        help="model size: compact trains fast and serves cheaply, paper is the published size "
        "(`asc-train describe` lists both) (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Every flag's help ends with its default: ``(default: ...)``, or ``(required)``."""
    parser = argparse.ArgumentParser(prog="asc-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write the generated scene corpus (TAU 2020 Mobile layout)")
    p.add_argument(
        "--out",
        required=True,
        help="folder to write the corpus to (audio/, meta.csv, evaluation_setup/) (required)",
    )
    p.add_argument(
        "--clips-per-class",
        type=int,
        default=100,
        help="clips generated for each of the 10 scene classes, at least 2; fewer for a quick "
        "smoke test, more for a larger corpus (default: %(default)s)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="length of each clip; 10 s matches TAU 2020 Mobile (default: %(default)s)",
    )
    _seed(p, "the generator; the same seed writes byte-identical files")
    _workers(p, "generating clips (any count writes the same files)")
    p.set_defaults(run=cmd_synth)

    p = sub.add_parser("synth-lossless", help="write the generated lossless corpus")
    p.add_argument(
        "--out",
        required=True,
        help="folder to write the corpus to (audio/ and meta.csv) (required)",
    )
    p.add_argument(
        "--tracks",
        type=int,
        default=300,
        help="stereo 44.1 kHz 16-bit tracks to generate; fewer for a quick run "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="length of each track (default: %(default)s)",
    )
    _seed(p, "the generator; the same seed writes the same tracks")
    _workers(p, "generating tracks")
    p.set_defaults(run=cmd_synth_lossless)

    p = sub.add_parser("fit-ensemble", help="train the two-stage scene ensemble")
    _scene_data(p)
    _fold(p, "to hold out")
    p.add_argument(
        "--out",
        required=True,
        help="checkpoint to write (.safetensors); an interrupted run's state is kept next to it "
        "as OUT.train-state.pt (required)",
    )
    _preset(p)
    p.add_argument(
        "--augment-codecs",
        type=str,
        default="",
        help='codec paths whose coded copies join training, e.g. "mp3:64k,aac:32k", for a '
        "model that holds up on those codecs (default: none, uncoded audio only)",
    )
    p.add_argument(
        "--architectures",
        default="fcnn,fsfcnn,resnet",
        help="comma-separated sub-models of the ensemble; fewer train faster "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--fine-only",
        action="store_true",
        help="train no coarse (indoor/outdoor/transport) sub-models, only the fine-class ones "
        "(default: off, both stages)",
    )
    _training(p, epochs=30, lr=2e-3)
    p.add_argument(
        "--mixup",
        type=float,
        default=0.4,
        help="mixup alpha, blending pairs of examples; 0 turns mixup off (default: %(default)s)",
    )
    p.add_argument(
        "--crop-frames",
        type=int,
        default=400,
        help="random time crop, in spectrogram frames; 0 turns it off (default: %(default)s)",
    )
    p.add_argument(
        "--band-limit",
        type=float,
        default=0.0,
        help="share of examples whose upper bands are cut at a random 4-16 kHz, as a codec's "
        "lowpass would (robustness to codecs never trained on); 0 turns it off "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--no-baseline-augment",
        action="store_true",
        help="turn off mixup, random crop and spectrum masking, e.g. to measure what codec "
        "augmentation alone does (default: off, all three on)",
    )
    p.add_argument(
        "--max-clips-per-class",
        type=int,
        help="train on at most this many clips per class, for a quick run "
        "(default: none, every clip)",
    )
    p.add_argument(
        "--epoch-size",
        type=int,
        help="examples per epoch, drawn at random; smaller epochs cost less each and still see "
        "every coded copy over the run (default: none, all clips x conditions)",
    )
    _seed(p, "initialisation, shuffling and augmentation")
    _device(p)
    _cache_dir(p)
    _workers(p, "coding the training audio through --augment-codecs")
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="start from epoch 0 even when an interrupted run of the same data left "
        "OUT.train-state.pt (default: off, resume it)",
    )
    p.set_defaults(run=cmd_fit_ensemble)

    p = sub.add_parser("fit-detector", help="train the lossy-compression detector")
    p.add_argument(
        "--data",
        required=True,
        help="a folder of lossless .wav/.flac tracks (required)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="checkpoint to write (.safetensors) (required)",
    )
    p.add_argument(
        "--codecs",
        default=",".join(DS1_CODECS),
        help="comma-separated codec paths the detector learns to recognise; each track is "
        "coded with one of them (default: the paper's DS1, %(default)s)",
    )
    p.add_argument(
        "--mask-prob",
        type=float,
        default=1.0,
        help="probability of the random cutoff mask on each example; 1.0 is the paper's masked "
        "detector, 0 the naive one that leans on the codec's lowpass (default: %(default)s)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=20,
        help="training epochs; fewer for a quick run (default: %(default)s)",
    )
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        default=100,
        help="batches of random 2 s crops per epoch (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="examples per optimiser step; lower it when GPU memory runs out "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="learning rate (default: %(default)s)",
    )
    p.add_argument(
        "--max-tracks",
        type=int,
        help="use only the first N tracks, for a quick run (default: none, every track)",
    )
    _seed(p, "the split, codec choice per track, crops and initialisation")
    _device(p)
    _cache_dir(p)
    _workers(p, "coding the tracks")
    p.set_defaults(run=cmd_fit_detector)

    p = sub.add_parser(
        "evaluate", help="accuracy of an ensemble per codec path, as a report with plots"
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="scene ensemble checkpoint (.safetensors) to evaluate (required)",
    )
    _scene_data(p)
    _fold(p, "to evaluate on; use the fold the model was trained with")
    p.add_argument(
        "--codecs",
        default="none,aac:64k,mp3:64k,opus:32k,he-aac:32k,sbc:64k,mp3:32k",
        help="comma-separated codec paths to score the test clips through; 'none' is the "
        "uncoded audio (default: %(default)s)",
    )
    p.add_argument(
        "--chains",
        default="",
        help='extra chained paths, e.g. "sbc:bitpool=53>aac:64k" (default: none)',
    )
    p.add_argument(
        "--out",
        help="report folder: results.json, results.csv, README.md and PNG plots "
        "(default: none, print the table only)",
    )
    p.add_argument(
        "--quality-clips",
        type=int,
        default=20,
        help="test clips per path scored with ViSQOL (about 1 s each on a CPU core); 0: none "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-clips-per-class",
        type=int,
        help="evaluate on fewer test clips, for a quick run (default: none, every test clip)",
    )
    _device(p)
    _cache_dir(p)
    _workers(p, "coding the test clips")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("experiment", help="reproduce a paper's experiment as a report")
    experiments = p.add_subparsers(dest="experiment", required=True)

    p = experiments.add_parser(
        "codec-augmentation",
        help="the ASC paper's Table 3: the FCNN under seven codec-augmented training conditions",
    )
    _scene_data(p)
    p.add_argument(
        "--out",
        required=True,
        help="report folder (required)",
    )
    p.add_argument(
        "--conditions",
        type=condition_list,
        default="1,2,3,4,5,6,7",
        help="which training conditions, e.g. 2,7, to rerun only some (default: all seven, "
        "%(default)s)",
    )
    p.add_argument(
        "--codecs",
        default="none,aac:32k,mp3:64k,mp3:32k,aac:48k,aac:64k,opus:64k,sbc:64k",
        help="comma-separated evaluation paths; 'none' is the uncoded audio (default: %(default)s)",
    )
    _preset(p)
    _training(p, epochs=30, lr=2e-3)
    p.add_argument(
        "--epoch-size",
        type=int,
        help="examples per epoch, drawn at random; smaller epochs cost less each "
        "(default: none, every training example once)",
    )
    p.add_argument(
        "--max-clips-per-class",
        type=int,
        help="fewer clips, for a quick run (default: none, every clip)",
    )
    p.add_argument(
        "--quality-clips",
        type=int,
        default=0,
        help="test clips per path scored with ViSQOL (about 1 s each on a CPU core); 0: none "
        "(default: %(default)s)",
    )
    _fold(p, "to hold out")
    _seed(p, "every condition's training")
    _device(p)
    _cache_dir(p)
    p.add_argument(
        "--checkpoints",
        default=".cache/experiments/codec-augmentation",
        help="where each condition's model is written (default: %(default)s)",
    )
    _workers(p, "coding the audio")
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="retrain every condition from epoch 0 instead of resuming interrupted training "
        "(default: off, resume)",
    )
    p.set_defaults(run=cmd_codec_augmentation)

    p = experiments.add_parser(
        "lossy-detection",
        help="the detection paper's Tables 1 and 2: naive and masked detectors on DS1 and DS2",
    )
    p.add_argument(
        "--data",
        required=True,
        help="a folder of lossless .wav/.flac tracks (required)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="report folder (required)",
    )
    p.add_argument(
        "--codecs",
        default=",".join(DS1_CODECS),
        help="DS1's codec settings, comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--cutoffs",
        default="14k,16k,18k,20k",
        help="DS2's codec cutoff frequencies, comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--mask-prob",
        type=float,
        default=1.0,
        help="the masked detector's cutoff-mask probability; the naive one has none "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=20,
        help="training epochs of each detector; fewer for a quick run (default: %(default)s)",
    )
    p.add_argument(
        "--steps-per-epoch",
        type=int,
        default=100,
        help="batches of random 2 s crops per epoch (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="examples per optimiser step; lower it when GPU memory runs out "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="learning rate (default: %(default)s)",
    )
    p.add_argument(
        "--max-tracks",
        type=int,
        help="use only the first N tracks, for a quick run (default: none, every track)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="detector score at or above which a file counts as lossy in the tables "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--saliency-examples",
        type=int,
        default=3,
        help="saliency maps drawn for the report (Figure 4) (default: %(default)s)",
    )
    _seed(p, "the split, codec choice per track and training")
    _device(p)
    _cache_dir(p)
    p.add_argument(
        "--checkpoints",
        default=".cache/experiments/lossy-detection",
        help="where the two detectors are written (default: %(default)s)",
    )
    _workers(p, "coding the tracks")
    p.set_defaults(run=cmd_lossy_detection)

    p = sub.add_parser(
        "rate-accuracy",
        help="accuracy against bitrate per codec family, with a Bjøntegaard-style summary",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        help="scene ensemble checkpoint (.safetensors); give it twice to compare two training "
        "conditions family by family (required)",
    )
    _scene_data(p)
    _fold(p, "to score on; use the fold the models were trained with")
    p.add_argument(
        "--families",
        default="opus,mp3,aac,he-aac,vorbis,sbc",
        help="codec families, each scored over its ladder of bitrates (training/rate_accuracy.py "
        "LADDERS) (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        help="report folder: results.json, README.md and one plot per model (default: none, "
        "print the summary only)",
    )
    p.add_argument(
        "--max-clips-per-class",
        type=int,
        help="score fewer test clips, for a quick run (default: none, every test clip)",
    )
    _device(p)
    _cache_dir(p)
    _workers(p, "coding the test clips")
    p.set_defaults(run=cmd_rate_accuracy)

    p = sub.add_parser(
        "corpus-stats",
        help="level, crest factor, energy and class cues above codec cutoffs, corpora side by side",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        help="a data set in any layout --data accepts elsewhere; give it once per corpus to "
        "compare (required)",
    )
    p.add_argument(
        "--max-clips",
        type=int,
        default=600,
        help="clips measured per corpus, spread evenly over it (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        help="folder for corpus_stats.json, corpus_stats.md and ltas.png (default: none, print "
        "the table only)",
    )
    p.set_defaults(run=cmd_corpus_stats)

    p = sub.add_parser(
        "summarize-folds",
        help="pool the fold reports of scripts/real-audio-reports.sh, with bootstrap intervals",
    )
    p.add_argument(
        "folder",
        help="folder holding codec-augmentation/, ensemble/ and ensemble-recipe/, each with "
        "fold*/results.json; the summary (README.md, results.json, a plot) is written there",
    )
    _seed(p, "the bootstrap's resampling")
    p.set_defaults(run=cmd_summarize_folds)

    p = sub.add_parser("describe", help="a checkpoint's metadata, or parameters per preset")
    p.add_argument(
        "checkpoint",
        nargs="?",
        help="checkpoint (.safetensors) to describe (default: none, list the parameter counts "
        "of each --preset instead)",
    )
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
