"""Prometheus series of the scene server, one registry per server so tests can run several.

Codec-path labels use the engine's canonical spec (``opus:32k``, ``sbc:bitpool=53>aac:64k``),
so dashboards group by the same strings the CLI, the proto and the reports use. The Grafana
dashboard under ``deploy/`` queries exactly these names.

A label value is a series Prometheus keeps forever, so clients must not be able to mint them:
codec paths reach ``codec_label`` only after the registry accepted them (a known codec, a chain
of at most four hops) and the data decoded, and past ``MAX_CODEC_PATHS`` distinct paths any new
one is counted as ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from proto import scene_classifier_pb2 as pb

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MAX_CODEC_PATHS = 128  # distinct codec_path label values; later new ones become "other"
OTHER = "other"


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        # Registered in this order, which is the order /metrics lists them in.
        self._traffic_series(self.registry)
        self._refusal_series(self.registry)
        self._clip_series(self.registry)
        self._inference_series(self.registry)
        self._accuracy_series(self.registry)
        self.model_info = Info("asc_model", "Loaded models", ["kind"], registry=self.registry)
        self._memory_series(self.registry)
        self._tallies: dict[tuple[str, str], list[int]] = {}
        self._paths: set[str] = set()

    def _traffic_series(self, r: CollectorRegistry) -> None:
        """Streams and what they carry, per codec path."""
        self.active_streams = Gauge("asc_active_streams", "Open StreamScenes calls", registry=r)
        self.streams = Counter(
            "asc_streams", "StreamScenes calls by how they ended", ["status"], registry=r
        )
        self.packets = Counter("asc_packets", "Audio packets received", ["codec_path"], registry=r)
        self.bytes = Counter(
            "asc_payload_bytes", "Encoded payload bytes received", ["codec_path"], registry=r
        )
        self.decoded_seconds = Counter(
            "asc_decoded_seconds", "Seconds of audio decoded", ["codec_path"], registry=r
        )
        self.decode_errors = Counter(
            "asc_decode_errors", "Payloads that could not be decoded", ["codec_path"], registry=r
        )

    def _refusal_series(self, r: CollectorRegistry) -> None:
        self.rejected = Counter(
            "asc_rejected_requests",
            "Streams or calls ended with an error status, by status code",
            ["code"],
            registry=r,
        )
        self.access_denied = Counter(
            "asc_access_denied",
            "Calls refused by access control (credentials, device id, rate), by reason",
            ["reason"],
            registry=r,
        )

    def _clip_series(self, r: CollectorRegistry) -> None:
        self.clips = Counter("asc_clips", "Clips completed", ["codec_path"], registry=r)
        self.duplicates = Counter(
            "asc_duplicate_clips",
            "Clips sent again after their result; answered from memory, not classified again",
            ["codec_path"],
            registry=r,
        )
        self.codec_families = Counter(
            "asc_codec_families",
            "Clips by the lossy detector's codec family guess (lossless below 0.5): what the "
            "audio on each codec path has been through",
            ["codec_path", "family"],
            registry=r,
        )

    def _inference_series(self, r: CollectorRegistry) -> None:
        """The batchers and models: batch sizes, waits, pass times and window latency."""
        self.windows = Counter(
            "asc_windows_classified", "Windows classified", ["codec_path", "model"], registry=r
        )
        self.batch_size = Histogram(
            "asc_batch_size", "Items per forward pass", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_delay = Histogram(
            "asc_queue_delay_seconds",
            "Time an item waited in the batcher before its forward pass began",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "asc_inference_seconds",
            "Duration of one batched forward pass (features included)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.window_latency = Histogram(
            "asc_window_latency_seconds",
            "From the packet that completed a window to its result being sent",
            ["codec_path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_cpu = Counter(
            "asc_stage_cpu_seconds",
            "CPU time of the threads doing each stage: decode (the codec, with framing and "
            "hashing), windows (mixing to mono, cutting, resampling), <model>_features, "
            "<model>_model, results (building result messages); the process's CPU time less "
            "these is gRPC, protobuf and the event loop (benchmarks.server_profile)",
            ["stage"],
            registry=r,
        )
        self.grid_tests = Counter(
            "asc_grid_tests",
            "The lossy detector's grid tests (the codecs' frame grids) by outcome: "
            "run, failed, or skipped (the grid tests' queue was full; the clip takes its "
            "stream's last call)",
            ["outcome"],
            registry=r,
        )
        for outcome in ("run", "failed", "skipped"):  # every series from the start, at zero:
            self.grid_tests.labels(outcome)  # a test may finish after a stream's summary
        self.detector_positives = Counter(
            "asc_detector_positives",
            "Windows the lossy detector judged lossy (probability >= 0.5)",
            ["codec_path"],
            registry=r,
        )

    def _accuracy_series(self, r: CollectorRegistry) -> None:
        """Accuracy on clips that came labelled, moved together by ``record_label``."""
        self.labelled = Counter(
            "asc_labelled_clips",
            "Clips that came with a ground-truth label",
            ["codec_path", "model"],
            registry=r,
        )
        self.correct = Counter(
            "asc_correct_clips",
            "Labelled clips whose clip-level prediction matched the label",
            ["codec_path", "model"],
            registry=r,
        )
        self.accuracy = Gauge(
            "asc_accuracy",
            "Clip accuracy so far on labelled clips (correct / labelled)",
            ["codec_path", "model"],
            registry=r,
        )

    def _memory_series(self, r: CollectorRegistry) -> None:
        """Memory held under the --audio-memory-mb and --cache-mb budgets."""
        self.audio_memory = Gauge(
            "asc_audio_memory_reserved_bytes",
            "Audio memory reserved by open streams (bounded by --audio-memory-mb)",
            registry=r,
        )
        self.remembered_bytes = Gauge(
            "asc_remembered_clips_bytes",
            "Bytes held by the memory of finished clips (bounded by --cache-mb)",
            registry=r,
        )

    def codec_label(self, path: str) -> str:
        """``path`` as a label value, from a bounded set (see the module docstring)."""
        if path in self._paths:
            return path
        if len(self._paths) >= MAX_CODEC_PATHS:
            return OTHER
        self._paths.add(path)
        return path

    def record_clip(self, codec_path: str, summary: pb.SceneResult) -> None:
        """A clip's summary is out: counted, and by its codec family where the detector ran
        (the families are the detector's fixed set, so the label stays bounded)."""
        self.clips.labels(codec_path).inc()
        if summary.detector_ran and summary.codec_family:
            self.codec_families.labels(codec_path, summary.codec_family).inc()

    def record_label(self, codec_path: str, model: str, correct: bool) -> None:
        """Counters and the gauge move together, so the gauge is always correct / labelled."""
        tally = self._tallies.setdefault((codec_path, model), [0, 0])
        tally[0] += int(correct)
        tally[1] += 1
        self.labelled.labels(codec_path, model).inc()
        if correct:
            self.correct.labels(codec_path, model).inc()
        else:
            self.correct.labels(codec_path, model).inc(0)  # create the series at zero
        self.accuracy.labels(codec_path, model).set(tally[0] / tally[1])


@dataclass
class StageCounters:
    """The ``asc_stage_cpu_seconds`` children the stream path bumps per packet and window,
    bound once: looking a labelled child up costs a lock and a dict on every call."""

    decode: Counter
    windows: Counter
    results: Counter

    @classmethod
    def of(cls, metrics: ServerMetrics) -> StageCounters:
        return cls(*(metrics.stage_cpu.labels(s) for s in ("decode", "windows", "results")))
