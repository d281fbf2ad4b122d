"""One codec path of a stream: its StreamScenes call, its packets, its results, its retries.

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
- any other status ends the run with an :class:`~edge.errors.EdgeError` carrying the status
  and the server's message.

The paths of a run share their clips and callbacks through edge.streamer's EdgeStreamer.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from asc.codecs.stream import StreamEncoder
from edge.clips import AudioClip
from edge.errors import EdgeError, SourceError, SpoolError
from edge.spool import Spool, SpooledClip
from edge.spool_files import window_key
from edge.stream_totals import PathTotals
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
# Message bytes around a packet's payload beyond the clip id: oneof and field tags, lengths,
# sequence and end flag, counted generously (a 4-byte sequence, a 3-byte payload length).
PACKET_HEADER_BYTES = 16
BACKOFF_START, BACKOFF_FACTOR, BACKOFF_CAP = 0.5, 2.0, 30.0


class StreamOwner(Protocol):
    """What a path takes from the EdgeStreamer running it: the stream's settings, its channel,
    its spool and its callbacks (a protocol, so this module need not import the streamer)."""

    target: str
    rate: int
    channels: int
    device_id: str
    window_seconds: float
    hop_seconds: float
    detector: bool
    realtime: bool
    wait_for_grid_tests: bool
    packet_ms: float
    max_overhead: float
    max_in_flight: int
    max_retries: int | None
    spool: Spool | None

    def open_channel(self) -> grpc.Channel: ...

    def deliver(self, spec: str, result: pb.SceneResult, label: str) -> None: ...

    def notify(self, spec: str, message: str) -> None: ...

    def wait_spooled(self, clip_id: str, stopped: Callable[[], bool]) -> None: ...

    def path_ended(self, path: PathStream) -> None: ...


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


class PathStream:
    """One codec path: its request generator, its result handling and its retry loop."""

    def __init__(self, spec: str, owner: StreamOwner) -> None:
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
                wait_for_grid_tests=o.wait_for_grid_tests,
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
