"""``asc-codec``: list the codecs this machine can run, and code a file through any path."""

from __future__ import annotations

import argparse
import sys

from asc.cli_options import EnvOptions
from asc.codecs.errors import CodecError
from asc.codecs.registry import CODECS, unavailable_reason
from asc.codecs.spec import format_quantity


def _range(lo: int, hi: int) -> str:
    return f"{format_quantity(lo)}..{format_quantity(hi)}"


def cmd_list(_: argparse.Namespace) -> int:
    header = f"{'codec':10} {'family':8} {'state':11} {'kbps/channel':13} {'rates (Hz)':26} notes"
    print(header)
    print("-" * len(header))
    for info in CODECS.values():
        why = unavailable_reason(info.name)
        state = "available" if why is None else "UNAVAILABLE"
        bitrate = (
            _range(*info.bitrate) if info.bitrate else ("lossless" if info.lossless else "fixed")
        )
        rates = (
            "any 8k..192k"
            if info.rates is None
            else ",".join(format_quantity(r) for r in info.rates)
        )
        if len(rates) > 26:
            rates = f"{format_quantity(info.rates[0])}..{format_quantity(info.rates[-1])} (list)"
        notes = [info.summary]
        if info.cutoff != "none":
            notes.append("cutoff=")
        notes += [f"{p}=" for p in info.params]
        if info.channels == (2,):
            notes.append("stereo only")
        print(
            f"{info.name:10} {info.family:8} {state:11} {bitrate:13} {rates:26} {'; '.join(notes)}"
        )
        if why:
            print(f"{'':10} reason: {why}")
    return 0


def cmd_roundtrip(args: argparse.Namespace) -> int:
    from asc.audio import load, save
    from asc.codecs.measure import measure_roundtrip

    x, rate = load(args.input, rate=args.rate, channels=args.channels)
    report = measure_roundtrip(x, rate, args.spec)
    save(args.output, report.decoded, rate)
    delays = ", ".join(f"{d} samples ({1000 * d / rate:.1f} ms)" for d in report.delay_samples)
    print(f"path            {report.spec}")
    print(
        f"input           {args.input}: {len(x) / rate:.2f} s, {rate} Hz, {x.shape[1]} channel(s)"
    )
    print(f"achieved        {report.kbps:.1f} kbps ({report.payload_bytes} payload bytes)")
    print(f"codec delay     {delays} (removed: output is aligned with the input)")
    print(f"SNR             {report.snr_db:.1f} dB")
    print(
        f"bandwidth       {report.bandwidth_hz / 1000:.1f} kHz "
        f"(input {report.input_bandwidth_hz / 1000:.1f} kHz; within 60 dB of the peak)"
    )
    print(f"wrote           {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Every flag's help ends with its default: ``(default: ...)``, or ``(required)``."""
    parser = argparse.ArgumentParser(prog="asc-codec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every codec, available or not and why").set_defaults(run=cmd_list)
    rt = sub.add_parser("roundtrip", help="code a file through a codec path and measure it")
    rt.add_argument("input", help="audio file (wav, flac, ogg, opus, mp3, m4a, aac)")
    rt.add_argument(
        "spec",
        help="codec path, e.g. opus:32k or sbc:bitpool=53>aac:64k (asc-codec list names the "
        "codecs and their settings)",
    )
    rt.add_argument(
        "-o",
        "--output",
        required=True,
        help="decoded WAV to write, aligned with the input (required)",
    )
    opts = EnvOptions(rt)  # asc-codec reads no variables; its help follows the one convention
    opts.add(
        "--rate",
        type=int,
        help="resample the input to this rate (Hz) first, e.g. one the codec supports",
        absent="none, the file's own rate",
    )
    opts.add(
        "--channels",
        type=int,
        choices=(1, 2),
        help="mix the input to mono (1) or stereo (2) first, e.g. for a stereo-only codec",
        absent="none, the file's own layout",
    )
    rt.set_defaults(run=cmd_roundtrip)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CodecError as e:  # bad spec, rate, file or payload: one line, exit 2
        print(f"asc-codec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
