"""``--codec auto``: the lowest-bitrate codec path that keeps enough of the model's accuracy.

The table is any evaluation report's ``results.json`` (the one results schema: a top-level
``"paths"`` list of ``{"path", "kbps", "accuracy"}`` with ``"none"`` the uncoded reference),
by default the one shipped for the default model. Chains (``a>b``) describe a route the audio
takes after the device, not a choice the device makes, so they are never picked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from asc.codecs.errors import CodecError
from asc.codecs.registry import resolve
from asc.codecs.spec import parse_spec

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TABLE = REPO / "models" / "evaluation" / "results.json"


class CodecChoiceError(ValueError):
    """No table, a table in another shape, or no path that meets the constraints."""


@dataclass(frozen=True)
class Choice:
    spec: str
    kbps: float
    accuracy: float
    relative: float  # accuracy / uncoded accuracy
    reason: str


def read_table(path: str | Path) -> tuple[float, list[dict]]:
    """(uncoded accuracy, coded path rows) from a results.json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CodecChoiceError(f"{path}: no such results table (give one with --table)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CodecChoiceError(f"{path}: not a readable results.json ({e})") from None
    rows = data.get("paths") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and {"path", "kbps", "accuracy"} <= r.keys() for r in rows
    ):
        raise CodecChoiceError(
            f'{path}: expected a top-level "paths" list of objects with "path", "kbps" and '
            '"accuracy" (an asc-train evaluate report)'
        )
    uncoded = [r for r in rows if r["path"] == "none"]
    if not uncoded:
        raise CodecChoiceError(f'{path}: no "none" (uncoded) row to measure accuracy against')
    return float(uncoded[0]["accuracy"]), [r for r in rows if r["path"] != "none"]


def choose_codec(
    table: str | Path,
    min_relative_accuracy: float,
    max_kbps: float | None,
    rate: int,
    channels: int,
) -> Choice:
    """The cheapest path on the wire that keeps ``min_relative_accuracy`` of uncoded accuracy."""
    if not 0 < min_relative_accuracy <= 1.5:
        raise CodecChoiceError(
            f"--min-relative-accuracy must lie in (0, 1.5], got {min_relative_accuracy}"
        )
    uncoded, rows = read_table(table)
    if uncoded <= 0:
        raise CodecChoiceError(f"{table}: the uncoded accuracy is {uncoded}; nothing to keep")
    candidates, skipped = [], []
    for row in rows:
        spec, kbps, accuracy = str(row["path"]), float(row["kbps"]), float(row["accuracy"])
        relative = accuracy / uncoded
        if len(parse_spec(spec).stages) > 1:
            continue
        if max_kbps is not None and kbps > max_kbps:
            skipped.append(f"{spec} needs {kbps:.1f} kbps")
            continue
        if relative < min_relative_accuracy:
            skipped.append(f"{spec} keeps {relative:.0%}")
            continue
        try:
            resolve(spec, rate, channels)
        except CodecError as e:
            skipped.append(f"{spec} cannot run here ({e})")
            continue
        candidates.append((kbps, -accuracy, spec, accuracy, relative))
    if not candidates:
        limit = f" within {max_kbps:g} kbps" if max_kbps is not None else ""
        raise CodecChoiceError(
            f"no codec path in {table} keeps {min_relative_accuracy:.0%} of the uncoded accuracy "
            f"({uncoded:.3f}){limit}: " + "; ".join(skipped)
        )
    kbps, _, spec, accuracy, relative = min(candidates)
    limit = f", at most {max_kbps:g} kbps" if max_kbps is not None else ""
    reason = (
        f"picked {spec}: the lowest bitrate ({kbps:.1f} kbps) whose measured accuracy "
        f"{accuracy:.3f} keeps {relative:.1%} of the uncoded {uncoded:.3f} "
        f"(floor {min_relative_accuracy:.0%}{limit}; {len(candidates)} of {len(rows)} paths "
        f"qualified) in {table}"
    )
    return Choice(spec, kbps, accuracy, relative, reason)
