"""Model architectures of both papers; checkpoints live in ``asc.checkpoint``."""

from asc.models.detector import CODEC_FAMILIES, LossyDetector
from asc.models.scene import PRESETS, SceneEnsemble, build_submodel

__all__ = ["CODEC_FAMILIES", "PRESETS", "LossyDetector", "SceneEnsemble", "build_submodel"]
