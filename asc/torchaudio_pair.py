"""Loads torchaudio and its compiled extension, or says plainly which pair is broken.

torch and torchaudio ship C++ libraries built against each other: a torchaudio of another
release can install cleanly and then fail at import with an undefined symbol deep in
``libtorchaudio.so``. That message names neither package nor the fix, so every module that needs
torchaudio loads it through :func:`load_torchaudio`, and a test calls it first.
"""

from __future__ import annotations

from types import ModuleType

import torch

REMEDY = (
    "torch and torchaudio must be installed as the exact pair pinned in requirements/lock.txt; "
    "run `make setup`, or `pip install --require-hashes -r requirements/lock.txt`"
)


class TorchaudioPairError(ImportError):
    """torchaudio (or its compiled extension) does not load against the installed torch."""


def _installed_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def load_torchaudio() -> ModuleType:
    """Imports torchaudio and proves its compiled extension runs against this torch."""
    try:
        import torchaudio
        from torchaudio import _extension

        if not _extension._IS_TORCHAUDIO_EXT_AVAILABLE:
            raise ImportError("torchaudio's compiled extension (_torchaudio) is missing")
        # One call into libtorchaudio's registered operators: a mismatched pair can import and
        # still fail here.
        torch.ops._torchaudio.is_align_available()
    except (ImportError, OSError, RuntimeError, AttributeError) as exc:
        raise TorchaudioPairError(
            f"torchaudio {_installed_version('torchaudio')} does not load against torch "
            f"{torch.__version__} ({exc}); {REMEDY}"
        ) from exc
    return torchaudio
