"""The scene catalogue: each of the ten DCASE scenes as a probability mix over the shared
sources, and the recording places drawn from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asc.labels import DCASE_CLASSES
from training.corpora.scene_context import Location
from training.corpora.scene_voices import draw_speaker

FINE_CLASSES = DCASE_CLASSES


# ---------------------------------------------------------------------------------------------
# Scene recipes: each scene is a probability mix over the shared sources


@dataclass(frozen=True)
class Scene:
    """How likely each source is in a scene, and how loud (dB, relative) when it is there."""

    sources: dict[str, tuple[float, float, float]]  # name: (probability, low dB, high dB)
    rt60: tuple[float, float]  # reverberation time range, seconds (0: open air)
    drr: tuple[float, float]  # direct-to-reverberant ratio range, dB
    engine: tuple[str, float, float] = ("car", 30.0, 110.0)  # kind, lowest and highest f0
    vehicle: float = 0.0  # top speed in m/s when the microphone rides in a vehicle


_ALWAYS = {"air": (1.0, -34.0, -24.0)}

SCENES: dict[str, Scene] = {
    "airport": Scene(
        {
            **_ALWAYS,
            "hvac": (1.0, -2, 2),
            "crowd": (1.0, -8, -3),
            "voices": (0.6, -18, -11),
            "pa": (0.7, -16, -10),
            "footsteps": (0.5, -24, -16),
            "trolley": (0.5, -22, -14),
            "clinks": (0.3, -30, -20),
            "music": (0.15, -28, -18),
            "hum": (0.6, -26, -18),
            "beeps": (0.2, -30, -20),
            "children": (0.15, -24, -16),
            "engine": (0.3, -26, -18),
        },
        rt60=(1.0, 2.5),
        drr=(-6, 4),
        engine=("car", 60, 160),
    ),
    "shopping_mall": Scene(
        {
            **_ALWAYS,
            "crowd": (1.0, -2, 2),
            "music": (0.75, -16, -10),
            "voices": (0.75, -17, -10),
            "children": (0.4, -20, -12),
            "hvac": (0.6, -18, -12),
            "footsteps": (0.65, -22, -14),
            "clinks": (0.55, -26, -16),
            "beeps": (0.35, -28, -18),
            "pa": (0.15, -22, -14),
            "trolley": (0.25, -26, -18),
            "water": (0.15, -24, -16),
            "hum": (0.3, -30, -22),
        },
        rt60=(0.8, 2.0),
        drr=(-6, 4),
    ),
    "metro_station": Scene(
        {
            **_ALWAYS,
            "roar": (0.8, -10, -4),
            "crowd": (0.8, -14, -8),
            "pa": (0.6, -16, -10),
            "hvac": (0.5, -18, -12),
            "rails": (0.4, -22, -14),
            "squeal": (0.4, -26, -16),
            "engine": (0.4, -24, -16),
            "door": (0.35, -22, -14),
            "footsteps": (0.55, -22, -14),
            "voices": (0.45, -20, -12),
            "hum": (0.4, -28, -20),
            "music": (0.1, -26, -18),
            "trolley": (0.15, -26, -18),
        },
        rt60=(1.0, 2.5),
        drr=(-6, 4),
        engine=("motor", 150, 1200),
    ),
    "metro": Scene(
        {
            **_ALWAYS,
            "cabin": (1.0, -2, 2),
            "roar": (1.0, -1, 4),
            "rails": (0.75, -20, -12),
            "engine": (0.75, -22, -14),
            "squeal": (0.45, -26, -16),
            "door": (0.45, -20, -12),
            "pa": (0.4, -20, -12),
            "voices": (0.4, -20, -12),
            "crowd": (0.25, -22, -14),
            "hum": (0.25, -30, -22),
            "footsteps": (0.1, -26, -18),
        },
        rt60=(0.25, 0.6),
        drr=(0, 8),
        engine=("motor", 150, 1500),
        vehicle=18.0,
    ),
    "tram": Scene(
        {
            **_ALWAYS,
            "cabin": (1.0, -3, 1),
            "roar": (0.6, -16, -10),
            "traffic": (0.6, -18, -12),
            "rails": (0.65, -22, -14),
            "engine": (0.6, -24, -16),
            "squeal": (0.5, -26, -16),
            "door": (0.45, -20, -12),
            "bell": (0.4, -20, -12),
            "pa": (0.35, -20, -12),
            "voices": (0.5, -20, -12),
            "crowd": (0.3, -22, -14),
            "passby": (0.3, -22, -14),
            "hum": (0.2, -30, -22),
        },
        rt60=(0.2, 0.5),
        drr=(0, 8),
        engine=("motor", 100, 1000),
        vehicle=12.0,
    ),
    "bus": Scene(
        {
            **_ALWAYS,
            "cabin": (1.0, -2, 2),
            "engine": (0.95, -12, -6),
            "traffic": (0.6, -18, -12),
            "passby": (0.35, -20, -14),
            "door": (0.35, -22, -14),
            "voices": (0.5, -20, -12),
            "crowd": (0.25, -22, -14),
            "squeal": (0.2, -30, -20),
            "music": (0.15, -26, -18),
            "pa": (0.2, -22, -14),
            "horn": (0.1, -24, -16),
            "hum": (0.2, -30, -22),
        },
        rt60=(0.15, 0.4),
        drr=(0, 8),
        engine=("diesel", 25, 70),
        vehicle=12.0,
    ),
    "park": Scene(
        {
            **_ALWAYS,
            "wind": (0.7, -12, -6),
            "birds": (0.75, -18, -10),
            "rustle": (0.55, -20, -12),
            "traffic": (0.6, -18, -12),
            "children": (0.4, -22, -14),
            "voices": (0.35, -24, -16),
            "water": (0.2, -22, -14),
            "footsteps": (0.25, -26, -18),
            "engine": (0.1, -30, -22),
            "crowd": (0.15, -26, -18),
            "music": (0.05, -28, -20),
        },
        rt60=(0.0, 0.1),
        drr=(8, 20),
    ),
    "public_square": Scene(
        {
            **_ALWAYS,
            "crowd": (0.9, -12, -8),
            "traffic": (0.7, -16, -10),
            "voices": (0.6, -20, -12),
            "children": (0.35, -22, -14),
            "footsteps": (0.45, -24, -16),
            "water": (0.35, -20, -12),
            "birds": (0.3, -24, -16),
            "passby": (0.3, -22, -14),
            "wind": (0.3, -18, -10),
            "music": (0.2, -24, -16),
            "clinks": (0.15, -28, -18),
            "engine": (0.25, -26, -18),
            "horn": (0.1, -24, -16),
            "bell": (0.1, -26, -18),
        },
        rt60=(0.2, 0.7),
        drr=(4, 14),
    ),
    "street_pedestrian": Scene(
        {
            **_ALWAYS,
            "crowd": (0.8, -14, -9),
            "voices": (0.8, -16, -10),
            "footsteps": (0.85, -18, -12),
            "traffic": (0.75, -14, -8),
            "passby": (0.5, -18, -10),
            "engine": (0.35, -24, -16),
            "music": (0.2, -24, -16),
            "horn": (0.15, -22, -14),
            "children": (0.2, -22, -14),
            "birds": (0.15, -26, -18),
            "wind": (0.25, -18, -10),
            "clinks": (0.1, -28, -18),
            "bell": (0.1, -26, -18),
            "trolley": (0.2, -26, -18),
        },
        rt60=(0.1, 0.5),
        drr=(4, 14),
    ),
    "street_traffic": Scene(
        {
            **_ALWAYS,
            "traffic": (1.0, -2, 2),
            "passby": (0.95, -10, -4),
            "engine": (0.8, -18, -10),
            "horn": (0.35, -20, -12),
            "squeal": (0.3, -28, -18),
            "wind": (0.3, -16, -8),
            "crowd": (0.25, -24, -16),
            "voices": (0.2, -24, -16),
            "footsteps": (0.2, -26, -18),
            "birds": (0.08, -28, -18),
        },
        rt60=(0.05, 0.3),
        drr=(6, 16),
    ),
}


# ---------------------------------------------------------------------------------------------
# Locations: what one recording place fixes for all of its clips


CLIP_KEEP = 0.8  # a source present at a location sounds in this share of its clips


def draw_location(scene: str, rng: np.random.Generator) -> Location:
    """Draw one recording place of ``scene``: which sources it has, its room, its voices."""
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; known: {FINE_CLASSES}")
    recipe = SCENES[scene]
    levels = {}
    for name, (p, lo, hi) in recipe.sources.items():
        if rng.random() < min(1.0, p / CLIP_KEEP):
            levels[name] = float(rng.uniform(lo, hi))
    rates = {
        "passby": rng.uniform(0.1, 0.6),
        "voices": rng.uniform(0.15, 0.8),
        "children": rng.uniform(0.1, 0.4),
        "pa": rng.uniform(0.06, 0.2),
        "trolley": rng.uniform(0.06, 0.3),
        "footsteps": rng.uniform(0.15, 0.6),
        "horn": rng.uniform(0.03, 0.15),
        "birds": rng.uniform(0.3, 1.2),
        "clinks": rng.uniform(0.1, 0.6),
    }
    species = tuple(
        (float(lo), float(lo * rng.uniform(1.1, 1.8)), float(rng.uniform(0.03, 0.15)), str(kind))
        for lo, kind in zip(
            rng.uniform(2800, 5500, 3), rng.choice(["sweep", "trill", "sweep"], 3), strict=True
        )
    )
    return Location(
        scene=scene,
        levels=levels,
        rates={k: float(v) for k, v in rates.items()},
        rt60=float(rng.uniform(*recipe.rt60)),
        drr=float(rng.uniform(*recipe.drr)),
        engine_kind=recipe.engine[0],
        engine_f0=(recipe.engine[1], recipe.engine[2]),
        vehicle=recipe.vehicle,
        chime_root=float(rng.uniform(400, 900)),
        chime_steps=tuple(int(s) for s in rng.choice([0, 4, 7, 12, -5], int(rng.integers(2, 5)))),
        door_beeps=bool(rng.random() < 0.5),
        announcer=draw_speaker(rng),
        birds=species[: int(rng.integers(1, 4))],
        bell_f0=float(rng.uniform(700, 1500) if scene == "tram" else rng.uniform(1800, 3200)),
        mains=float(rng.choice([50.0, 60.0])),
        joint_spacing=float(rng.uniform(15, 30)),
        bogie_gap=float(rng.uniform(12, 18)),
        click_bright=float(rng.uniform(0.2, 1.0)),
        hard_floor=float(rng.uniform(0.0, 1.0)),
        music_gain=float(rng.uniform(0.5, 1.0)),
    )
