"""The generated corpora: a scene corpus in the TAU 2020 Mobile layout and a lossless corpus
(music, speech, ambience) for the lossy detector. Callers import the writers from here, not
from the modules that build them.

- dsp: the signal building blocks both generators use (shapes, noise, wavetables, FFT sizes)
- rooms: a scene place's impulse response and the lossless tracks' stereo room
- scene_corpus: the scene writer (plan, splits, devices per clip, tables, README)
  - scene_clip: one clip (sources, room, device); scenes: the catalogue and the places
  - scene_context, scene_beds, scene_voices, scene_events: what the sources draw with and add
  - devices: the recording devices' fixed colourations
- lossless_corpus: the lossless writer and synth_track; music, speech, ambience: its kinds
"""

from training.corpora.lossless_corpus import write_lossless_corpus
from training.corpora.scene_clip import synth_clip
from training.corpora.scene_corpus import write_scene_corpus

__all__ = ["synth_clip", "write_lossless_corpus", "write_scene_corpus"]
