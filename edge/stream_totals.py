"""What each codec path sent and got back, and the report a run ends with."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class PathTotals:
    """What one codec path sent and got back; bytes count every send, resends included."""

    codec_path: str
    clips: int = 0  # clips with a summary
    results: int = 0  # window results reported
    clips_sent: int = 0  # clips whose last packet went out (a resent clip counts again)
    resent_clips: int = 0
    reconnects: int = 0
    audio_seconds: float = 0.0  # audio encoded into packets that went out
    framed_bytes: int = 0  # framed codec stream (packet payload fields)
    payload_bytes: int = 0  # the codec's own bytes (StreamEncoder.payload_bytes)
    wire_bytes: int = 0  # serialized StreamRequest messages, the config included
    labelled: int = 0  # summarised clips that had a label
    correct: int = 0  # ... whose summary's fine label equals it
    latency_ms_total: float = 0.0  # server latency summed over window results
    elapsed_seconds: float = 0.0
    resumed_clips: int = 0  # taken from a spool an earlier run left (sent before new clips)
    skipped_clips: int = 0  # from the source, but the spool's ledger has their summary already
    evicted_clips: int = 0  # spooled clips still owed to this path, evicted (spool full)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def wire_kbps(self) -> float:
        return 8 * self.wire_bytes / self.audio_seconds / 1000 if self.audio_seconds else 0.0

    @property
    def payload_kbps(self) -> float:
        return 8 * self.payload_bytes / self.audio_seconds / 1000 if self.audio_seconds else 0.0

    @property
    def wire_ratio(self) -> float:
        """Bytes on the wire per codec byte: the framing and message overhead, plus one."""
        return self.wire_bytes / self.payload_bytes if self.payload_bytes else 0.0

    @property
    def mean_latency_ms(self) -> float:
        return self.latency_ms_total / self.results if self.results else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            audio_seconds=round(self.audio_seconds, 3),
            elapsed_seconds=round(self.elapsed_seconds, 3),
            latency_ms_total=round(self.latency_ms_total, 3),
            accuracy=self.accuracy,
            wire_kbps=round(self.wire_kbps, 3),
            payload_kbps=round(self.payload_kbps, 3),
            wire_ratio=round(self.wire_ratio, 4),
            mean_latency_ms=round(self.mean_latency_ms, 3),
        )
        return out


@dataclass
class StreamReport:
    """Totals per codec path; ``interrupted`` when Ctrl-C ended the run early."""

    totals: dict[str, PathTotals]
    interrupted: bool = False
