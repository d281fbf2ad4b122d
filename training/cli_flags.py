"""Flags that several ``asc-train`` subcommands share, written once so their help cannot drift.

Every helper adds through ``EnvOptions`` (``asc/cli_options.py``), which ends each help with
``(default: ...)``; ``asc-train`` reads no environment variables, so none names one. Kept free
of torch: building the parser must stay fast enough for ``--help``.
"""

from __future__ import annotations

import argparse
from typing import Any

from asc.cli_options import EnvOptions


def required(opts: EnvOptions, flag: str, help: str, **kwargs: Any) -> argparse.Action:
    """A flag with no default at all; ``EnvOptions`` refuses those, so its help says so here."""
    return opts.parser.add_argument(flag, required=True, help=f"{help} (required)", **kwargs)


def named_default(
    opts: EnvOptions, flag: str, default: str, name: str, **kwargs: Any
) -> argparse.Action:
    """A flag whose help names its default as well as giving it: ``(default: NAME, DEFAULT)``."""
    action = opts.add(flag, absent=f"{name}, {default}", **kwargs)
    action.default = default  # a string: argparse applies ``type`` to it, as to any default
    return action


def seed(opts: EnvOptions, what: str) -> None:
    opts.add(
        "--seed",
        type=int,
        default=0,
        help=f"random seed for {what}; change it for an independent repeat",
    )


def workers(opts: EnvOptions, what: str) -> None:
    opts.add(
        "--workers",
        type=int,
        help=f"processes {what}; lower it to save memory or leave cores free",
        absent="none, one per CPU core",
    )


def device(opts: EnvOptions) -> None:
    opts.add(
        "--device",
        default="auto",
        help="torch device: auto (the first GPU if there is one, else the CPU), cpu, cuda or "
        "cuda:N",
    )


def cache_dir(opts: EnvOptions) -> None:
    opts.add(
        "--cache-dir",
        default=".cache/coded",
        help="where coded copies of the audio are kept and reused between runs; point it at a "
        "disk with room, or at a fresh folder to recode",
    )


def batch_size(opts: EnvOptions) -> None:
    opts.add(
        "--batch-size",
        type=int,
        default=32,
        help="examples per optimiser step; lower it when GPU memory runs out",
    )


def scene_training(opts: EnvOptions, epochs: int, lr: float) -> None:
    """Epochs, batch size and peak learning rate of a scene model."""
    opts.add(
        "--epochs",
        type=int,
        default=epochs,
        help="passes over the training data; fewer for a quick run",
    )
    batch_size(opts)
    opts.add("--lr", type=float, default=lr, help="peak learning rate")


def detector_training(opts: EnvOptions, epochs_help: str) -> None:
    """Epochs, steps, batch size, learning rate and track limit of a lossy detector."""
    opts.add("--epochs", type=int, default=20, help=epochs_help)
    opts.add(
        "--steps-per-epoch",
        type=int,
        default=100,
        help="batches of random 2 s crops per epoch",
    )
    batch_size(opts)
    opts.add("--lr", type=float, default=1e-3, help="learning rate")
    opts.add(
        "--max-tracks",
        type=int,
        help="use only the first N tracks of each --data folder, for a quick run",
        absent="none, every track",
    )


def scene_data(opts: EnvOptions) -> None:
    required(opts, "--data", "TAU 2020 Mobile, ESC-50, Kitchen20 or a folder per class")


def lossless_data(opts: EnvOptions) -> None:
    required(opts, "--data", "a folder of lossless .wav/.flac tracks")


def lossless_roots(opts: EnvOptions) -> None:
    required(
        opts,
        "--data",
        "one or more folders of lossless tracks: a generated corpus or any folder of .wav/.flac "
        "(split by track), Kitchen20 (its lossless originals only, split by recording)",
        nargs="+",
    )


def fold(opts: EnvOptions, purpose: str) -> None:
    opts.add(
        "--fold",
        type=int,
        default=1,
        help=f"TAU fold files / ESC-50 or Kitchen20 test fold {purpose}",
    )


def preset(opts: EnvOptions) -> None:
    opts.add(
        "--preset",
        default="compact",
        choices=("compact", "paper"),
        help="model size: compact trains fast and serves cheaply, paper is the published size "
        "(`asc-train describe` lists both)",
    )
