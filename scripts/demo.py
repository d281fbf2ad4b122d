"""The main job on the bundled defaults: the whole system on loopback, end to end.

Starts ``asc-server serve`` with the shipped checkpoints, streams the sample clips in
``samples/`` through six codec paths at once with the edge client (this process never imports
torch), prints one table of what came back (per path also the detector's mean lossy
probability and its codec family guess), then the server's own per-path accuracy read from its
Prometheus endpoint, and stops the server with SIGTERM.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

from rich.console import Console
from rich.table import Table

from edge.client import stream_clips
from edge.sources import Labels, file_clips, find_audio_files

REPO = Path(__file__).resolve().parent.parent
PATHS = ["pcm16", "opus:32k", "mp3:64k", "aac:32k", "he-aac:16k", "sbc:64k"]
console = Console() if Console().is_terminal else Console(width=200)


def start_server() -> tuple[subprocess.Popen, dict]:
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", "0",
           "--metrics-port", "0", "--log-level", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("{"):
            return proc, json.loads(line)
    raise SystemExit(f"the server exited ({proc.wait()}) before listening; see its log above")


def scrape_accuracy(metrics_port: int) -> dict[str, tuple[float, float, float]]:
    """Per codec path: (correct, labelled, accuracy gauge), as the server counts them."""
    with urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    series: dict[str, dict[str, float]] = {}
    pattern = r'^asc_(correct_clips_total|labelled_clips_total|accuracy)\{codec_path="([^"]+)",'
    for line in text.splitlines():
        if m := re.match(pattern + r'model="[^"]+"\} (\S+)$', line):
            series.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    return {
        path: (v["correct_clips_total"], v["labelled_clips_total"], v["accuracy"])
        for path, v in series.items()
    }


def family_guess(summaries: dict, path: str) -> str:
    """The detector's codec family most clips of a path got (``codec_family`` of each clip's
    summary), and the share of clips that got it."""
    guesses = [r.codec_family for (_, q), r in summaries.items() if q == path and r.codec_family]
    if not guesses:
        return "-"
    top = max(set(guesses), key=guesses.count)
    return f"{top} {guesses.count(top) / len(guesses):.0%}"


def main() -> int:
    started = time.monotonic()
    files = find_audio_files([REPO / "samples"])
    labels = Labels.from_file(REPO / "samples" / "meta.csv")
    clips = list(file_clips(files, labels=labels))
    console.print(f"[bold]asc-stream demo[/]: {len(clips)} sample clips x {len(PATHS)} codec paths")
    proc, ready = start_server()
    console.print(
        f"server on 127.0.0.1:{ready['port']} ({ready['device']}), "
        f"metrics on :{ready['metrics_port']}, models {ready['ensemble']} + {ready['detector']}"
    )
    summaries: dict[tuple[str, str], object] = {}

    def on_result(path: str, result, label: str) -> None:
        if result.clip_summary:
            summaries[(result.clip_id, path)] = result

    try:
        target = f"127.0.0.1:{ready['port']}"
        report = stream_clips(
            target,
            PATHS,
            clips,
            detector=True,
            wait_for_grid_tests=True,  # sent faster than real time: the tests queue
            device_id="demo",
            on_result=on_result,
        )
        accuracy = scrape_accuracy(ready["metrics_port"])
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)

    table = Table(title="predicted scene (confidence) per clip and codec path; red: wrong")
    table.add_column("clip", no_wrap=True)
    table.add_column("true label", no_wrap=True)
    for path in PATHS:
        table.add_column(path, no_wrap=True)
    for clip in clips:
        cells = []
        for path in PATHS:
            r = summaries.get((clip.clip_id, path))
            if r is None:
                cells.append("[red]missing[/]")
                continue
            confidence = max(p.probability for p in r.fine)
            style = "green" if r.fine_label == clip.label else "red"
            cells.append(f"[{style}]{r.fine_label}[/] {confidence:.2f}")
        table.add_row(clip.clip_id, clip.label, *cells)
    totals = report.totals
    table.add_section()
    table.add_row("kbps on the wire", "", *(f"{totals[p].wire_kbps:.1f}" for p in PATHS))
    lossy = {p: [r.lossy_probability for (_, q), r in summaries.items() if q == p] for p in PATHS}
    table.add_row(
        "lossy probability",
        "mean over clips",
        *(f"{sum(v) / len(v):.2f}" if v else "-" for v in lossy.values()),
    )
    table.add_row(
        "family guess", "most clips' (share)", *(family_guess(summaries, p) for p in PATHS)
    )
    table.add_row(
        "accuracy (edge)",
        "",
        *(f"{totals[p].correct}/{totals[p].labelled}" for p in PATHS),
    )
    console.print(table)

    server_table = Table(title="the server's live accuracy per path (its /metrics)")
    for column in ("codec path", "correct", "labelled", "asc_accuracy"):
        server_table.add_column(column, justify="left" if column == "codec path" else "right")
    for path in PATHS:
        correct, labelled, gauge = accuracy.get(path, (0, 0, float("nan")))
        server_table.add_row(path, f"{correct:.0f}", f"{labelled:.0f}", f"{gauge:.2f}")
    console.print(server_table)
    missing = sum(1 for c in clips for p in PATHS if (c.clip_id, p) not in summaries)
    console.print(
        f"server stopped with exit code {code}; {missing} result(s) missing; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    return 0 if missing == 0 and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
