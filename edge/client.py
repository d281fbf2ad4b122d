"""The streaming engine: clips in, codec-coded packets over gRPC, scene results out.

One :class:`EdgeStreamer` runs one StreamScenes call per codec path, each in its own thread,
over the same clips (a feeder thread reads the source once and hands every clip to every path).
Per path:

- packets carry at least ``packet_ms`` of encoded audio, and at low bitrates enough bytes that
  the message around them (which repeats the clip id) costs at most ``max_overhead`` of the
  payload: with the codec stream's own framing, about 1.045 wire bytes per opus:32k byte;
  ``realtime`` paces them at audio speed, as a device would send;
- at most ``max_in_flight`` clips are out without their summary (the request generator waits
  on a condition until summaries come back), so a slow server slows the edge instead of
  piling audio up in gRPC buffers;
- on UNAVAILABLE (refused, lost, server restarting) the path reconnects with exponential
  backoff and jitter and resends every clip without a summary from its beginning, with a new
  encoder, on a new call; results already reported (a summary, or a window of a resent clip)
  are not reported twice;
- any other status ends the run with an :class:`EdgeError` carrying the status and the
  server's message.

With a :class:`~edge.spool.Spool` (store and forward), every clip is written to disk before
it is sent and removed once each path has its summary; a restarted edge sends what the spool
holds first, skips clips its ledger shows answered, and does not report a window or summary
that an earlier run reported (see edge.spool for the exact guarantees).

Library use (the demo does this in-process)::

    report = stream_clips("localhost:50051", ["pcm16", "opus:32k"], clips, on_result=print)
    report.totals["opus:32k"].wire_kbps
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from asc.codecs.registry import resolve
from asc.codecs.spec import parse_spec
from asc.codecs.stream import StreamEncoder
from edge.clips import AudioClip
from edge.errors import SourceError
from edge.spool import Spool, SpooledClip, SpoolEntry, SpoolError, window_key
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
# Message bytes around a packet's payload beyond the clip id: oneof and field tags, lengths,
# sequence and end flag, counted generously (a 4-byte sequence, a 3-byte payload length).
PACKET_HEADER_BYTES = 16
BACKOFF_START, BACKOFF_FACTOR, BACKOFF_CAP = 0.5, 2.0, 30.0

ResultCallback = Callable[[str, pb.SceneResult, str], None]  # (codec path, result, true label)
EventCallback = Callable[[str, str], None]  # (codec path, message): reconnects and the like


class EdgeError(Exception):
    """The server (or the connection) refused the work: a gRPC status name and its message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def canonical_codecs(codecs: str | Sequence[str], rate: int, channels: int) -> list[str]:
    """Canonical spellings of the asked codec paths, validated here before any connection.

    Raises the engine's CodecError/CodecUnavailable (its message names the bad part), so a
    typo fails in a second instead of after a connect. Duplicates collapse into one path.
    (``auto``, choosing a path from the network, is not a codec and is refused like any
    unknown name.)
    """
    from asc.codecs.spec import split_spec_list

    items = split_spec_list(codecs) if isinstance(codecs, str) else list(codecs)
    out: list[str] = []
    for item in items:
        spec = str(parse_spec(item))
        resolve(spec, rate, channels)
        if spec not in out:
            out.append(spec)
    if not out:
        raise SourceError("no codec path given (e.g. --codec opus:32k)")
    return out


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


@dataclass
class _Pending:
    """A clip handed to the server (or being sent) whose summary has not come back."""

    clip: AudioClip
    windows_seen: set[tuple[float, float]] = field(default_factory=set)


class _Attempt:
    """One StreamScenes call: its sequence counter, its call object, why it ended early."""

    def __init__(self) -> None:
        self.sequence = 0
        self.call: grpc.Call | None = None
        self.over = False  # the call ended: the request generator must stop
        self.error: BaseException | None = None  # raised inside the request generator
        self.got_result = False


