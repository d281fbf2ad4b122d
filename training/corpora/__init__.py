"""The generated corpora: a scene corpus in the TAU 2020 Mobile layout and a lossless music
corpus for the lossy detector. Callers import the writers from here, not from the modules
that build them."""

from training.corpora.lossless_corpus import write_lossless_corpus
from training.corpora.scene_clip import synth_clip
from training.corpora.scene_corpus import write_scene_corpus

__all__ = ["synth_clip", "write_lossless_corpus", "write_scene_corpus"]
