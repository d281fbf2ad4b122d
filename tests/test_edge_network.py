"""asc-edge as a listening station, end to end with real parts on loopback.

Two RTSP cameras (GStreamer's RTSP server, AAC audio plus a video track), a real mosquitto,
a webhook receiver and a real ``asc-server serve``; ``asc-edge stream --source ... --mqtt ...
--webhook ...`` runs as its own process. One camera is killed mid-stream and started again on
its port; the edge says so, marks that source offline and back online, and goes on. A
subscriber reads what Home Assistant would (discovery, availability, state through the
discovery message's own template) and the results published are exactly those printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import jinja2
import numpy as np
import pytest

from asc.audio import load, save
from edge.cli import main
from edge.errors import SourceError
from edge.mqtt_out import Topics
from edge.network_sources import (
    PACE_SLACK_SECONDS,
    NetworkSource,
    _Pacer,
    ffmpeg_options,
    parse_source,
    parse_sources,
    redact,
)
from tests.network_services import (
    Camera,
    Subscriber,
    WebhookReceiver,
    start_broker,
    start_http_stream,
    stop_process,
)
from tests.servers import start_server

REPO = Path(__file__).resolve().parent.parent
EDGE = [sys.executable, "-m", "edge.cli"]


def sample_wav(path: Path, names: list[str]) -> Path:
    """Sample clips back to back, as one 48 kHz mono WAV (what a camera would capture)."""
    pieces = [load(REPO / "samples" / f"{name}.flac", 48000, 1)[0] for name in names]
    save(path, np.concatenate(pieces), 48000)
    return path


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("audio")
    return {
        "kitchen": sample_wav(base / "kitchen.wav", ["park", "park", "park"]),
        "hall": sample_wav(base / "hall.wav", ["bus", "bus", "bus"]),
    }


def until(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def read_clips(source: NetworkSource, count: int) -> list[tuple[str, np.ndarray]]:
    clips = []
    source.start()
    try:
        for clip in source:
            clips.append((clip.clip_id, np.concatenate(list(clip.chunks(4096)))))
            if len(clips) == count:
                break
    finally:
        source.stop()
        source.join(5)
    return clips


# --- sources alone -------------------------------------------------------------------------------


def test_source_names_urls_and_options():
    assert parse_source("kitchen=rtsp://cam/x").name == "kitchen"
    for bad in ("kitchen", "=rtsp://cam", "kit chen=rtsp://cam", "a/b=rtsp://cam", "x=cam"):
        with pytest.raises(SourceError):
            parse_source(bad)
    with pytest.raises(SourceError, match="given twice"):
        parse_sources(["a=rtsp://x/1", "A=rtsp://x/2"])
    secret = "rtsp://admin:hunter2@10.0.0.5:554/stream1"
    assert redact(secret) == "rtsp://admin:***@10.0.0.5:554/stream1"
    with pytest.raises(SourceError) as e:
        parse_source("bad name=" + secret)
    assert "hunter2" not in str(e.value)
    rtsp = ffmpeg_options("rtsp://cam/x", 5.0)
    assert rtsp["allowed_media_types"] == "audio" and rtsp["rtsp_transport"] == "tcp"
    assert ffmpeg_options("https://radio/x", 5.0, ca_file="ca.pem")["tls_verify"] == "1"


def test_the_pacer_holds_a_fast_source_to_real_time_but_never_a_live_one():
    now = [0.0]
    pacer = _Pacer(lambda: now[0])
    assert pacer.wait_seconds(PACE_SLACK_SECONDS) == 0  # a connect burst passes
    assert pacer.wait_seconds(60.0) == pytest.approx(60.0 - PACE_SLACK_SECONDS)  # a file
    now[0] = 86400.0  # a day later, a live source whose clock runs 100 ppm fast
    assert pacer.wait_seconds(86400.0 * 1.0001) == 0


def test_an_rtsp_camera_is_read_audio_only_into_named_live_clips(wavs):
    camera = Camera(wavs["kitchen"]).start()
    statuses = []
    try:
        source = NetworkSource(
            parse_source(f"kitchen={camera.url}"),
            44100,
            1,
            1.0,
            on_status=lambda name, online, message: statuses.append((name, online, message)),
        )
        clips = read_clips(source, 2)
    finally:
        camera.stop()
    assert [cid.split("-")[0] for cid, _ in clips] == ["kitchen", "kitchen"]
    assert all(len(pcm) == 44100 and np.abs(pcm).mean() > 1e-3 for _, pcm in clips)
    assert camera.setups() == ["/mic/stream=0"]  # the audio track only; the video never set up
    assert statuses[0][:2] == ("kitchen", True) and "aac 48000 Hz" in statuses[0][2]


def test_a_camera_that_stops_answering_is_lost_after_the_timeout_and_comes_back(wavs):
    """SIGSTOP: the connection stays open but nothing arrives, as when a camera hangs or the
    Wi-Fi drops without a goodbye; only the read timeout can tell."""
    camera = Camera(wavs["hall"], video=False).start()
    statuses: list[tuple[bool, str]] = []
    source = NetworkSource(
        parse_source(f"hall={camera.url}"),
        16000,
        1,
        1.0,
        timeout=2.0,
        on_status=lambda name, online, message: statuses.append((online, message)),
    )
    source.start()
    try:
        until(lambda: statuses, "connected")
        camera.proc.send_signal(signal.SIGSTOP)
        until(lambda: len(statuses) >= 2, "the stall noticed")
        camera.proc.send_signal(signal.SIGCONT)
        until(lambda: len(statuses) >= 3 and statuses[-1][0], "connected again")
    finally:
        camera.proc.send_signal(signal.SIGCONT)
        source.stop()
        source.join(5)
        camera.stop()
    assert [online for online, _ in statuses][:2] == [True, False]
    assert statuses[1][1].startswith("lost: no data for 2 s; reconnecting in ")
    assert statuses[-1][0] and statuses[-1][1].startswith("connected to ")
    assert source.connects >= 2 and source.losses >= 1


def test_an_icecast_like_http_stream(wavs):
    proc, url = start_http_stream(wavs["hall"])
    try:
        source = NetworkSource(parse_source(f"radio={url}"), 22050, 2, 1.0, timeout=10)
        clips = read_clips(source, 1)
    finally:
        stop_process(proc)
    (clip_id, pcm), = clips  # fmt: skip
    assert clip_id.startswith("radio-") and pcm.shape == (22050, 2)


def test_station_usage_errors_exit_2(capsys, tmp_path):
    base = ["stream", "--server", "127.0.0.1:1", "--codec", "opus:32k"]
    with pytest.raises(SystemExit):
        main([*base, "--source", "a=rtsp://x/1", str(tmp_path)])
    assert "give --source NAME=URL or local audio" in capsys.readouterr().err
    assert main([*base, "--source", "a b=rtsp://x/1"]) == 2
    assert "a name is 1-64 letters" in capsys.readouterr().err
    missing = tmp_path / "missing"
    args = [*base, "--source", "a=rtsp://127.0.0.1:1/x", "--mqtt", "mqtt://127.0.0.1:1"]
    assert main([*args, "--mqtt-username", "u", "--mqtt-password-file", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"asc-edge: error: --mqtt-password-file {missing}: No such file or directory"]


# --- the whole station --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    process = start_server()
    yield process
    process.stop()


def test_two_cameras_into_home_assistant_through_a_camera_restart(server, wavs, tmp_path):
    broker = start_broker(tmp_path / "mosquitto")
    cameras = {name: Camera(wav).start() for name, wav in wavs.items()}
    every_camera = list(cameras.values())
    sub = Subscriber(broker.port)
    receiver = WebhookReceiver()
    topics = Topics("asc", "station-1", "homeassistant")
    out = tmp_path / "results.jsonl"
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - a file never blocks the edge
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASC_EDGE_")}
    edge = subprocess.Popen(
        [
            *EDGE, "stream", "--server", server.target, "--codec", "opus:32k",
            "--source", f"kitchen={cameras['kitchen'].url}",
            "--source", f"hall={cameras['hall'].url}",
            "--clip-seconds", "2", "--detector", "--device-id", "station-1",
            # a summary may wait up to 10 s for its stream's grid test (server/grid_runner.py):
            # room for five 2 s clips in flight, so none is still queued when the drain begins
            "--max-in-flight", "8",
            "--mqtt", broker.url, "--webhook", receiver.url, "--jsonl", str(out),
            "--spool", str(tmp_path / "spool"),
        ],
        stdout=subprocess.DEVNULL, stderr=log, text=True, env=env,
    )  # fmt: skip

    def states(source: str) -> list:
        return sub.on(topics.state(source))

    def payload(topic: str) -> bytes | None:
        message = sub.last(topic)
        return message.payload if message is not None else None

    def stderr() -> str:
        log.seek(0)
        return log.read()

    def expect(predicate, what: str, timeout: float = 60) -> None:
        try:
            sub.wait(predicate, timeout=timeout, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}\nasc-edge said:\n{stderr()}") from None

    try:
        expect(lambda: len(states("kitchen")) >= 2 and len(states("hall")) >= 2,
               "two results per source", timeout=120)  # fmt: skip
        cameras["hall"].kill()  # mid-stream, mid-clip
        status = topics.source_status("hall")
        expect(lambda: payload(status) == b"offline", "hall offline")
        before = len(states("hall"))
        cameras["hall"] = Camera(wavs["hall"], port=cameras["hall"].port).start()
        every_camera.append(cameras["hall"])
        expect(lambda: payload(status) == b"online", "hall back", timeout=90)
        expect(lambda: len(states("hall")) >= before + 2, "hall results", timeout=90)
        edge.send_signal(signal.SIGTERM)  # drains: the clips in flight get their summaries
        assert edge.wait(120) == 130, stderr()
        expect(lambda: payload(topics.status) == b"offline", "edge offline")
        receiver.wait(lambda: len(receiver.accepted()) >= len(sub.on(topics.result("hall"))),
                      what="webhooks")  # fmt: skip
    finally:
        if edge.poll() is None:
            edge.kill()
        for camera in cameras.values():
            camera.stop()
        sub.close()
        receiver.close()
        broker.stop()

    text = stderr()
    assert "source hall: lost" in text or "source hall: the stream ended" in text, text
    assert "reconnecting in" in text
    assert text.count("source hall: connected to") == 2, text
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    summaries = [r for r in lines if r["type"] == "summary"]
    assert {r["source"] for r in summaries} == {"kitchen", "hall"}
    assert all(r["clip_id"].startswith(r["source"] + "-") for r in summaries)
    assert all(r["device_id"] == "station-1" and r["detector_ran"] for r in summaries)
    assert {r["source"] for r in lines if r["type"] == "totals"} == {"kitchen", "hall"}
    spools = {r["source"]: r for r in lines if r["type"] == "spool"}  # one spool per source
    assert {s["directory"] for s in spools.values()} == {
        str(tmp_path / "spool" / name) for name in ("kitchen", "hall")
    }
    assert all(s["clips"] == 0 and s["completed"] == s["added"] > 0 for s in spools.values())

    # Published exactly what was printed: the same result ids, each once, everywhere.
    printed = Counter(r["result_id"] for r in summaries)
    assert max(printed.values()) == 1
    for source in ("kitchen", "hall"):
        mine = {r["result_id"] for r in summaries if r["source"] == source}
        published = [m.json()["result_id"] for m in sub.on(topics.result(source))]
        assert Counter(published) == Counter(mine), source
        assert [json.loads(m.payload)["result_id"] for m in states(source)] == published
    assert Counter(r["result_id"] for r in receiver.accepted()) == printed

    # What Home Assistant reads: a device per source with its scene, now unavailable.
    for source in ("kitchen", "hall"):
        config = sub.last(topics.discovery(source)).json()
        assert config["device"]["name"] == source
        state = sub.last(config["state_topic"])
        scene = jinja2.Template(config["value_template"]).render(value_json=state.json())
        last = [r for r in summaries if r["source"] == source][-1]
        assert scene == last["fine_label"]
        attributes = state.json()
        assert 0 < attributes["confidence"] <= 1 and 0 <= attributes["lossy_probability"] <= 1
        assert sub.last(topics.source_status(source)).payload == b"offline"
    assert sub.last(topics.status).payload == b"offline"

    # Each camera was only ever asked for its audio track, the restarted one included.
    for camera in every_camera:
        assert set(camera.setups()) == {"/mic/stream=0"}


def test_the_station_cost_benchmark_runs():
    """benchmarks.edge_cost's listening-station part, small: figures only, no time bounds."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.edge_cost", "--quick", "--only", "station",
         "--sources", "2", "--station-seconds", "12"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 2 |")]
    assert len(rows) == 1, done.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    clips, received, rss, cpu, per_source = (float(c) for c in cells[1:6])
    assert clips >= 2 and received == clips  # every clip summary reached the broker
    assert rss > 0 and 0 < per_source <= cpu
    assert "listening station under 150 MB with 2 source(s):" in done.stdout
