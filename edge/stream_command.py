"""``asc-edge stream``: from the parsed options to streams running, and back to the totals.

:func:`cmd_stream`'s steps, in order: the codec paths and inputs the options name (checked to
fit together before anything opens), ``--codec auto`` settled from its table, the codec paths
checked and the credential files read; then a :class:`StreamRun` opens the outputs (console,
JSONL, MQTT, webhooks), one spool and one source per stream, runs one streamer per source as
one group, and closes all of it with the totals whatever ended the run.

The heavy imports (gRPC, codec engines, numpy) happen inside the steps, so that ``asc-edge
--help`` and a usage error stay quick on a small device.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asc.codecs.errors import CodecError
from asc.codecs.spec import split_spec_list
from edge.cli_common import ENV_PREFIX, EXIT_ERROR, EXIT_INTERRUPTED, credentials_from, error

if TYPE_CHECKING:
    import grpc

    from edge.multi_stream import StreamGroup
    from edge.network_sources import SourceSpec
    from edge.spool import Spool
    from edge.station import Outputs


def cmd_stream(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from edge.codec_paths import canonical_codecs
    from edge.station import source_specs

    codecs = _asked_codecs(args, parser)
    inputs = args.inputs or [
        p for p in os.environ.get(ENV_PREFIX + "INPUTS", "").split(os.pathsep) if p
    ]
    specs = source_specs(args)
    _check_stream_inputs(args, parser, inputs, specs)
    args.source_names = [spec.name for spec in specs]

    if "auto" in codecs:  # a measured table picks the path; say which and why
        from edge.codec_choice import CodecChoiceError

        try:
            codecs = _choose_auto_codec(args, codecs)
        except CodecChoiceError as e:
            return error(f"--codec auto: {e}")
    codecs = canonical_codecs(codecs, args.rate, args.channels)  # checked before connecting
    credentials = credentials_from(args)  # files checked before any connection

    run = StreamRun(args, specs)
    run.open(inputs, codecs[0])
    code, failure = run.run(run.stream_group(codecs, credentials))
    if failure is not None:  # last, after the totals of what did get through
        error(failure)
    return code


def _asked_codecs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The --codec paths (each may be a comma list), and a usage error without a server."""
    codecs = [
        s
        for item in args.codec or [os.environ.get(ENV_PREFIX + "CODEC", "")]
        for s in split_spec_list(item)
    ]
    if not codecs:
        parser.error(f"give a codec path with --codec (or {ENV_PREFIX}CODEC), e.g. opus:32k")
    if not args.server:
        parser.error(f"give the server with --server HOST:PORT (or {ENV_PREFIX}SERVER)")
    return codecs


def _check_stream_inputs(
    args: argparse.Namespace, parser: argparse.ArgumentParser, inputs: list[str], sources: list
) -> None:
    if args.mic and inputs:
        parser.error("give audio files or --mic, not both")
    if sources and (args.mic or inputs):
        parser.error("give --source NAME=URL or local audio (files, --mic), not both")
    if not (args.mic or inputs or sources):
        parser.error("no input: give audio files or folders, --mic, or --source NAME=URL")
    if args.label and args.labels_from:
        parser.error("give --label or --labels-from, not both")
    if (args.mic or sources) and args.labels_from:
        parser.error("--labels-from labels files by name; with --mic or --source give --label")
    if args.loop and (args.mic or sources):
        parser.error("--loop repeats files; live sources run until Ctrl-C anyway")
    if args.wait_grid_tests and not args.detector:
        parser.error("--wait-grid-tests waits for the detector's grid tests: give --detector too")


def _choose_auto_codec(args: argparse.Namespace, codecs: list[str]) -> list[str]:
    """``auto`` replaced by the path the measured table picks; the reason goes to stderr."""
    from edge.codec_choice import DEFAULT_TABLE, choose_codec

    choice = choose_codec(
        args.table or DEFAULT_TABLE,
        args.min_relative_accuracy,
        args.max_kbps,
        args.rate,
        args.channels,
    )
    print(f"codec auto: {choice.reason}", file=sys.stderr)
    return [choice.spec if c == "auto" else c for c in codecs]


