"""torch and torchaudio load together, or the failure says which pair and what to run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from asc.torchaudio_pair import load_torchaudio

ROOT = Path(__file__).resolve().parent.parent


def test_compiled_extension_loads_against_this_torch() -> None:
    torchaudio = load_torchaudio()
    # Same release, same build (e.g. +cu130): the pair pinned in requirements/lock.txt.
    assert torchaudio.__version__ == torch.__version__, (torchaudio.__version__, torch.__version__)
    # A transform runs on torchaudio's side of the pair.
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=256, n_mels=16)
    assert mel(torch.zeros(1, 1600)).shape[-2] == 16


def test_broken_pair_names_both_versions_and_the_fix(tmp_path: Path) -> None:
    # A torchaudio that fails to load the way a mismatched release does, first on the path.
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise OSError('libtorchaudio.so: undefined symbol: "
        "torch_exception_get_what_without_backtrace')\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    run = subprocess.run(
        [sys.executable, "-c", "import asc.features"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert "TorchaudioPairError" in last
    assert f"against torch {torch.__version__}" in last
    assert "undefined symbol" in last
    assert "make setup" in last and "requirements/lock.txt" in last
