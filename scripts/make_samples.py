"""Writes samples/: one generated 10-second clip per scene class with its label, for the demo.

The clips come from the same generator as the training corpus but from a seed the corpus never
uses, so they are new locations the shipped models have not heard. The committed clips are
generator 1.0's, the corpus the shipped ensemble was trained on; rerunning
(``.venv/bin/python scripts/make_samples.py``) writes the current generator's, the same bytes
each time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asc.audio import save
from asc.labels import DCASE_CLASSES
from training.corpora import synth_clip

SEED = 20261121  # not a corpus seed
RATE = 44100
OUT = Path(__file__).resolve().parent.parent / "samples"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rows = ["filename\tscene_label\tdevice"]
    for i, scene in enumerate(DCASE_CLASSES):
        rng = np.random.default_rng([SEED, i])
        clip = synth_clip(scene, "a", rng, seconds=10.0, rate=RATE)
        name = f"{scene}.flac"
        save(OUT / name, clip, RATE)
        rows.append(f"{name}\t{scene}\ta")
    (OUT / "meta.csv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