def _open_spool(args: argparse.Namespace, source: str = "") -> Spool | None:
    """The spool (``--spool``); with network sources each has its own ``DIR/<source>``,
    sharing the size bound evenly."""
    if not args.spool:
        return None
    from edge.spool import Spool

    max_bytes = int(args.spool_max_mb * 2**20)
    if source:
        count = max(1, len(args.source_names))
        return Spool(os.path.join(args.spool, source), max_bytes=max_bytes // count).open()
    return Spool(args.spool, max_bytes=max_bytes).open()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _close_inputs(inputs: dict[str, Any]) -> None:
    """Stop live sources (microphone, network); a network reader gets a moment to let go of
    its connection."""
    for source in inputs.values():
        stop = getattr(source, "stop", None)
        if callable(stop):
            stop()
    for source in inputs.values():
        join = getattr(source, "join", None)
        if callable(join):
            join(timeout=2.0)


class StreamRun:
    """One run's reports, spools and sources: opened together, closed together.

    Sources, codec paths, MQTT and webhooks report from their own threads; one lock keeps
    their console lines, JSON lines and messages whole. Files and ``--mic`` make one stream
    (named ``files`` or ``mic``, shown without a name); each network source makes its own.
    """

    def __init__(self, args: argparse.Namespace, specs: list[SourceSpec]) -> None:
        from edge.output import ConsoleReport, JsonlWriter

        self.args, self.specs = args, specs
        self.jsonl = JsonlWriter(args.jsonl, durable=bool(args.spool)) if args.jsonl else None
        to_stdout = self.jsonl is not None and self.jsonl.to_stdout
        self.console = ConsoleReport(sys.stderr if to_stdout else sys.stdout)
        self.lock = threading.RLock()  # sources, paths, MQTT and webhooks report from threads
        self.names = args.source_names or ["mic" if args.mic else "files"]
        self.spools: dict[str, Spool | None] = {}
        self.outputs: Outputs | None = None
        self.inputs: dict[str, Any] = {}  # stream name -> its clips (a source, or an iterator)

    def event(self, who: str, message: str) -> None:
        with self.lock:
            self.console.event(who, message)

    # --- opening ------------------------------------------------------------------------------

    def open(self, inputs: list[str], primary_path: str) -> None:
        """Spools (locked before any connection), outputs, then the sources, started; on any
        failure, whatever was opened is closed again."""
        from edge.station import open_outputs

        try:
            for name in self.args.source_names:  # one spool each, locked before any connection
                self.spools[name] = _open_spool(self.args, name)
            if not self.args.source_names:
                self.spools[self.names[0]] = _open_spool(self.args)
            self.outputs = open_outputs(self.args, self.names, primary_path, self.event)
            self._open_network_sources()
            self._open_local_input(inputs)
            for source in self.inputs.values():
                if hasattr(source, "start"):
                    source.start()
            if not self.specs:
                self.outputs.source_status(self.names[0], True)
        except BaseException:
            _close_inputs(self.inputs)
            if self.outputs is not None:
                self.outputs.close()
            for spool in self.spools.values():
                if spool is not None:
                    spool.close()
            if self.jsonl is not None:
                self.jsonl.close()
            raise

    def _open_network_sources(self) -> None:
        from edge.network_sources import NetworkSource

        args, outputs = self.args, self.outputs

        def status(name: str, online: bool, message: str) -> None:
            self.event(f"source {name}", message)
            outputs.source_status(name, online)

        for spec in self.specs:
            self.inputs[spec.name] = NetworkSource(
                spec,
                args.rate,
                args.channels,
                args.clip_seconds,
                label=args.label or "",
                timeout=args.source_timeout,
                rtsp_transport=args.rtsp_transport,
                ca_file=args.source_ca,
                on_status=status,
            )

    def _open_local_input(self, inputs: list[str]) -> None:
        """The microphone, or the files (looped with --loop); nothing with network sources."""
        from edge.live_sources import MicSource
        from edge.sources import Labels, file_clips, find_audio_files, looped

        args = self.args
        if args.mic:
            self.inputs["mic"] = MicSource(
                args.rate,
                args.channels,
                args.clip_seconds,
                device=args.device,
                label=args.label or "",
            )
        elif not self.specs:
            labels = (
                Labels.from_file(args.labels_from)
                if args.labels_from
                else Labels(default=args.label or "")
            )
            files = find_audio_files(inputs)

            def one_round():
                return file_clips(
                    files,
                    rate=args.rate,
                    channels=args.channels,
                    clip_seconds=args.clip_seconds,
                    labels=labels,
                )

            self.inputs["files"] = looped(one_round) if args.loop else one_round()

    # --- streaming ----------------------------------------------------------------------------

    def reporter(self, source: str) -> Callable[[str, Any, str], None]:
        """A streamer's on_result: the console, JSON lines, then MQTT and webhooks."""
        from edge.output import result_record

        args, jsonl = self.args, self.jsonl
        shown = source if self.specs else ""  # files and --mic keep their console lines

        def on_result(path: str, result, label: str) -> None:
            record = result_record(path, result, label, source=source, device_id=args.device_id)
            with self.lock:
                self.console.result(path, result, label, source=shown)
                if jsonl is not None:
                    jsonl.write(record)
                self.outputs.result(record)

        return on_result

    def path_event(self, source: str) -> Callable[[str, str], None]:
        """A streamer's on_event: who says it is the codec path, and the source when several."""

        def on_event(path: str, message: str) -> None:
            who = path if not self.specs else (source if path == "*" else f"{source} {path}")
            self.event(who, message)

        return on_event

    def stream_group(
        self, codecs: list[str], credentials: grpc.ChannelCredentials | None
    ) -> StreamGroup:
        """One EdgeStreamer per stream, each with its own spool, run as one group."""
        from edge.multi_stream import StreamGroup
        from edge.streamer import EdgeStreamer

        args = self.args
        return StreamGroup(
            {
                name: EdgeStreamer(
                    args.server,
                    codecs,
                    clips,
                    rate=args.rate,
                    channels=args.channels,
                    device_id=args.device_id,
                    window_seconds=args.window_seconds,
                    hop_seconds=args.hop_seconds,
                    detector=args.detector,
                    realtime=args.realtime,
                    wait_for_grid_tests=args.wait_grid_tests,
                    packet_ms=args.packet_ms,
                    max_in_flight=args.max_in_flight,
                    max_retries=None if args.retry_forever else max(0, args.max_retries),
                    on_result=self.reporter(name),
                    on_event=self.path_event(name),
                    credentials=credentials,
                    spool=self.spools[name],
                )
                for name, clips in self.inputs.items()
            },
            on_event=lambda message: self.event("*", message),
        )

    def run(self, group: StreamGroup) -> tuple[int, str | None]:
        """Run the group to its end; the exit code, and the error to print after the totals."""
        from edge.errors import EdgeError, SourceError

        code, failure = 0, None
        # SIGTERM (docker stop, systemd) drains like Ctrl-C: in-flight clips get their summaries.
        previous = (
            signal.signal(signal.SIGTERM, _interrupt)
            if threading.current_thread() is threading.main_thread()
            else None
        )
        try:
            interrupted = group.run()
            code = EXIT_INTERRUPTED if interrupted else 0
        except (EdgeError, SourceError, CodecError) as e:
            code, failure = EXIT_ERROR, str(e)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.close(group, code)
        return code, failure

    # --- closing ------------------------------------------------------------------------------

    def close(self, group: StreamGroup, code: int) -> None:
        """Sources stopped, then per stream its totals (unless it failed before sending any
        audio) and its spool's figures, then the outputs and JSON lines closed."""
        _close_inputs(self.inputs)
        jsonl = self.jsonl
        for name, totals in group.totals.items():
            shown = name if self.specs else ""
            if code == 0 or any(t.audio_seconds for t in totals.values()):
                self.console.totals(totals, source=shown)
                if jsonl is not None:
                    jsonl.totals(totals, source=shown)
            spool = self.spools.get(name)
            if spool is not None:
                stats = spool.stats()
                self.console.spool(stats)
                if jsonl is not None:
                    jsonl.spool(stats, source=shown)
                spool.close()
        self.outputs.close()
        if jsonl is not None:
            jsonl.close()
