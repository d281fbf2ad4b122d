"""Label maps shared by training and serving: the DCASE scene classes and their coarse groups.

The two-stage ensemble needs, for each fine class, the coarse group it belongs to; TAU's is
fixed by the ASC paper's system (indoor / outdoor / transportation).
"""

DCASE_CLASSES = [
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
]
DCASE_COARSE = ["indoor", "outdoor", "transportation"]
DCASE_COARSE_OF_CLASS = {
    "airport": "indoor",
    "metro_station": "indoor",
    "shopping_mall": "indoor",
    "park": "outdoor",
    "public_square": "outdoor",
    "street_pedestrian": "outdoor",
    "street_traffic": "outdoor",
    "bus": "transportation",
    "metro": "transportation",
    "tram": "transportation",
}
DCASE_COARSE_OF = [DCASE_COARSE.index(DCASE_COARSE_OF_CLASS[c]) for c in DCASE_CLASSES]

# Kitchen20's 20 sound-event classes, grouped for the two-stage ensemble by the texture a
# log-mel shows, as the DCASE map groups scenes by their setting: steady, tonal machine noise
# (motors, compressors, fans); steady, broadband noise of water, steam and frying; and
# short transients of handling things. The groups are acoustic, so a codec that smears one
# cue (tonal lines, noise floor, attacks) tends to move a clip within its group, which is
# what the coarse stage is there to catch.
KITCHEN20_COARSE = ["machines", "fluids", "handling"]
KITCHEN20_COARSE_OF_CLASS = {
    "blender": "machines",
    "dishwasher": "machines",
    "fridge": "machines",
    "juicer": "machines",
    "microwave": "machines",
    "stove-fan": "machines",
    "boiling-water": "fluids",
    "clean-dishes": "fluids",
    "frying-pan": "fluids",
    "stove-burner": "fluids",
    "water-flowing": "fluids",
    "book": "handling",
    "chopping": "handling",
    "cupboard": "handling",
    "cutlery": "handling",
    "drawer": "handling",
    "eat": "handling",
    "peel": "handling",
    "plates": "handling",
    "sweep": "handling",
}
KITCHEN20_CLASSES = sorted(KITCHEN20_COARSE_OF_CLASS)
