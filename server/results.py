"""SceneResult messages from model outputs: one per window, and a clip's summary."""

from __future__ import annotations

import numpy as np

from asc.codecs.grid_tests import GridCall, join_detector, named_family
from proto import scene_classifier_pb2 as pb
from server.inference import DetectorOutput, DetectorRunner, SceneOutput, SceneRunner


def window_result(
    clip_id: str,
    start: float,
    end: float,
    scene: SceneOutput,
    pieces: list[DetectorOutput],
    runner: SceneRunner,
    detector: DetectorRunner | None,
) -> pb.SceneResult:
    result = pb.SceneResult(
        clip_id=clip_id,
        window_start=start,
        window_end=end,
        model_id=runner.model_id,
        model_version=runner.version,
    )
    fill_scene(result, scene, runner)
    if pieces and detector is not None:
        lossy = float(np.mean([p.lossy for p in pieces]))
        families = np.mean([p.families for p in pieces], axis=0)
        fill_detector(result, lossy, families, detector.families)
    return result


def summary_result(
    clip_id: str,
    codec: str,
    seconds: float,
    windows: list[pb.SceneResult],
    runner: SceneRunner,
    detector: DetectorRunner | None,
) -> pb.SceneResult:
    """The clip's result: window probabilities averaged, as the papers score whole clips."""
    scene = SceneOutput(
        scores=np.mean([probs(r.fine) for r in windows], axis=0),
        coarse=np.mean([probs(r.coarse) for r in windows], axis=0),
    )
    summary = pb.SceneResult(
        clip_id=clip_id,
        window_start=0.0,
        window_end=seconds,
        model_id=runner.model_id,
        model_version=runner.version,
        codec_path=codec,
        clip_summary=True,
        windows=len(windows),
        clip_seconds=seconds,
        # a window only knows it is last when the clip's end produced it; else this says so
        last_window=not windows[-1].last_window,
    )
    fill_scene(summary, scene, runner)
    if windows[0].detector_ran and detector is not None:
        families = np.mean([probs(r.codec_families) for r in windows], axis=0)
        lossy = float(np.mean([r.lossy_probability for r in windows]))
        fill_detector(summary, lossy, families, detector.families)
    return summary


def probs(items) -> np.ndarray:
    return np.array([p.probability for p in items], np.float64)


def fill_scene(result: pb.SceneResult, scene: SceneOutput, runner: SceneRunner) -> None:
    fine = runner.fine_classes
    result.fine_label = fine[int(np.argmax(scene.scores))]
    result.fine.extend(
        pb.ClassProbability(label=c, probability=float(p))
        for c, p in zip(fine, scene.scores, strict=True)
    )
    if len(scene.coarse):
        coarse = runner.coarse_classes
        result.coarse_label = coarse[int(np.argmax(scene.coarse))]
        result.coarse.extend(
            pb.ClassProbability(label=c, probability=float(p))
            for c, p in zip(coarse, scene.coarse, strict=True)
        )


def fill_detector(
    result: pb.SceneResult, lossy: float, families: np.ndarray, names: list[str]
) -> None:
    result.detector_ran = True
    result.lossy_probability = lossy
    result.codec_family = named_family(lossy, families, names)
    result.codec_families.extend(
        pb.ClassProbability(label=n, probability=float(p))
        for n, p in zip(names, families, strict=True)
    )


def join_grid(result: pb.SceneResult, call: GridCall) -> None:
    """A window's detector output joined by its clip's grid tests (asc.codecs.grid_tests's
    ``join_detector``); a clip summary averaged from such windows names their family too."""
    names = [p.label for p in result.codec_families]
    network = probs(result.codec_families)
    lossy, families = join_detector(result.lossy_probability, network, call)
    del result.codec_families[:]
    fill_detector(result, lossy, families, names)
