"""Where a path's misses lie: the classes whose clips a codec path costs, pooled over folds.

A path that misses the share-kept goal by two or three points on a real test split has lost a
handful of clips, and whether they are spread over the classes or held by one or two decides
what to try next: a broad loss points at the training mixture, a narrow one at a cue that codec
destroys (and a remedy must reach that cue). So, per path below the goal, each class's clips
right uncoded and on the path, and what the clips it lost were taken for.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from training.augment import UNCODED


def class_losses(reports: list[dict], path: str, least: int = 2) -> dict:
    """Pooled over ``reports`` (a model's fold reports, each with ``classes``, ``truth`` and
    per path ``predicted``): the clips the path lost against the uncoded answers, and each class
    that lost at least ``least`` (most first) with the answer most of its lost clips got."""
    classes = reports[0]["classes"]
    right = Counter()
    coded = Counter()
    clips = Counter()
    taken: dict[str, Counter] = {}
    for report in reports:
        truth = np.array(report["truth"])
        answers = {p["path"]: np.array(p["predicted"]) for p in report["paths"]}
        if path not in answers:  # a fold that did not test this path has nothing to add
            continue
        uncoded, here = answers[UNCODED], answers[path]
        for t, u, h in zip(truth, uncoded, here, strict=True):
            name = classes[t]
            clips[name] += 1
            right[name] += int(u == t)
            coded[name] += int(h == t)
            if u == t and h != t:
                taken.setdefault(name, Counter())[classes[h]] += 1
    rows = []
    for name in classes:
        lost = right[name] - coded[name]
        if lost >= least:
            label, count = taken[name].most_common(1)[0] if taken.get(name) else ("-", 0)
            rows.append(
                {
                    "class": name,
                    "clips": clips[name],
                    "right_uncoded": right[name],
                    "right": coded[name],
                    "taken_for": label,
                    "taken_for_clips": count,
                }
            )
    rows.sort(key=lambda r: r["right"] - r["right_uncoded"])
    lost = sum(right.values()) - sum(coded.values())
    return {"path": path, "clips": sum(clips.values()), "lost": lost, "classes": rows}


def loss_lines(found: dict[str, list[dict]]) -> list[str]:
    """Markdown: per model, each path below the goal and the classes that lost most on it."""
    if not any(found.values()):
        return []
    lines = [
        "## Where the misses lie",
        "",
        "Per model and path below the goal, the test clips right uncoded and on the path (pooled "
        "over the model's folds), and each class that lost two clips or more, with what most of "
        "its lost clips were taken for. The rest of a path's loss is spread over the other "
        "classes.",
        "",
    ]
    for model, paths in found.items():
        for p in paths:
            held = sum(r["right_uncoded"] - r["right"] for r in p["classes"])
            each = [
                f"{r['class']} {r['right_uncoded']} -> {r['right']} of {r['clips']}"
                + (
                    f" ({r['taken_for_clips']} taken for {r['taken_for']})"
                    if r["taken_for_clips"]
                    else ""
                )
                for r in p["classes"]
            ]
            lines.append(
                f"- {model}, `{p['path']}`: {p['lost']} of {p['clips']} clips lost net; "
                + (
                    f"the classes that lost two or more lost {held} together: {'; '.join(each)}."
                    if each
                    else "no class lost two or more."
                )
            )
    return [*lines, ""]
