"""``asc-edge``: stream audio files, a microphone or network sources through codec paths to
the scene server, and its results to the console, JSON lines, MQTT and webhooks.

    asc-edge stream --server HOST:PORT --codec opus:32k [--codec pcm16 ...] FILES_OR_DIRS...
    asc-edge stream --server HOST:PORT --codec opus:32k --mic [--device N]
    asc-edge stream --server HOST:PORT --codec opus:32k --source NAME=URL [--source ...]
        [--mqtt mqtt://BROKER] [--webhook URL]
    asc-edge classify FILE --server HOST:PORT --codec SPEC|probe

Every option can also come from an environment variable (listed in each command's --help), so
a container or a service unit can configure the edge without a command line; an option given
on the command line wins. Bad input (unknown codec, missing file, no microphone, a server
that refuses the stream) ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from asc.cli_options import EnvOptions, non_negative, positive
from asc.codecs.errors import CodecError
from asc.codecs.spec import split_spec_list

ENV_PREFIX = "ASC_EDGE_"
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


def input_device(text: str) -> int | str:
    """sounddevice takes a device index or a substring of its name."""
    return int(text) if text.strip().isdigit() else text


def _common_audio(opts: EnvOptions) -> None:
    opts.add(
        "--server",
        env="SERVER",
        metavar="HOST:PORT",
        help="scene server address",
        absent="none, required",
    )
    opts.add(
        "--rate",
        env="RATE",
        type=positive(int),
        default=44100,
        help="sample rate the audio is resampled to before coding, Hz; pick one the codec supports",
    )
    opts.add(
        "--channels",
        env="CHANNELS",
        type=int,
        choices=(1, 2),
        default=1,
        help="channels the audio is mixed to before coding; 2 for stereo-only codecs",
    )
    opts.add(
        "--window-seconds",
        env="WINDOW_SECONDS",
        type=non_negative,
        default=0.0,
        help="classification window; 0 leaves it to the server (10 s)",
    )
    opts.add(
        "--hop-seconds",
        env="HOP_SECONDS",
        type=non_negative,
        default=0.0,
        help="hop between windows; shorter hops give more results per clip, 0 equals the window",
    )
    opts.add(
        "--detector",
        env="DETECTOR",
        action="store_true",
        help="also run the lossy detector on the audio the server receives",
    )
    _credential_options(opts)


def _credential_options(opts: EnvOptions) -> None:
    opts.add(
        "--tls-ca",
        env="TLS_CA",
        metavar="PEM",
        help="connect with TLS, trusting this CA; needed when the server has --tls-cert",
        absent="none, plaintext",
    )
    opts.add(
        "--tls-cert",
        env="TLS_CERT",
        metavar="PEM",
        help="this device's certificate, for a server with --tls-client-ca (mutual TLS)",
        absent="none",
    )
    opts.add("--tls-key", env="TLS_KEY", metavar="PEM", help="its private key", absent="none")
    opts.add(
        "--token-file",
        env="TOKEN_FILE",
        metavar="FILE",
        help="file holding this device's bearer token, for a server with --tokens (needs TLS)",
        absent="none, no token sent",
    )


def _channel_credentials(args: argparse.Namespace):
    from edge.security import channel_credentials

    return channel_credentials(args.tls_ca, args.tls_cert, args.tls_key, args.token_file)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, EnvOptions]]:
    parser = argparse.ArgumentParser(
        prog="asc-edge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    options: dict[str, EnvOptions] = {}

    stream = sub.add_parser(
        "stream",
        help="stream clips through one or more codec paths (StreamScenes)",
        description="Cut files (or the microphone, or network sources) into clips, code each\n"
        "through every codec path, stream them and print the server's scene per clip\n"
        "(and publish it to MQTT and webhooks).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    opts = options["stream"] = EnvOptions(stream, ENV_PREFIX)
    stream.add_argument(
        "inputs",
        nargs="*",
        metavar="FILE_OR_DIR",
        help="audio files, or folders searched for them; give none with --mic "
        f"(default: none) [{ENV_PREFIX}INPUTS, separated by {os.pathsep!r}]",
    )
    opts.names.append((ENV_PREFIX + "INPUTS", f"FILE_OR_DIR..., separated by {os.pathsep!r}"))
    _common_audio(opts)
    opts.add(
        "--codec",
        env="CODEC",
        action="append",
        metavar="SPEC",
        help="codec path, e.g. opus:32k or sbc:bitpool=53>aac:64k; repeat it or give a comma "
        "list to compare several paths at once; 'auto' picks one from a measured results table",
        absent="none, required",
    )
    opts.add(
        "--min-relative-accuracy",
        env="MIN_RELATIVE_ACCURACY",
        type=float,
        default=0.95,
        help="with --codec auto: the share of the uncoded accuracy a path must keep; lower it "
        "to allow cheaper paths",
    )
    opts.add(
        "--max-kbps",
        env="MAX_KBPS",
        type=float,
        help="with --codec auto: the most a path may use on the wire, e.g. the uplink's capacity",
        absent="none, no limit",
    )
    opts.add(
        "--table",
        env="TABLE",
        metavar="RESULTS_JSON",
        help="with --codec auto: an asc-train evaluate results.json measured for the model the "
        "server runs",
        absent="the one shipped for the default model, models/evaluation/results.json",
    )
    opts.add(
        "--mic",
        env="MIC",
        action="store_true",
        help="record from the microphone instead of files",
    )
    opts.add(
        "--device",
        env="DEVICE",
        type=input_device,
        help="microphone: input device index or (part of its) name",
        absent="none, the system's default input",
    )
    opts.add(
        "--realtime",
        env="REALTIME",
        action="store_true",
        help="send files at audio speed, as a live source would",
        absent="off, as fast as coding allows",
    )
    opts.add(
        "--loop",
        env="LOOP",
        action="store_true",
        help="repeat the files forever, e.g. for a soak test",
    )
    opts.add(
        "--label",
        env="LABEL",
        help="ground-truth label for every clip, to see right and wrong scenes",
        absent="none, unlabelled",
    )
    opts.add(
        "--labels-from",
        env="LABELS_FROM",
        metavar="CSV",
        help="labels per file: TAU meta.csv (tab) or a CSV with filename and label/category",
        absent="none, unlabelled",
    )
    opts.add(
        "--jsonl",
        env="JSONL",
        metavar="OUT",
        help="write every result as JSON lines, for other programs (-: stdout)",
        absent="none, the console report only",
    )
    opts.add(
        "--clip-seconds",
        env="CLIP_SECONDS",
        type=positive(float),
        default=10.0,
        help="clip length: the audio coded, sent and summarised as one",
    )
    opts.add(
        "--device-id",
        env="DEVICE_ID",
        default=socket.gethostname(),
        help="this device's id, as the server's tokens, metrics and logs know it; the host "
        "name unless set",
    )
    opts.add(
        "--packet-ms",
        env="PACKET_MS",
        type=positive(float),
        default=500.0,
        help="audio per packet, ms (fewer, larger messages cost less on the wire)",
    )
    opts.add(
        "--max-in-flight",
        env="MAX_IN_FLIGHT",
        type=positive(int),
        default=4,
        help="clips sent ahead of their summaries, per codec path; more hides network "
        "latency, fewer holds less in memory",
    )
    opts.add(
        "--max-retries",
        env="MAX_RETRIES",
        type=int,
        default=10,
        help="reconnect attempts in a row before giving up",
    )
    opts.add(
        "--retry-forever",
        env="RETRY_FOREVER",
        action="store_true",
        help="never give up reconnecting, e.g. for an unattended device",
        absent="off, --max-retries applies",
    )
    opts.add(
        "--spool",
        env="SPOOL",
        metavar="DIR",
        help="store and forward: keep every clip in DIR until each path has its summary, and "
        "after a crash or restart send those first (one DIR per edge)",
        absent="none, off",
    )
    opts.add(
        "--spool-max-mb",
        env="SPOOL_MAX_MB",
        type=positive(float),
        default=512.0,
        help="size bound of the spool; when full, the oldest clips are evicted (and counted)",
    )
    from edge.station import add_station_options

    add_station_options(opts)
    stream.set_defaults(run=cmd_stream, parser=stream)

    classify = sub.add_parser(
        "classify",
        help="send one whole file (ClassifyClip)",
        description="Code FILE whole through a codec path (or send it as it is with --codec\n"
        "probe) and print the server's windows and summary.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    opts = options["classify"] = EnvOptions(classify, ENV_PREFIX)
    classify.add_argument("file", metavar="FILE", help="audio file to classify")
    _common_audio(opts)
    opts.add(
        "--codec",
        env="CODEC",
        metavar="SPEC",
        help="codec path to code the file through, or 'probe' to send the file untouched",
        absent="none, required",
    )
    opts.add(
        "--jsonl",
        env="JSONL",
        metavar="OUT",
        nargs="?",
        const="-",
        help="write the results as JSON lines (no OUT: stdout)",
        absent="none, the console report only",
    )
    opts.add(
        "--timeout",
        env="TIMEOUT",
        type=positive(float),
        default=120.0,
        help="seconds to wait for the server's answer; raise it for long files",
    )
    classify.set_defaults(run=cmd_classify, parser=classify)

    for name, opts in options.items():
        sub.choices[name].epilog = opts.epilog()
    return parser, options


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def error(message: str) -> int:
    print(f"asc-edge: error: {message}", file=sys.stderr, flush=True)
    return EXIT_ERROR


def _open_spool(args: argparse.Namespace, source: str = ""):
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


def cmd_stream(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from edge.codec_paths import canonical_codecs
    from edge.errors import EdgeError, SourceError
    from edge.live_sources import MicSource
    from edge.multi_stream import StreamGroup
    from edge.network_sources import NetworkSource
    from edge.output import ConsoleReport, JsonlWriter, result_record
    from edge.sources import Labels, file_clips, find_audio_files, looped
    from edge.station import open_outputs, source_specs
    from edge.streamer import EdgeStreamer

    codecs = [
        s
        for item in args.codec or [os.environ.get(ENV_PREFIX + "CODEC", "")]
        for s in split_spec_list(item)
    ]
    if not codecs:
        parser.error(f"give a codec path with --codec (or {ENV_PREFIX}CODEC), e.g. opus:32k")
    if not args.server:
        parser.error(f"give the server with --server HOST:PORT (or {ENV_PREFIX}SERVER)")
    inputs = args.inputs or [
        p for p in os.environ.get(ENV_PREFIX + "INPUTS", "").split(os.pathsep) if p
    ]
    specs = source_specs(args)
    _check_stream_inputs(args, parser, inputs, specs)
    args.source_names = [spec.name for spec in specs]

    if "auto" in codecs:  # a measured table picks the path; say which and why
        from edge.codec_choice import DEFAULT_TABLE, CodecChoiceError, choose_codec

        try:
            choice = choose_codec(
                args.table or DEFAULT_TABLE,
                args.min_relative_accuracy,
                args.max_kbps,
                args.rate,
                args.channels,
            )
        except CodecChoiceError as e:
            return error(f"--codec auto: {e}")
        print(f"codec auto: {choice.reason}", file=sys.stderr)
        codecs = [choice.spec if c == "auto" else c for c in codecs]
    codecs = canonical_codecs(codecs, args.rate, args.channels)  # checked before connecting
    credentials = _channel_credentials(args)  # files checked before any connection

    jsonl = JsonlWriter(args.jsonl, durable=bool(args.spool)) if args.jsonl else None
    console = ConsoleReport(sys.stderr if jsonl is not None and jsonl.to_stdout else sys.stdout)
    lock = threading.RLock()  # sources, paths, MQTT and webhooks report from their threads

    def event(who: str, message: str) -> None:
        with lock:
            console.event(who, message)

    names = args.source_names or ["mic" if args.mic else "files"]
    spools: dict[str, Any] = {}
    outputs = None
    inputs_by_name: dict[str, Any] = {}
    try:
        for name in args.source_names:  # one spool each, locked before any connection
            spools[name] = _open_spool(args, name)
        if not args.source_names:
            spools[names[0]] = _open_spool(args)
        outputs = open_outputs(args, names, codecs[0], event)

        def status(name: str, online: bool, message: str) -> None:
            event(f"source {name}", message)
            outputs.source_status(name, online)

        for spec in specs:
            inputs_by_name[spec.name] = NetworkSource(
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
        if args.mic:
            inputs_by_name["mic"] = MicSource(
                args.rate,
                args.channels,
                args.clip_seconds,
                device=args.device,
                label=args.label or "",
            )
        elif not specs:
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

            inputs_by_name["files"] = looped(one_round) if args.loop else one_round()
        for source in inputs_by_name.values():
            if hasattr(source, "start"):
                source.start()
        if not specs:
            outputs.source_status(names[0], True)
    except BaseException:
        _close_inputs(inputs_by_name)
        if outputs is not None:
            outputs.close()
        for spool in spools.values():
            if spool is not None:
                spool.close()
        if jsonl is not None:
            jsonl.close()
        raise

    def reporter(source: str) -> Callable[[str, Any, str], None]:
        shown = source if specs else ""  # files and --mic keep their console lines

        def on_result(path: str, result, label: str) -> None:
            record = result_record(path, result, label, source=source, device_id=args.device_id)
            with lock:
                console.result(path, result, label, source=shown)
                if jsonl is not None:
                    jsonl.write(record)
                outputs.result(record)

        return on_result

    def path_event(source: str) -> Callable[[str, str], None]:
        def on_event(path: str, message: str) -> None:
            who = path if not specs else (source if path == "*" else f"{source} {path}")
            event(who, message)

        return on_event

    group = StreamGroup(
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
                packet_ms=args.packet_ms,
                max_in_flight=args.max_in_flight,
                max_retries=None if args.retry_forever else max(0, args.max_retries),
                on_result=reporter(name),
                on_event=path_event(name),
                credentials=credentials,
                spool=spools[name],
            )
            for name, clips in inputs_by_name.items()
        },
        on_event=lambda message: event("*", message),
    )
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
        _close_inputs(inputs_by_name)
        for name, totals in group.totals.items():
            shown = name if specs else ""
            if code == 0 or any(t.audio_seconds for t in totals.values()):
                console.totals(totals, source=shown)
                if jsonl is not None:
                    jsonl.totals(totals, source=shown)
            spool = spools.get(name)
            if spool is not None:
                stats = spool.stats()
                console.spool(stats)
                if jsonl is not None:
                    jsonl.spool(stats, source=shown)
                spool.close()
        outputs.close()
        if jsonl is not None:
            jsonl.close()
    if failure is not None:  # last, after the totals of what did get through
        error(failure)
    return code


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


def cmd_classify(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from edge.classify import classify_file
    from edge.output import ConsoleReport, JsonlWriter

    if not args.codec:
        parser.error(f"give --codec SPEC or --codec probe (or {ENV_PREFIX}CODEC)")
    if not args.server:
        parser.error(f"give the server with --server HOST:PORT (or {ENV_PREFIX}SERVER)")
    result = classify_file(
        args.server,
        args.file,
        args.codec,
        rate=args.rate,
        channels=args.channels,
        detector=args.detector,
        window_seconds=args.window_seconds,
        hop_seconds=args.hop_seconds,
        timeout=args.timeout,
        credentials=_channel_credentials(args),
    )
    jsonl = JsonlWriter(args.jsonl) if args.jsonl else None
    ConsoleReport(sys.stderr if jsonl is not None and jsonl.to_stdout else sys.stdout).clip_result(
        args.codec, result
    )
    if jsonl is not None:
        jsonl.clip_result(result.summary.codec_path or args.codec, result)
        jsonl.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser, options = build_parser()
    args = parser.parse_args(argv)
    problems = options[args.command].problems
    if problems:
        args.parser.error("; ".join(problems))
    from edge.errors import EdgeError, SourceError

    try:
        return args.run(args, args.parser)
    except (EdgeError, SourceError, CodecError, OSError) as e:
        return error(str(e))
    except KeyboardInterrupt:
        print("asc-edge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