class _PathStream:
    """One codec path: its request generator, its result handling and its retry loop."""

    def __init__(self, spec: str, owner: EdgeStreamer) -> None:
        self.spec = spec
        self.owner = owner
        self.totals = PathTotals(spec)
        self.cond = threading.Condition()
        self.incoming: deque[AudioClip] = deque()  # handed over by the feeder, not yet taken
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.input_done = False
        self.input_error: BaseException | None = None
        self.draining = False  # take no new clips; finish those in flight
        self.cancelled = False  # stop now
        self.dead = False  # the thread has ended
        self.attempt: _Attempt | None = None
        self.thread = threading.Thread(target=self._run, name=f"asc-edge {spec}", daemon=True)
        self.error: BaseException | None = None

    # --- feeder side ---------------------------------------------------------------------

    def offer(self, clip: AudioClip, wait: bool = True) -> bool:
        """Queue a clip for this path; waits (``wait``) while the path is far enough ahead."""
        with self.cond:
            while (
                wait
                and len(self.incoming) >= self.owner.max_in_flight
                and not (self.draining or self.cancelled or self.dead)
            ):
                self.cond.wait()
            if self.draining or self.cancelled or self.dead:
                return False
            self.incoming.append(clip)
            self.cond.notify_all()
            return True

    def swap(self, clip_id: str, ref: SpooledClip) -> None:
        """A live clip not taken yet is now on disk: queue the spool's copy, free the memory."""
        with self.cond:
            for i, clip in enumerate(self.incoming):
                if clip.clip_id == clip_id and clip.live:
                    self.incoming[i] = ref
                    return

    def close_input(self, error: BaseException | None) -> None:
        with self.cond:
            self.input_done = True
            self.input_error = error
            self.cond.notify_all()

    def stop(self, drain: bool) -> None:
        with self.cond:
            self.draining = True
            if not drain:
                self.cancelled = True
            call = self.attempt.call if self.attempt else None
            self.cond.notify_all()
        if not drain and call is not None:
            call.cancel()

    # --- requests ------------------------------------------------------------------------

    def _config(self) -> pb.StreamRequest:
        o = self.owner
        return pb.StreamRequest(
            config=pb.StreamConfig(
                device_id=o.device_id,
                codec=self.spec,
                sample_rate=o.rate,
                channels=o.channels,
                window_seconds=o.window_seconds,
                hop_seconds=o.hop_seconds,
                detector=o.detector,
            )
        )

    def _stopped(self, att: _Attempt) -> bool:
        return att.over or self.cancelled

    def _requests(self, att: _Attempt):
        """The call's request stream: config, clips lacking a summary, then new clips."""
        try:
            config = self._config()
            self.totals.wire_bytes += config.ByteSize()
            yield config
            with self.cond:
                backlog = list(self.pending.values())
            for entry in backlog:  # a reconnect: resend whole, as fast as possible
                if self._stopped(att):
                    return
                self.totals.resent_clips += 1
                yield from self._send_clip(entry, att, paced=False)
            while True:
                with self.cond:
                    while True:
                        if self._stopped(att) or self.draining:
                            return
                        if len(self.pending) < self.owner.max_in_flight:
                            if self.incoming:
                                clip = self.incoming.popleft()
                                ref = clip if isinstance(clip, SpooledClip) else None
                                if ref is not None and (clip := self._from_spool(ref)) is None:
                                    continue  # evicted before its turn
                                if clip.clip_id in self.pending:  # results would be ambiguous
                                    raise SourceError(
                                        f"clip id {clip.clip_id!r} is already in flight; "
                                        "clip ids must be unique"
                                    )
                                entry = self.pending[clip.clip_id] = _Pending(clip)
                                if ref is not None:  # windows an earlier run reported
                                    entry.windows_seen |= ref.windows(self.spec)
                                    self.totals.resumed_clips += int(ref.resumed)
                                self.cond.notify_all()
                                break
                            if self.input_done:
                                return  # half-close: the server finishes what it has
                        self.cond.wait()
                yield from self._send_clip(entry, att, paced=self.owner.realtime)
        except Exception as e:  # handed to the path thread, which raises it
            with self.cond:
                att.error = e
                att.over = True
                call = att.call
                self.cond.notify_all()
            if call is not None:
                call.cancel()

    def _from_spool(self, ref: SpooledClip) -> AudioClip | None:
        """A spooled clip's audio, read back when its turn comes; None when it is gone."""
        try:
            return ref.materialize()
        except SpoolError as e:
            self.owner.notify(self.spec, f"skipping clip {ref.clip_id}: {e}")
            return None

    def _pace(self, att: _Attempt, due: float) -> None:
        """Wait until ``due`` (monotonic), waking early for a stop or a drain."""
        with self.cond:
            while not (self._stopped(att) or self.draining):
                left = due - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(left)

    def _send_clip(self, entry: _Pending, att: _Attempt, paced: bool):
        """Encode one clip with a fresh encoder and yield its packets."""
        o, clip, totals = self.owner, entry.clip, self.totals
        encoder = StreamEncoder(self.spec, o.rate, o.channels)
        step = max(1, round(o.rate * o.packet_ms / 1000))
        min_bytes = (PACKET_HEADER_BYTES + len(clip.clip_id.encode())) / o.max_overhead
        buffer = bytearray()
        buffered_samples = 0
        payload_mark = 0
        first = True
        clip_samples = 0
        start = time.monotonic()
        paced = paced and not clip.live

        def packet(final: bool) -> pb.StreamRequest:
            nonlocal buffered_samples, payload_mark, first
            request = pb.StreamRequest(
                packet=pb.AudioPacket(
                    sequence=att.sequence,
                    clip_id=clip.clip_id,
                    payload=bytes(buffer),
                    end_of_clip=final,
                    label=clip.label if first else "",
                )
            )
            att.sequence += 1
            totals.wire_bytes += request.ByteSize()  # == len(request.SerializeToString())
            totals.framed_bytes += len(buffer)
            totals.payload_bytes += encoder.payload_bytes - payload_mark
            totals.audio_seconds += buffered_samples / o.rate
            payload_mark = encoder.payload_bytes
            buffer.clear()
            buffered_samples = 0
            first = False
            return request

        for chunk in clip.chunks(step):
            if self._stopped(att):
                return
            buffer += encoder.encode(chunk)
            buffered_samples += len(chunk)
            clip_samples += len(chunk)
            if buffered_samples >= step and len(buffer) >= min_bytes:
                if paced:
                    self._pace(att, start + clip_samples / o.rate)
                    if self._stopped(att):
                        return
                yield packet(final=False)
        buffer += encoder.finish()
        if paced:
            self._pace(att, start + clip_samples / o.rate)
        if clip.live:  # its spool copy is written as its recording ends: not answered before
            o.wait_spooled(clip.clip_id, lambda: self._stopped(att))
        if self._stopped(att):
            return
        yield packet(final=True)
        totals.clips_sent += 1

    # --- results -------------------------------------------------------------------------

    def _on_result(self, att: _Attempt, result: pb.SceneResult) -> None:
        att.got_result = True
        key = window_key(result.window_start, result.window_end)
        with self.cond:
            entry = self.pending.get(result.clip_id)
            if entry is None:  # already summarised (a duplicate) or not ours
                return
            if result.clip_summary:
                del self.pending[result.clip_id]
                self.cond.notify_all()
            else:
                if key in entry.windows_seen:  # the same window again, after a resend
                    return
                entry.windows_seen.add(key)
        label = entry.clip.label
        totals = self.totals
        if result.clip_summary:
            totals.clips += 1
            if label:
                totals.labelled += 1
                totals.correct += int(result.fine_label == label)
        else:
            totals.results += 1
            totals.latency_ms_total += result.server_latency_ms
        self.owner.deliver(self.spec, result, label)
        spool = self.owner.spool
        if spool is not None:  # reported first, recorded second (see edge.spool)
            if result.clip_summary:
                spool.completed(result.clip_id, self.spec)
            else:
                spool.window_reported(result.clip_id, self.spec, key)

    # --- the call and its retries ----------------------------------------------------------

    def _finished(self) -> bool:
        with self.cond:
            no_more = self.draining or (self.input_done and not self.incoming)
            return self.cancelled or (no_more and not self.pending)

    def _call_once(self) -> tuple[_Attempt, grpc.RpcError | None]:
        att = _Attempt()
        with self.cond:
            self.attempt = att
        channel = self.owner.open_channel()
        try:
            stub = pbg.SceneClassifierStub(channel)
            call = stub.StreamScenes(self._requests(att))
            with self.cond:
                att.call = call
                cancel = att.error is not None or self.cancelled
            if cancel:
                call.cancel()
            for result in call:
                self._on_result(att, result)
            return att, None
        except grpc.RpcError as e:
            return att, e
        finally:
            with self.cond:
                att.over = True
                self.cond.notify_all()
            channel.close()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # the owner re-raises it in its thread
            self.error = e
        finally:
            with self.cond:
                self.dead = True
                self.cond.notify_all()
            self.owner.path_ended(self)

    def _loop(self) -> None:
        failures = 0
        started = time.monotonic()
        try:
            while True:
                att, error = self._call_once()
                if att.error is not None:
                    raise att.error
                if self.cancelled:
                    return
                if self._finished():  # every clip summarised, whatever ended the call
                    if self.input_error is not None:
                        raise self.input_error
                    return
                if error is None:
                    if self.pending and (self.input_done or self.draining):
                        ids = ", ".join(list(self.pending)[:5])
                        raise EdgeError(
                            "INTERNAL",
                            f"the server closed the stream without summaries for "
                            f"{len(self.pending)} clip(s) ({ids})",
                        )
                    reason = "the server closed the stream early"
                else:
                    code, details = error.code(), error.details() or str(error)
                    if code not in RETRYABLE:
                        raise EdgeError(code.name, details)
                    reason = f"server unavailable ({details})"
                failures = 0 if att.got_result else failures + 1
                limit = self.owner.max_retries
                if limit is not None and failures > limit:
                    raise EdgeError(
                        "UNAVAILABLE",
                        f"{self.owner.target}: {reason}; gave up after {failures} attempt(s)",
                    )
                delay = min(BACKOFF_CAP, BACKOFF_START * BACKOFF_FACTOR ** max(0, failures - 1))
                delay *= random.uniform(0.5, 1.0)  # jitter: a fleet must not reconnect in step
                with self.cond:
                    waiting = len(self.pending)
                self.owner.notify(
                    self.spec,
                    f"{reason}; retrying in {delay:.1f} s"
                    + (f", then resending {waiting} clip(s)" if waiting else ""),
                )
                self.totals.reconnects += 1
                with self.cond:
                    deadline = time.monotonic() + delay
                    while not self.cancelled and (left := deadline - time.monotonic()) > 0:
                        self.cond.wait(left)
                if self.cancelled:
                    return
        finally:
            self.totals.elapsed_seconds = time.monotonic() - started


