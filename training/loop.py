"""The one training loop of the scene ensemble and the lossy detector, and what both share.

A trainer describes its model as a ``TrainingTask``: what to draw at the start of an epoch, one
step's loss, and one validation score; ``run_epochs`` does the rest the same way for both
(optimiser and schedule steps, the progress bar, the per-epoch history and its line of output).
Resuming and distributed training stay with the trainer that has them (``end_epoch``).
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from asc.torchaudio_pair import load_torchaudio

torchaudio = load_torchaudio()


class TrainingTask(Protocol):
    """What differs between the trainers: the hooks ``run_epochs`` calls, in this order."""

    def start_epoch(self, epoch: int) -> None:
        """Draw what the epoch's steps need (e.g. an order of the examples)."""

    def training_step(self, step: int) -> tuple[torch.Tensor, int]:
        """One batch's loss (before ``backward``) and the number of examples it weighs."""
        ...

    def validate(self) -> float:
        """The score printed and kept in the history after each epoch."""
        ...

    def end_epoch(self, epochs_done: int, history: list[dict]) -> None:
        """After the epoch's line is printed: e.g. keep the state to resume from."""


@dataclass
class LoopSettings:
    epochs: int
    steps_per_epoch: int
    progress: bool
    metric: str  # the history's key for ``validate``'s score
    metric_label: str  # and how the epoch's line names it
    bar_unit: str = "it"
    bar_loss: bool = False  # the running mean loss beside the bar


def run_epochs(
    task: TrainingTask,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    settings: LoopSettings,
    start_epoch: int = 0,
    history: list[dict] | None = None,
) -> list[dict]:
    """Train from ``start_epoch`` to ``settings.epochs``; the history, one entry per epoch."""
    history = [] if history is None else history
    for epoch in range(start_epoch, settings.epochs):
        model.train()
        task.start_epoch(epoch)
        loss = _train_one_epoch(task, optimizer, scheduler, settings, epoch)
        score = task.validate()
        history.append({"epoch": epoch + 1, "loss": loss, settings.metric: score})
        if settings.progress:
            tqdm.write(f"epoch {epoch + 1}: loss {loss:.3f}, {settings.metric_label} {score:.3f}")
        task.end_epoch(epoch + 1, history)
    return history


def _train_one_epoch(
    task: TrainingTask,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    settings: LoopSettings,
    epoch: int,
) -> float:
    """The epoch's steps; the mean loss per example."""
    total, seen = 0.0, 0
    bar = tqdm(
        range(settings.steps_per_epoch),
        desc=f"epoch {epoch + 1}/{settings.epochs}",
        unit=settings.bar_unit,
        disable=not settings.progress,
        leave=False,
    )
    for step in bar:
        loss, examples = task.training_step(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += float(loss.detach()) * examples
        seen += examples
        if settings.bar_loss:
            bar.set_postfix(loss=f"{total / seen:.3f}")
    return total / max(seen, 1)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def one_cycle(
    optimizer: torch.optim.Optimizer, lr: float, total_steps: int
) -> torch.optim.lr_scheduler.OneCycleLR:
    """One-cycle schedule, warming up over 10 % of the steps (at least two and a half: with
    fewer, as in a run of a handful of steps, the scheduler would divide by zero)."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=total_steps, pct_start=max(0.1, 2.5 / total_steps)
    )


def write_train_state(path: Path, state: dict) -> None:
    """Atomically, so a crash mid-write leaves the previous epoch's state intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def read_train_state(path: Path) -> dict | None:
    """The last epoch's state (loaded without arbitrary unpickling), or None to start afresh."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, ValueError, OSError) as e:
        tqdm.write(f"ignoring unreadable training state {path}: {e}")
        return None


def provenance_common(out: Path, seed: int) -> dict:
    """Where a checkpoint came from: its id, when, the command line and library versions."""
    return {
        "model_id": out.stem,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": seed,
        "versions": {
            "torch": torch.__version__,
            "torchaudio": torchaudio.__version__,
            "python": platform.python_version(),
        },
    }
