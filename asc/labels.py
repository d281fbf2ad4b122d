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
