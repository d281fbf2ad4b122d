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
