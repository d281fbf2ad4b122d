"""What the edge shows and records: a row per clip as it is summarised, totals per codec path.

On a terminal the rows and the final table are drawn with rich; piped or logged, each clip is
one plain ``key=value`` line, easy to grep. ``--jsonl`` writes every SceneResult (windows and
summaries) as one JSON object per line, then one ``{"type": "totals"}`` object per path (and,
with a spool, one ``{"type": "spool"}`` object).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.table import Table

from edge.spool import SpoolStats
from edge.stream_totals import PathTotals
from proto import scene_classifier_pb2 as pb

COLUMNS = (  # header, width, justify
    ("codec path", 22, "left"),
    ("clip", 30, "left"),
    ("true label", 18, "left"),
    ("predicted", 18, "left"),
    ("conf", 5, "right"),
    ("coarse", 14, "left"),
    ("lossy", 5, "right"),
    ("family", 8, "left"),
    ("latency ms", 10, "right"),
)


def confidence(result: pb.SceneResult) -> float:
    """The probability the result gives its own fine label."""
    return next((p.probability for p in result.fine if p.label == result.fine_label), 0.0)


def lossy_text(result: pb.SceneResult) -> str:
    return f"{result.lossy_probability:.2f}" if result.detector_ran else "-"


def family_text(result: pb.SceneResult) -> str:
    """The detector's codec family guess, or - where it did not run."""
    return (result.codec_family or "-") if result.detector_ran else "-"


