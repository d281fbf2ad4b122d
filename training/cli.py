"""``asc-train``: generate corpora, train both papers' models, and describe checkpoints."""

from __future__ import annotations

import argparse
import shlex
import sys

from asc.codecs.errors import CodecError
from training.commands_corpora import add_corpus_stats_command, add_synth_commands
from training.commands_evaluate import (
    add_compare_command,
    add_evaluate_command,
    add_rate_accuracy_command,
    add_summarize_folds_command,
)
from training.commands_experiments import add_experiment_commands
from training.commands_fit import add_describe_command, add_fit_commands


def build_parser() -> argparse.ArgumentParser:
    """Every flag's help ends with its default: ``(default: ...)``, or ``(required)``."""
    parser = argparse.ArgumentParser(prog="asc-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_synth_commands(sub)  # synth, synth-lossless
    add_fit_commands(sub)  # fit-ensemble, fit-detector
    add_evaluate_command(sub)
    add_experiment_commands(sub)  # experiment codec-augmentation, experiment lossy-detection
    add_rate_accuracy_command(sub)
    add_compare_command(sub)
    add_corpus_stats_command(sub)
    add_summarize_folds_command(sub)
    add_describe_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["asc-train", *argv])  # for reports: how to repeat the run
    from asc.checkpoint import CheckpointError
    from asc.features import FeatureConfigError
    from training.datasets import DatasetError
    from training.detector_data import LosslessDataError

    try:
        return args.run(args)
    except (CodecError, CheckpointError, DatasetError, FeatureConfigError, LosslessDataError) as e:
        print(f"asc-train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
