"""The edge as a library: stream clips to the scene server, or send it one whole file.

The engine lives in modules of one concern each; this module gathers the names a program
needs, so that it has one place to import from:

- edge.streamer: :class:`EdgeStreamer` and :func:`stream_clips`, clips through every codec
  path at once (a feeder, one thread per path, the spool, Ctrl-C draining);
- edge.path_stream: one codec path's StreamScenes call: packets, pacing, results, reconnects;
- edge.stream_totals: :class:`PathTotals` and :class:`StreamReport`, what each path sent and
  got back;
- edge.codec_paths: :func:`canonical_codecs`, the asked paths checked before connecting;
- edge.classify: :func:`classify_file`, one whole file through ClassifyClip;
- edge.errors: :class:`EdgeError`, the server's refusal, and :class:`SourceError`.

Library use (the demo does this in-process)::

    report = stream_clips("localhost:50051", ["pcm16", "opus:32k"], clips, on_result=print)
    report.totals["opus:32k"].wire_kbps
"""

from __future__ import annotations

from edge.classify import classify_file
from edge.codec_paths import canonical_codecs
from edge.errors import EdgeError, SourceError
from edge.stream_totals import PathTotals, StreamReport
from edge.streamer import EdgeStreamer, EventCallback, ResultCallback, stream_clips

__all__ = [
    "EdgeError",
    "EdgeStreamer",
    "EventCallback",
    "PathTotals",
    "ResultCallback",
    "SourceError",
    "StreamReport",
    "canonical_codecs",
    "classify_file",
    "stream_clips",
]
