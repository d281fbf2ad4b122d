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
import socket
import sys

from asc.cli_options import EnvOptions, add_client_credentials, non_negative, positive
from asc.codecs.errors import CodecError
from edge.cli_common import ENV_PREFIX, EXIT_INTERRUPTED, credentials_from, error
from edge.errors import EdgeError, SourceError
from edge.stream_command import cmd_stream


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
    add_client_credentials(opts, "this device's")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, EnvOptions]]:
    parser = argparse.ArgumentParser(
        prog="asc-edge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    options = {"stream": _add_stream_command(sub), "classify": _add_classify_command(sub)}
    for name, opts in options.items():
        sub.choices[name].epilog = opts.epilog()
    return parser, options


def _add_stream_command(sub: argparse._SubParsersAction) -> EnvOptions:
    """``stream``'s options, in the order --help lists them."""
    stream = sub.add_parser(
        "stream",
        help="stream clips through one or more codec paths (StreamScenes)",
        description="Cut files (or the microphone, or network sources) into clips, code each\n"
        "through every codec path, stream them and print the server's scene per clip\n"
        "(and publish it to MQTT and webhooks).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    opts = EnvOptions(stream, ENV_PREFIX)
    stream.add_argument(
        "inputs",
        nargs="*",
        metavar="FILE_OR_DIR",
        help="audio files, or folders searched for them; give none with --mic "
        f"(default: none) [{ENV_PREFIX}INPUTS, separated by {os.pathsep!r}]",
    )
    opts.names.append((ENV_PREFIX + "INPUTS", f"FILE_OR_DIR..., separated by {os.pathsep!r}"))
    _common_audio(opts)
    _stream_codec_options(opts)
    _local_input_options(opts)
    _report_options(opts)
    _delivery_options(opts)
    _reconnect_and_spool_options(opts)
    from edge.station import add_station_options

    add_station_options(opts)
    stream.set_defaults(run=cmd_stream, parser=stream)
    return opts


def _stream_codec_options(opts: EnvOptions) -> None:
    """--codec, and what ``--codec auto`` chooses by."""
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


def _local_input_options(opts: EnvOptions) -> None:
    """The microphone, and how files are replayed."""
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
        "--wait-grid-tests",
        env="WAIT_GRID_TESTS",
        action="store_true",
        help="with --detector: each clip's summary waits for the server's codec grid tests, "
        "so its codec family is theirs (for files sent faster than real time, where the tests "
        "queue behind the clips)",
        absent="off, a summary takes the tests' call only if it is there",
    )
    opts.add(
        "--loop",
        env="LOOP",
        action="store_true",
        help="repeat the files forever, e.g. for a soak test",
    )


def _report_options(opts: EnvOptions) -> None:
    """Ground-truth labels, and the JSON lines other programs read."""
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


def _delivery_options(opts: EnvOptions) -> None:
    """How clips travel: their length, the device's id, packet size, clips in flight."""
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


def _reconnect_and_spool_options(opts: EnvOptions) -> None:
    """What a lost connection or a restart costs: reconnect attempts, store and forward."""
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


def _add_classify_command(sub: argparse._SubParsersAction) -> EnvOptions:
    classify = sub.add_parser(
        "classify",
        help="send one whole file (ClassifyClip)",
        description="Code FILE whole through a codec path (or send it as it is with --codec\n"
        "probe) and print the server's windows and summary.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    opts = EnvOptions(classify, ENV_PREFIX)
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
    return opts


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
        credentials=credentials_from(args),
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
    try:
        return args.run(args, args.parser)
    except (EdgeError, SourceError, CodecError, OSError) as e:
        return error(str(e))
    except KeyboardInterrupt:
        print("asc-edge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
