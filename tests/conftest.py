import numpy as np
import pytest

from asc.signals import full_band_clip

RATE = 44100


@pytest.fixture(scope="session")
def clip() -> np.ndarray:
    return full_band_clip(RATE, seconds=3.0, channels=1, seed=1)


@pytest.fixture(scope="session")
def stereo_clip() -> np.ndarray:
    return full_band_clip(RATE, seconds=3.0, channels=2, seed=2)


@pytest.fixture(scope="session")
def white_noise() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (0.25 * rng.standard_normal((RATE * 4, 1))).clip(-1, 1).astype(np.float32)


ONNX_CACHE = pytest.StashKey[str]()  # the folder this run made, removed when the run ends


def pytest_sessionstart(session: pytest.Session) -> None:
    """A torch/torchaudio pair that cannot load stops the run at once with the fix, instead of
    surfacing as collection errors in every module that imports the feature code.

    The servers the tests start keep their exported ONNX graphs in one folder of this run (the
    first start exports, the rest load and check), never in the user's own cache. Under
    pytest-xdist the controller makes it before its workers start, and they inherit it."""
    import os
    import tempfile

    if "ASC_ONNX_CACHE" not in os.environ:
        folder = session.config.stash[ONNX_CACHE] = tempfile.mkdtemp(prefix="asc-onnx-")
        os.environ["ASC_ONNX_CACHE"] = folder
    from asc.torchaudio_pair import TorchaudioPairError, load_torchaudio

    try:
        load_torchaudio()
    except TorchaudioPairError as exc:
        pytest.exit(str(exc), returncode=2)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run's graph folder goes with the run: each run made one and left it in /tmp."""
    import shutil

    if ONNX_CACHE in session.config.stash:
        shutil.rmtree(session.config.stash[ONNX_CACHE], ignore_errors=True)