class EdgeStreamer:
    """Streams clips through one or more codec paths at once; see the module docstring.

    ``start()`` then ``join()``, or ``run()`` for both with Ctrl-C handling. Callbacks are
    called one at a time (never concurrently), from the paths' threads.
    """

    def __init__(
        self,
        target: str,
        codecs: str | Sequence[str],
        clips: Iterable[AudioClip],
        *,
        rate: int = 44100,
        channels: int = 1,
        device_id: str = "",
        window_seconds: float = 0.0,
        hop_seconds: float = 0.0,
        detector: bool = False,
        realtime: bool = False,
        packet_ms: float = 500.0,
        max_overhead: float = 0.02,
        max_in_flight: int = 4,
        max_retries: int | None = 10,
        on_result: ResultCallback | None = None,
        on_event: EventCallback | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        spool: Spool | None = None,
    ) -> None:
        if packet_ms <= 0:
            raise ValueError(f"packet_ms must be positive, got {packet_ms}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.target = target
        self.rate, self.channels = rate, channels
        self.device_id = device_id
        self.window_seconds, self.hop_seconds = window_seconds, hop_seconds
        self.detector, self.realtime = detector, realtime
        if not 0 < max_overhead <= 1:
            raise ValueError(f"max_overhead must lie in (0, 1], got {max_overhead}")
        self.packet_ms, self.max_in_flight = packet_ms, max_in_flight
        self.max_overhead = max_overhead
        self.max_retries = max_retries
        self.on_result, self.on_event = on_result, on_event
        self.credentials = credentials
        # A local subchannel pool: each reconnect really dials again, on this engine's backoff
        # rather than on a shared subchannel's own (which grows to two minutes).
        self.options = [("grpc.use_local_subchannel_pool", 1), *options]
        self.codecs = canonical_codecs(codecs, rate, channels)
        self.clips = clips
        self.paths = [_PathStream(spec, self) for spec in self.codecs]
        self.spool = spool  # opened by the caller; see edge.spool
        self._spooling: dict[str, threading.Event] = {}  # live clips being written to it
        if spool is not None:
            spool.on_evict = self._evicted
        self._callback_lock = threading.Lock()
        self._state = threading.Condition()
        self._feeder = threading.Thread(target=self._feed, name="asc-edge feeder", daemon=True)
        self._started = False
        self._stopping = False
        self.interrupted = False

    # --- plumbing used by the paths --------------------------------------------------------

    def open_channel(self) -> grpc.Channel:
        if self.credentials is not None:
            return grpc.secure_channel(self.target, self.credentials, options=self.options)
        return grpc.insecure_channel(self.target, options=self.options)

    def deliver(self, spec: str, result: pb.SceneResult, label: str) -> None:
        if self.on_result is not None:
            with self._callback_lock:
                self.on_result(spec, result, label)

    def notify(self, spec: str, message: str) -> None:
        if self.on_event is not None:
            with self._callback_lock:
                self.on_event(spec, message)

    def path_ended(self, path: _PathStream) -> None:
        if path.error is not None:  # one path failing ends the run: the others finish up
            self.stop(drain=True)
        with self._state:
            self._state.notify_all()

    def _evicted(self, entry: SpoolEntry, owed: list[str]) -> None:
        for path in self.paths:
            if path.spec in owed:
                path.totals.evicted_clips += 1

    def wait_spooled(self, clip_id: str, stopped: Callable[[], bool]) -> None:
        """Until a live clip's spool copy is written (at once for any other clip)."""
        event = self._spooling.get(clip_id)
        while event is not None and not event.wait(0.1) and not stopped():
            pass

    def _feed(self) -> None:
        """Read the source once and hand every clip to every live path, in order.

        With a spool: first the clips an earlier run left there (oldest first), then each new
        clip, written to the spool before it is handed over (a live clip as its recording
        ends; it streams meanwhile) and only to the paths that still owe it.
        """
        error: BaseException | None = None
        try:
            if self.spool is not None and not self._feed_backlog():
                return
            for clip in self.clips:
                if clip.rate != self.rate or clip.channels != self.channels:
                    raise SourceError(
                        f"clip {clip.clip_id}: {clip.rate} Hz, {clip.channels} channel(s) "
                        f"but the stream is {self.rate} Hz, {self.channels} channel(s)"
                    )
                paths, owed = self.paths, self.codecs
                live = clip.live and self.spool is not None
                if self.spool is not None:
                    owed = self.spool.plan(clip.clip_id, self.codecs)
                    done = self.spool.summarised(clip.clip_id)
                    for path in self.paths:
                        path.totals.skipped_clips += int(path.spec in done)
                    if not owed:
                        continue
                    paths = [path for path in self.paths if path.spec in owed]
                    if not live:
                        self.spool.add(clip, _pcm(clip), owed)
                if live:  # never wait for the network: the spool holds what it cannot take
                    self._spooling[clip.clip_id] = threading.Event()
                try:
                    taken = [path.offer(clip, wait=not live) for path in paths]
                    if live:
                        self._spool_live(clip, owed, paths)
                finally:
                    if live:
                        self._spooling.pop(clip.clip_id).set()
                if not any(taken) or self._stopping:
                    return
        except Exception as e:  # each path raises it after finishing its clips
            error = e
        finally:
            for path in self.paths:
                path.close_input(error)

    def _feed_backlog(self) -> bool:
        """Hand over what an earlier run left in the spool; False when the run is stopping."""
        backlog = self.spool.backlog(self.codecs, self.rate, self.channels)
        if backlog:
            self.notify("*", f"resuming {len(backlog)} clip(s) from the spool first")
        for entry, owed in backlog:
            ref = SpooledClip(self.spool, entry, resumed=True)
            taken = [path.offer(ref, wait=False) for path in self.paths if path.spec in owed]
            if not any(taken) or self._stopping:
                return False
        return True

    def _spool_live(self, clip: AudioClip, owed: list[str], paths: list[_PathStream]) -> None:
        """Once a live clip's recording ends, write it; paths not at it yet take the copy."""
        pcm = _pcm(clip)  # waits for the end of the recording
        entry = self.spool.add(clip, pcm, owed)
        if entry is not None:
            ref = SpooledClip(self.spool, entry, resumed=False)
            for path in paths:
                path.swap(clip.clip_id, ref)

    # --- control ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("an EdgeStreamer runs once; make a new one")
        self._started = True
        for path in self.paths:
            path.thread.start()
        self._feeder.start()

    def stop(self, drain: bool = True) -> None:
        """Take no new clips; ``drain``: finish the clips in flight, else cancel the calls now."""
        self._stopping = True
        stop_source = getattr(self.clips, "stop", None)
        if callable(stop_source):  # a microphone: end the clip being recorded
            stop_source()
        for path in self.paths:
            path.stop(drain)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every path to end; True when they have."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._state:
            while not all(p.dead for p in self.paths):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._state.wait(0.2 if left is None else min(left, 0.2))
        return True

    @property
    def in_flight(self) -> int:
        return sum(len(p.pending) for p in self.paths)

    @property
    def totals(self) -> dict[str, PathTotals]:
        return {p.spec: p.totals for p in self.paths}

    def first_error(self) -> BaseException | None:
        return next((p.error for p in self.paths if p.error is not None), None)

    def run(self) -> StreamReport:
        """Start, wait, and raise the first path's error (EdgeError, SourceError, CodecError).

        Ctrl-C once: take no new clips and wait for the summaries of those in flight; twice:
        cancel now. Either way the report comes back with ``interrupted`` set.
        """
        self.interrupted = run_draining(self, lambda text: self.notify("*", text))
        return StreamReport(self.totals, self.interrupted)


def run_draining(runner: Any, notify: Callable[[str], None] | None) -> bool:
    """Start ``runner`` (start, join, stop, in_flight, first_error) and wait for it; True when
    Ctrl-C ended the run.

    Ctrl-C once: take no new clips and wait for the summaries of those in flight; twice: cancel
    now. The first error is raised, except an EdgeError caused by the interruption itself.
    """
    interrupted = False
    runner.start()
    try:
        runner.join()
    except KeyboardInterrupt:
        interrupted = True
        if notify is not None:
            notify(
                f"interrupted: waiting for {runner.in_flight} clip(s) in flight "
                "(Ctrl-C again to quit now)"
            )
        runner.stop(drain=True)
        try:
            runner.join()
        except KeyboardInterrupt:
            runner.stop(drain=False)
            runner.join(timeout=10)
    error = runner.first_error()
    if error is not None and not (interrupted and isinstance(error, EdgeError)):
        raise error
    return interrupted


def _pcm(clip: AudioClip) -> np.ndarray:
    """A clip's whole audio (a live clip's once its recording has ended)."""
    pcm = getattr(clip, "pcm", None)
    if pcm is not None:
        return pcm
    pieces = list(clip.chunks(1 << 16))
    return np.concatenate(pieces) if pieces else np.zeros((0, clip.channels), np.float32)


def stream_clips(
    target: str, codecs: str | Sequence[str], clips: Iterable[AudioClip], **kwargs: Any
) -> StreamReport:
    """Stream ``clips`` through each codec path in ``codecs`` (a list or a comma list).

    Keyword arguments are :class:`EdgeStreamer`'s: rate, channels, device_id, window_seconds,
    hop_seconds, detector, realtime, packet_ms, max_overhead, max_in_flight, max_retries
    (None: forever),
    on_result(path, result, label), on_event(path, message), credentials, options, spool (an
    opened edge.spool.Spool: store and forward, resume after a restart).
    """
    return EdgeStreamer(target, codecs, clips, **kwargs).run()


# --- one whole clip (ClassifyClip) -----------------------------------------------------------


def classify_file(
    target: str,
    path: str | Path,
    codec: str,
    *,
    rate: int = 44100,
    channels: int = 1,
    detector: bool = False,
    window_seconds: float = 0.0,
    hop_seconds: float = 0.0,
    timeout: float = 120.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> pb.ClipResult:
    """Send one file to ClassifyClip: coded whole through ``codec``, or as-is with ``probe``.

    ``probe`` sends the file's bytes untouched with an empty codec, for the server to probe
    the container; any other spec is validated here, the file loaded at ``rate``/``channels``
    and coded with the engine into that codec's container.
    """
    from asc.audio import load
    from asc.codecs.clip import encode

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if codec == "probe":
        data, spec = path.read_bytes(), ""
    else:
        spec = canonical_codecs([codec], rate, channels)[0]
        try:
            pcm, _ = load(path, rate, channels)
        except ValueError as e:
            raise SourceError(str(e)) from None
        data = encode(pcm, rate, spec)
    request = pb.ClipRequest(
        clip_id=path.stem,
        data=data,
        codec=spec,
        sample_rate=rate,
        detector=detector,
        window_seconds=window_seconds,
        hop_seconds=hop_seconds,
    )
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    channel = (
        grpc.secure_channel(target, credentials, options=options)
        if credentials is not None
        else grpc.insecure_channel(target, options=options)
    )
    try:
        return pbg.SceneClassifierStub(channel).ClassifyClip(request, timeout=timeout)
    except grpc.RpcError as e:
        raise EdgeError(e.code().name, e.details() or str(e)) from None
    finally:
        channel.close()