def result_id(device_id: str, source: str, path: str, result: pb.SceneResult) -> str:
    """A result's stable id: the same clip, window and codec path of the same device and
    source always get the same id (after a reconnect, a resend or a restart with a spool), so
    whoever receives results (JSONL, MQTT, webhooks) can link back to one and drop a repeat."""
    kind = "summary" if result.clip_summary else "window"
    key = "\x1f".join(
        (
            device_id,
            source,
            path,
            result.clip_id,
            kind,
            f"{result.window_start:.6f}",
            f"{result.window_end:.6f}",
        )
    )
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def result_record(
    path: str,
    result: pb.SceneResult,
    label: str = "",
    *,
    source: str = "",
    device_id: str = "",
) -> dict[str, Any]:
    """One JSONL object: the result's fields by their proto names, defaults included, with the
    source it came from and its stable :func:`result_id`. MQTT and webhooks send this same
    object."""
    record: dict[str, Any] = {
        "type": "summary" if result.clip_summary else "window",
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "result_id": result_id(device_id, source, path, result),
        "device_id": device_id,
        "source": source,
        "path": path,
        "true_label": label,
    }
    record.update(
        MessageToDict(
            result, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )
    return record


class ConsoleReport:
    """Human-readable output; ``stream`` is stdout unless JSONL goes there."""

    def __init__(self, stream: IO[str] | None = None, force_plain: bool = False) -> None:
        self.console = Console(file=stream or sys.stdout, highlight=False, soft_wrap=False)
        self.rich = self.console.is_terminal and not force_plain
        self._header_done = False
        self._latency: dict[tuple[str, str], float] = {}  # summaries carry none: the windows'
        self._err = Console(file=sys.stderr, highlight=False)

    def _row_table(self, header: bool) -> Table:
        table = Table(box=None, show_header=header, header_style="bold", pad_edge=False)
        for name, width, justify in COLUMNS:
            table.add_column(name, width=width, justify=justify, no_wrap=True, overflow="ellipsis")
        return table

    def result(self, path: str, result: pb.SceneResult, label: str = "", source: str = "") -> None:
        """A clip's summary: one row; windows are left to JSONL (a row each would be noise).

        ``source``: the network source's name (``--source NAME=URL``), shown before the path."""
        key = (f"{source}/{path}", result.clip_id)
        if not result.clip_summary:
            self._latency[key] = max(self._latency.get(key, 0.0), result.server_latency_ms)
            return
        conf = confidence(result)
        window_latency = self._latency.pop(key, 0.0)  # the clip's slowest window
        latency = result.server_latency_ms or window_latency
        if not self.rich:
            print(
                ("summary " + (f"source={source} " if source else ""))
                + f"path={path} clip={result.clip_id} label={label or '-'} "
                f"predicted={result.fine_label} conf={conf:.2f} coarse={result.coarse_label} "
                f"lossy={lossy_text(result)} family={family_text(result)} "
                f"latency_ms={latency:.0f}",
                file=self.console.file,
                flush=True,
            )
            return
        style = "" if not label else ("green" if result.fine_label == label else "red")
        table = self._row_table(header=not self._header_done)
        self._header_done = True
        table.add_row(
            f"{source}: {path}" if source else path,
            result.clip_id,
            label or "-",
            f"[{style}]{result.fine_label}[/]" if style else result.fine_label,
            f"{conf:.2f}",
            result.coarse_label,
            lossy_text(result),
            family_text(result),
            f"{latency:.0f}",
        )
        self.console.print(table)

    def event(self, path: str, message: str) -> None:
        """Reconnects and the like: stderr, so stdout stays results only."""
        where = "" if path == "*" else f"{path}: "
        if self.rich:
            self._err.print(f"[yellow]asc-edge: {where}{message}[/]")
        else:
            print(f"asc-edge: {where}{message}", file=sys.stderr, flush=True)

    def totals(self, totals: Mapping[str, PathTotals], source: str = "") -> None:
        """The per-path table: clips, accuracy, achieved kbps on the wire and of the codec
        (one table per network source, named by ``source``)."""
        if not self.rich:
            for t in totals.values():
                acc = f"{t.accuracy:.3f}" if t.accuracy is not None else "-"
                print(
                    ("totals " + (f"source={source} " if source else ""))
                    + f"path={t.codec_path} clips={t.clips} windows={t.results} "
                    f"accuracy={acc} audio_s={t.audio_seconds:.1f} wire_kbps={t.wire_kbps:.1f} "
                    f"payload_kbps={t.payload_kbps:.1f} wire_ratio={t.wire_ratio:.3f} "
                    f"reconnects={t.reconnects} resent={t.resent_clips} "
                    f"resumed={t.resumed_clips} skipped={t.skipped_clips} "
                    f"evicted={t.evicted_clips}",
                    file=self.console.file,
                    flush=True,
                )
            return
        title = "totals per codec path" + (f" of source {source}" if source else "")
        table = Table(title=title, header_style="bold")
        for name in ("codec path", "clips", "accuracy", "audio s", "wire kbps", "payload kbps"):
            table.add_column(name, justify="left" if name == "codec path" else "right")
        table.add_column("wire/payload", justify="right")
        table.add_column("reconnects", justify="right")
        spooled = any(
            t.resumed_clips or t.skipped_clips or t.evicted_clips for t in totals.values()
        )
        if spooled:
            for name in ("resumed", "skipped", "evicted"):
                table.add_column(name, justify="right")
        for t in totals.values():
            spool_cells = (
                [str(t.resumed_clips), str(t.skipped_clips), str(t.evicted_clips)]
                if spooled
                else []
            )
            table.add_row(
                t.codec_path,
                str(t.clips),
                f"{t.accuracy:.3f} ({t.correct}/{t.labelled})" if t.accuracy is not None else "-",
                f"{t.audio_seconds:.1f}",
                f"{t.wire_kbps:.1f}",
                f"{t.payload_kbps:.1f}",
                f"{t.wire_ratio:.3f}",
                str(t.reconnects),
                *spool_cells,
            )
        self.console.print(table)

    def spool(self, stats: SpoolStats) -> None:
        """The store-and-forward spool at the end of the run: what it holds, what it lost."""
        line = (
            f"spool dir={stats.directory} clips={stats.clips} "
            f"mb={stats.bytes / 2**20:.1f}/{stats.max_bytes / 2**20:.0f} "
            f"recovered={stats.recovered} added={stats.added} completed={stats.completed} "
            f"evicted={stats.evicted_clips} evicted_mb={stats.evicted_bytes / 2**20:.1f} "
            f"unspooled={stats.unspooled} errors={stats.errors}"
        )
        if self.rich:
            self.console.print(line, markup=False)
        else:
            print(line, file=self.console.file, flush=True)

    def clip_result(self, codec: str, result: pb.ClipResult) -> None:
        """``asc-edge classify``: every window, then the summary."""
        rows = [*result.windows, result.summary]
        if not self.rich:
            for r in rows:
                kind = "summary" if r is result.summary else "window"
                print(
                    f"{kind} clip={result.clip_id} start={r.window_start:.2f} "
                    f"end={r.window_end:.2f} predicted={r.fine_label} conf={confidence(r):.2f} "
                    f"coarse={r.coarse_label} lossy={lossy_text(r)} codec_path={r.codec_path} "
                    f"latency_ms={r.server_latency_ms:.0f}",
                    file=self.console.file,
                    flush=True,
                )
            return
        table = Table(
            title=f"{result.clip_id} through {result.summary.codec_path or codec}",
            header_style="bold",
        )
        for name in ("window s", "predicted", "conf", "coarse", "lossy", "codec family"):
            table.add_column(name, justify="right" if name in ("conf", "lossy") else "left")
        for r in rows:
            summary = r is result.summary
            table.add_row(
                "[bold]whole clip[/]" if summary else f"{r.window_start:.1f}-{r.window_end:.1f}",
                f"[bold]{r.fine_label}[/]" if summary else r.fine_label,
                f"{confidence(r):.2f}",
                r.coarse_label,
                lossy_text(r),
                family_text(r),
            )
        self.console.print(table)


class JsonlWriter:
    """One JSON object per line, flushed per line so a reader can follow it live.

    ``durable`` (with a spool): append to the file rather than replace it, so a restarted edge
    continues the same record, and fsync each line, so that what the spool records as reported
    has reached the disk first (edge.spool).
    """

    def __init__(self, target: str, durable: bool = False) -> None:
        self.to_stdout = target == "-"
        self.durable = durable and not self.to_stdout
        if self.to_stdout:
            self.file: IO[str] = sys.stdout
        elif self.durable:
            self.file = open(target, "a", encoding="utf-8")  # noqa: SIM115
            with open(target, "rb") as f:  # a run killed mid-line must not glue two records
                if f.seek(0, os.SEEK_END) and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                    self.file.write("\n")
        else:
            self.file = open(target, "w", encoding="utf-8")  # noqa: SIM115

    def write(self, record: Mapping[str, Any]) -> None:
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.file.flush()
        if self.durable:
            os.fsync(self.file.fileno())

    def result(self, path: str, result: pb.SceneResult, label: str = "") -> None:
        self.write(result_record(path, result, label))

    def totals(self, totals: Mapping[str, PathTotals], source: str = "") -> None:
        extra = {"source": source} if source else {}
        for t in totals.values():
            self.write({"type": "totals", **extra, "path": t.codec_path, **t.as_dict()})

    def spool(self, stats: SpoolStats, source: str = "") -> None:
        extra = {"source": source} if source else {}
        self.write({"type": "spool", **extra, **stats.as_dict()})

    def clip_result(self, codec: str, result: pb.ClipResult) -> None:
        for window in result.windows:
            self.write(result_record(codec, window))
        self.write(result_record(codec, result.summary))

    def close(self) -> None:
        if not self.to_stdout:
            self.file.close()
