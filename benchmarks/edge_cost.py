"""Edge cost: encode speed per codec on one core, and the edge process's peak memory streaming.

Run: .venv/bin/python -m benchmarks.edge_cost [--seconds 10] [--repeats 3] [--quick]

1. Encode speed: each codec path's StreamEncoder on a generated full-band clip, pinned to one
   core, as a multiple of real time (``benchmarks.codec_speed.measure``, encode only). Goal: at
   least 50x for every path.
2. Memory: a real ``asc-server serve`` on loopback (a subprocess, shipped ensemble, CPU) and the
   real ``asc-edge stream`` as a separate process streaming samples/ through one codec path,
   then through several at once; its peak RSS is the kernel's high-water mark for that process
   alone (``wait4``'s ru_maxrss), beside the interpreter alone and the edge's imports alone.
   The edge runs with ``PYTHONPROFILEIMPORTTIME`` so every module it imported is listed, and
   its memory maps are sampled while it runs: torch must appear in neither. Goal: under 150 MB.
3. Listening station: ``asc-edge stream`` with 1, 2 and 4 network sources at once (RTSP
   cameras from GStreamer's RTSP server on loopback, AAC audio plus a video track the edge
   does not ask for), ``--detector`` and ``--mqtt`` on (a real mosquitto), for
   ``--station-seconds`` of real time, then SIGTERM; its peak RSS and CPU time (user + system,
   ``wait4``) per source, and the MQTT results a subscriber received. CPU is the whole process
   life (start-up included) over its wall time; % of one core. Goal: under 150 MB with 4
   sources. ``--quick`` leaves this part out unless ``--only station`` asks for it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asc.codecs.registry import REFERENCE_SPECS
from asc.codecs.spec import split_spec_list
from benchmarks.codec_speed import measure, one_core

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
ENCODE_GOAL = 50.0  # x real time
MEMORY_GOAL_MB = 150.0
PATH_SETS = (
    "opus:32k",
    "pcm16,opus:32k,mp3:64k,aac:32k,he-aac:16k,sbc:bitpool=53>aac:64k",
)
QUICK_PATH_SETS = ("opus:32k,mp3:64k",)
STATION_SOURCES = (1, 2, 4)
QUICK_STATION_SOURCES = (1, 2)
TORCH_MODULES = ("torch", "torchaudio")


def edge_command() -> list[str]:
    """The installed ``asc-edge`` console script, or the same entry point through -m."""
    script = Path(sys.executable).with_name("asc-edge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "edge.cli"]


@dataclass
class ProcessCost:
    peak_rss_mb: float  # ru_maxrss of this process alone
    imported: set[str]  # top-level package names of every module it imported
    torch_mapped: bool  # a torch library showed up in its memory maps while it ran
    wall_seconds: float
    cpu_seconds: float  # user + system time of the process alone
    returncode: int
    stderr: str  # what it wrote besides the import-time lines


def _torch_mapped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return any("torch" in line for line in f)
    except OSError:  # it has exited (or this is not Linux)
        return False


# A child's ru_maxrss starts at its parent's high-water mark (Linux carries it across fork and
# exec), so the measured command is started by this small launcher instead of by the benchmark:
# the launcher's own mark is a bare interpreter's. It prints the command's pid, then its peak
# RSS (KiB) and exit code. The command runs with PYTHONPROFILEIMPORTTIME: a line per import.
LAUNCHER = """
import os, subprocess, sys
env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "PYTHONUNBUFFERED": "1"}
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, env=env)
print(proc.pid, flush=True)
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
print(usage.ru_maxrss, proc.returncode, usage.ru_utime + usage.ru_stime, flush=True)
"""


def run_measured(cmd: list[str], timeout: float, stop_after: float | None = None) -> ProcessCost:
    """Run ``cmd`` in its own process: its peak RSS (wait4), what it imported, what it mapped.

    ``stop_after``: send it SIGTERM after that many seconds (a live source runs until told)."""
    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        launcher = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *cmd],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        pid = int(launcher.stdout.readline())
        torch_mapped = False
        deadline = time.monotonic() + timeout
        stop_at = None if stop_after is None else time.monotonic() + stop_after
        while launcher.poll() is None:
            if stop_at is not None and time.monotonic() > stop_at:
                os.kill(pid, signal.SIGTERM)
                stop_at = None
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            torch_mapped = torch_mapped or _torch_mapped(pid)
            time.sleep(0.05)
        peak, code, cpu = launcher.stdout.read().split()
        peak_kib, returncode, cpu_seconds = int(peak), int(code), float(cpu)
        launcher.wait()
        wall = time.perf_counter() - started
        err.seek(0)
        lines = err.read().splitlines()
    imported, other = set(), []
    for line in lines:
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip()
            if name and name != "imported package":
                imported.add(name.split(".")[0])
        else:
            other.append(line)
    return ProcessCost(
        peak_rss_mb=peak_kib * 1024 / 1e6,  # Linux reports KiB
        imported=imported,
        torch_mapped=torch_mapped,
        wall_seconds=wall,
        cpu_seconds=cpu_seconds,
        returncode=returncode,
        stderr="\n".join(other),
    )


def edge_stream(target: str, codecs: str, files: list[Path], timeout: float) -> tuple:
    """``asc-edge stream`` of ``files`` through ``codecs``; (cost, totals per path)."""
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "results.jsonl"
        cmd = [
            *edge_command(),
            "stream",
            "--server", target,
            "--codec", codecs,
            "--jsonl", str(jsonl),
            "--device-id", "bench-edge",
            *map(str, files),
        ]  # fmt: skip
        cost = run_measured(cmd, timeout)
        if cost.returncode != 0:
            raise RuntimeError(f"asc-edge exited {cost.returncode}: {cost.stderr[-2000:]}")
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line]
    totals = {r["path"]: r for r in records if r.get("type") == "totals"}
    return cost, totals


def station_stream(
    target: str, broker: Any, cameras: list[Any], seconds: float, timeout: float
) -> tuple[ProcessCost, dict[str, Any], int]:
    """``asc-edge stream`` of every camera at once with --mqtt; (cost, totals by source, MQTT
    results a subscriber received)."""
    from tests.network_services import Subscriber

    subscriber = Subscriber(broker.port, "asc/+/+/result")
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "results.jsonl"
        sources = [a for i, c in enumerate(cameras) for a in ("--source", f"mic{i}={c.url}")]
        cmd = [
            *edge_command(), "stream", "--server", target, "--codec", "opus:32k",
            *sources, "--detector", "--mqtt", broker.url, "--jsonl", str(jsonl),
            "--device-id", "bench-station",
        ]  # fmt: skip
        cost = run_measured(cmd, timeout, stop_after=seconds)
        if cost.returncode not in (0, 130):
            raise RuntimeError(f"asc-edge exited {cost.returncode}: {cost.stderr[-2000:]}")
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line]
    time.sleep(1)  # the last results reached the broker before the edge exited
    subscriber.close()
    totals = {r["source"]: r for r in records if r.get("type") == "totals"}
    return cost, totals, len(subscriber.messages)


def station_section(target: str, counts: list[int], seconds: float, timeout: float) -> float:
    """Peak memory and CPU of the edge as a listening station; returns the worst peak RSS."""
    from tests.network_services import Camera, start_broker

    print(
        f"## Listening station: network sources with MQTT on, {seconds:g} s of real time each "
        f"(opus:32k, --detector, 10 s clips; goal < {MEMORY_GOAL_MB:g} MB)"
    )
    print()
    print(
        "| sources | clips summarised | MQTT results received | peak RSS (MB) "
        "| CPU % of one core | CPU % per source | ratio to the 150 MB goal |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "station.wav"
        from asc.audio import load, save

        clips = [load(f, 48000, 1)[0] for f in sorted(SAMPLES.glob("*.flac"))]
        audio = np.concatenate(clips)
        repeats = int(np.ceil((seconds + 30) * 48000 / len(audio)))
        save(wav, np.concatenate([audio] * repeats), 48000)
        broker = start_broker(Path(tmp) / "mosquitto")
        try:
            for count in counts:
                cameras = [Camera(wav).start() for _ in range(count)]
                try:
                    cost, totals, received = station_stream(
                        target, broker, cameras, seconds, timeout
                    )
                finally:
                    for camera in cameras:
                        camera.stop()
                summarised = sum(t["clips"] for t in totals.values())
                if len(totals) != count or not summarised:
                    raise RuntimeError(f"{count} sources: totals {totals}")
                if received != summarised:
                    raise RuntimeError(f"{summarised} clips summarised, {received} on MQTT")
                worst = max(worst, cost.peak_rss_mb)
                cpu = 100 * cost.cpu_seconds / cost.wall_seconds
                print(
                    f"| {count} | {summarised} | {received} | {cost.peak_rss_mb:.1f} "
                    f"| {cpu:.1f} | {cpu / count:.1f} | {cost.peak_rss_mb / MEMORY_GOAL_MB:.2f} |",
                    flush=True,
                )
        finally:
            broker.stop()
    print()
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="clip timed per encoder (default: %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="default: %(default)s")
    parser.add_argument(
        "--files",
        type=int,
        default=0,
        help="sample files to stream (0: all) (default: %(default)s)",
    )
    parser.add_argument(
        "--paths", action="append", help="comma list of codec paths streamed at once (repeat)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="per edge run, seconds (default: %(default)s)"
    )
    parser.add_argument(
        "--sources",
        default=",".join(map(str, STATION_SOURCES)),
        help="network source counts measured as a listening station (default: %(default)s)",
    )
    parser.add_argument(
        "--station-seconds",
        type=float,
        default=60.0,
        help="real time per station run (default: %(default)s)",
    )
    parser.add_argument(
        "--only", choices=("station",), help="run only this part (station: the listening station)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 s clips, 1 repeat, 2 files, one path set; no station part unless --only station "
        "(then 1 and 2 sources, 25 s each)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats, args.files = 2.0, 1, args.files or 2
        args.station_seconds = min(args.station_seconds, 25.0)
        if args.sources == ",".join(map(str, STATION_SOURCES)):
            args.sources = ",".join(map(str, QUICK_STATION_SOURCES))
    path_sets = args.paths or list(QUICK_PATH_SETS if args.quick else PATH_SETS)
    files = sorted(SAMPLES.glob("*.flac"))
    files = files[: args.files] if args.files else files
    if not files:
        raise SystemExit(f"no sample clips in {SAMPLES} (scripts/make_samples.py makes them)")
    counts = [int(n) for n in args.sources.split(",") if n.strip()]
    station = args.only == "station" or not args.quick
    everything = args.only is None

    machine = platform.processor() or platform.machine()
    print(f"# edge cost: {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    slow: list[str] = []
    if everything:
        slow = encode_section(args)

    from tests.servers import start_server  # the same loopback server the tests run

    worst = station_worst = 0.0
    server = start_server() if station else start_server("--detector", "none")
    try:
        if everything:
            worst = memory_section(args, server.target, files, path_sets)
        if station:
            station_worst = station_section(
                server.target, counts, args.station_seconds, args.timeout
            )
    finally:
        server.stop()
    memory_verdict = "met" if worst < MEMORY_GOAL_MB else "missed"
    if everything:
        encode_verdict = "met" if not slow else f"missed by {', '.join(slow)}"
        print(f"every codec >= {ENCODE_GOAL:g}x real time on one core: {encode_verdict}")
        print(
            f"edge under {MEMORY_GOAL_MB:g} MB while streaming: {memory_verdict} ({worst:.1f} MB)"
        )
    if station:
        verdict = "met" if station_worst < MEMORY_GOAL_MB else "missed"
        print(
            f"listening station under {MEMORY_GOAL_MB:g} MB with {max(counts)} source(s): "
            f"{verdict} ({station_worst:.1f} MB)"
        )


def encode_section(args: argparse.Namespace) -> list[str]:
    """Encode speed per codec on one core; returns the codecs under the goal."""
    print(
        f"## Encode speed, one core ({args.seconds:g} s full-band clip, best of {args.repeats}; "
        f"goal >= {ENCODE_GOAL:g}x real time)"
    )
    print()
    print("| path | kbps | encode x real time | ratio to the 50x goal | goal |")
    print("|---|---:|---:|---:|---|")
    slow = []
    with one_core():
        for spec in REFERENCE_SPECS:
            t = measure(spec, args.seconds, args.repeats, decode=False)
            met = t.encode_x >= ENCODE_GOAL
            slow += [] if met else [spec]
            print(
                f"| `{spec}` | {t.kbps:.1f} | {t.encode_x:.0f} | {t.encode_x / ENCODE_GOAL:.2f} "
                f"| {'met' if met else 'missed'} |",
                flush=True,
            )
    print()
    return slow


def memory_section(
    args: argparse.Namespace, target: str, files: list[Path], path_sets: list[str]
) -> float:
    """Peak memory streaming files through each path set; returns the worst peak RSS."""
    baselines = [
        ("interpreter alone (`python -c pass`)", [sys.executable, "-c", "pass"]),
        (
            "edge imports only",
            [sys.executable, "-c", "import edge.cli, edge.client, edge.sources, edge.output"],
        ),
    ]
    print(
        f"## Edge process peak memory, streaming {len(files)} sample clip(s) to asc-server "
        f"on loopback (goal < {MEMORY_GOAL_MB:g} MB)"
    )
    print()
    print(
        "| edge process | codec paths | clips summarised | audio s sent | peak RSS (MB) "
        "| ratio to the 150 MB goal | torch imported or mapped |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    worst = 0.0
    for label, cmd in baselines:
        cost = run_measured(cmd, args.timeout)
        torch = bool(cost.imported & set(TORCH_MODULES)) or cost.torch_mapped
        print(
            f"| {label} | - | - | - | {cost.peak_rss_mb:.1f} "
            f"| {cost.peak_rss_mb / MEMORY_GOAL_MB:.2f} | {'yes' if torch else 'no'} |",
            flush=True,
        )
    for codecs in path_sets:
        cost, totals = edge_stream(target, codecs, files, args.timeout)
        n_paths = len(split_spec_list(codecs))
        clips = sum(t["clips"] for t in totals.values())
        if len(totals) != n_paths or clips != n_paths * len(files):
            raise RuntimeError(f"{codecs}: {clips} clips summarised, totals {totals}")
        audio = sum(t["audio_seconds"] for t in totals.values())
        torch = bool(cost.imported & set(TORCH_MODULES)) or cost.torch_mapped
        if torch:
            raise RuntimeError(f"the edge loaded torch streaming {codecs}")
        worst = max(worst, cost.peak_rss_mb)
        print(
            f"| `asc-edge stream` ({cost.wall_seconds:.1f} s) | {n_paths}: `{codecs}` "
            f"| {clips} | {audio:.0f} | {cost.peak_rss_mb:.1f} "
            f"| {cost.peak_rss_mb / MEMORY_GOAL_MB:.2f} | no |",
            flush=True,
        )
    print()
    return worst


if __name__ == "__main__":
    main()
