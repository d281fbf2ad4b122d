"""MQTT and webhook outputs against real services on loopback (no scene server needed).

A real mosquitto (plain, TLS with a password file, persistent for a restart) and a real HTTP
receiver; results are built as the edge builds them (``result_record``). What Home Assistant
would read is checked by rendering the discovery message's own templates with Jinja2, the
template engine Home Assistant uses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pytest

from edge.mqtt_out import MqttPublisher, Topics, parse_broker
from edge.output import result_record
from edge.security import CredentialsError
from edge.webhook_out import WebhookSender
from proto import scene_classifier_pb2 as pb
from tests.network_services import Subscriber, WebhookReceiver, start_broker

REPO = Path(__file__).resolve().parent.parent


def summary(clip_id: str, label: str = "park", lossy: float | None = 0.25) -> pb.SceneResult:
    return pb.SceneResult(
        clip_id=clip_id,
        fine_label=label,
        fine=[
            pb.ClassProbability(label=label, probability=0.75),
            pb.ClassProbability(label="bus", probability=0.25),
        ],
        coarse_label="outdoor",
        clip_summary=True,
        detector_ran=lossy is not None,
        lossy_probability=lossy or 0.0,
        codec_family="lossless" if lossy is not None else "",
        codec_path="opus:32k",
        windows=1,
        clip_seconds=2.0,
    )


def record(clip_id: str, source: str = "kitchen", path: str = "opus:32k", **kw) -> dict:
    return result_record(path, summary(clip_id, **kw), source=source, device_id="station-1")


def changes(messages: list) -> list[bytes]:
    """Payloads with repeats in a row collapsed (a status is sent again on every connect)."""
    out: list[bytes] = []
    for m in messages:
        if not out or out[-1] != m.payload:
            out.append(m.payload)
    return out


def render(template: str, payload: bytes) -> str:
    """A Home Assistant value template applied to an MQTT payload (``value_json``)."""
    return jinja2.Environment().from_string(template).render(value_json=json.loads(payload))


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    process = start_broker(tmp_path_factory.mktemp("mosquitto"))
    yield process
    process.stop()


def events_list() -> tuple[list[str], callable]:
    events: list[str] = []
    return events, events.append


def test_the_station_modules_do_not_import_torch():
    code = (
        "import sys, edge.station, edge.network_sources, edge.mqtt_out, edge.webhook_out,"
        " edge.multi_stream, paho.mqtt.client, av;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchaudio'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_topics_and_broker_urls():
    topics = Topics("asc", "pi.local/1", "homeassistant")
    assert topics.status == "asc/pi_local_1/status"
    assert topics.result("kitchen") == "asc/pi_local_1/kitchen/result"
    assert topics.discovery("hall") == "homeassistant/sensor/asc_edge_pi_local_1/hall_scene/config"
    assert str(parse_broker("broker.lan")) == "mqtt://broker.lan:1883"
    assert str(parse_broker("mqtts://broker.lan")) == "mqtts://broker.lan:8883"
    with pytest.raises(CredentialsError, match="no user or password in the URL"):
        parse_broker("mqtt://user:secret@broker.lan")
    with pytest.raises(CredentialsError, match="need TLS"):
        MqttPublisher("mqtt://h", "d", ["s"], "opus:32k", ca="ca.crt")


def test_home_assistant_discovers_each_source_and_reads_its_scene(broker, tmp_path):
    sub = Subscriber(broker.port)
    events, on_event = events_list()
    mqtt = MqttPublisher(
        broker.url, "station-1", ["kitchen", "hall"], "opus:32k", on_event=on_event
    ).start()
    try:
        assert mqtt.wait_connected(30), events
        mqtt.source_status("kitchen", True)
        mqtt.source_status("hall", True)
        mqtt.result(record("kitchen-0", lossy=0.25))
        mqtt.result(record("kitchen-0", path="pcm16"))  # a second path: result topic only
        mqtt.result(record("hall-0", source="hall", label="bus", lossy=None))
        t = mqtt.topics
        sub.wait(lambda: sub.on(t.state("hall")) and len(sub.on(t.result("kitchen"))) == 2,
                 what="states and results")  # fmt: skip
    finally:
        assert mqtt.close() == 0
    sub.wait(lambda: (m := sub.last(t.status)) is not None and m.payload == b"offline",
             what="the edge's offline status")  # fmt: skip

    # What Home Assistant reads: one device per source, a scene sensor, available while both
    # the edge and the source are online.
    for source, scene, lossy in (("kitchen", "park", 0.25), ("hall", "bus", None)):
        (config_msg,) = sub.on(t.discovery(source))
        config = config_msg.json()
        assert config["unique_id"] == f"asc_edge_station-1_{source}_scene"
        assert config["device"]["identifiers"] == [f"asc_edge_station-1_{source}"]
        assert config["device"]["name"] == source
        assert config["availability_mode"] == "all"
        assert [a["topic"] for a in config["availability"]] == [
            t.status,
            t.source_status(source),
        ]
        state = sub.last(config["state_topic"])
        assert render(config["value_template"], state.payload) == scene
        attributes = json.loads(sub.last(config["json_attributes_topic"]).payload)
        assert attributes["confidence"] == 0.75
        assert attributes["lossy_probability"] == lossy
        assert attributes["codec_family"] == ("lossless" if lossy is not None else None)
        assert attributes["source"] == source and attributes["result_id"]
        assert changes(sub.on(t.source_status(source)))[-2:] == [b"online", b"offline"]
    assert changes(sub.on(t.status)) == [b"online", b"offline"]
    # The result topic carries the JSONL record itself, every codec path, each once.
    results = [m.json() for m in sub.on(t.result("kitchen"))]
    assert [r["path"] for r in results] == ["opus:32k", "pcm16"]
    assert len({r["result_id"] for r in results}) == 2
    assert results[0] == {**record("kitchen-0", lossy=0.25), "time": results[0]["time"]}
    sub.close()

    # A subscriber arriving later (Home Assistant restarting) gets the retained messages.
    late = Subscriber(broker.port, "homeassistant/#")
    late.wait(lambda: len(late.messages) == 2, what="retained discovery")
    assert all(m.retain for m in late.messages)
    late.close()


def test_the_broker_publishes_offline_when_the_edge_dies(broker):
    sub = Subscriber(broker.port)
    code = (
        "import os, sys; from edge.mqtt_out import MqttPublisher;"
        f"m = MqttPublisher('{broker.url}', 'doomed', ['mic'], 'opus:32k').start();"
        "assert m.wait_connected(30); m.source_status('mic', True);"
        "print('up', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "up"
        topic = Topics("asc", "doomed", "homeassistant").status
        sub.wait(lambda: [m.payload for m in sub.on(topic)] == [b"online"], what="online")
        proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the last will
        proc.wait(10)
        sub.wait(lambda: [m.payload for m in sub.on(topic)] == [b"online", b"offline"],
                 what="the last will")  # fmt: skip
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()


def test_results_wait_for_a_restarted_broker_and_arrive_once(tmp_path):
    broker = start_broker(tmp_path / "persistent", persistent=True)
    sub = Subscriber(broker.port, "asc/+/+/result")
    events, on_event = events_list()
    mqtt = MqttPublisher(broker.url, "station-1", ["kitchen"], "opus:32k", on_event=on_event)
    mqtt.start()
    try:
        assert mqtt.wait_connected(30)
        mqtt.result(record("c-0"))
        topic = mqtt.topics.result("kitchen")
        sub.wait(lambda: len(sub.on(topic)) == 1, what="the first result")
        broker.stop()
        sub.wait(lambda: not mqtt._connected.is_set(), what="the edge noticing")
        for k in (1, 2, 3):  # published while the broker is down: queued in memory
            mqtt.result(record(f"c-{k}"))
        broker.start()  # same port, same persistence: the subscriber's session survives
        sub.wait(lambda: len(sub.on(topic)) >= 4, timeout=90, what="the queued results")
    finally:
        mqtt.close()
        sub.close()
        broker.stop()
    ids = [m.json()["clip_id"] for m in sub.on(topic)]
    assert ids == ["c-0", "c-1", "c-2", "c-3"]  # each once, in order
    assert any("lost mqtt://" in e for e in events) and mqtt.dropped == 0


def test_tls_and_a_password_from_a_file(tmp_path):
    certs = tmp_path / "certs"
    env = {**os.environ, "CERTS_DIR": str(certs), "DEVICES": "edge-1", "PY": sys.executable}
    subprocess.run(["bash", "scripts/make-certs.sh"], cwd=REPO, env=env, check=True,
                   capture_output=True)  # fmt: skip
    broker = start_broker(tmp_path / "tls", certs=certs, users={"edge": "s3cret", "ha": "ha"})
    url = f"mqtts://127.0.0.1:{broker.port}"
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "bad").write_text("nope\n")
    os.chmod(tmp_path / "pw", 0o600)
    os.chmod(tmp_path / "bad", 0o600)
    events, on_event = events_list()
    good = MqttPublisher(
        url, "station-1", ["kitchen"], "opus:32k", username="edge",
        password_file=str(tmp_path / "pw"), ca=str(certs / "ca.crt"), on_event=on_event,
    ).start()  # fmt: skip
    bad_events, on_bad = events_list()
    bad = MqttPublisher(
        url, "station-2", ["kitchen"], "opus:32k", username="edge",
        password_file=str(tmp_path / "bad"), ca=str(certs / "ca.crt"), on_event=on_bad,
    ).start()  # fmt: skip
    try:
        assert good.wait_connected(30), events
        good.result(record("tls-0"))
        assert good.close() == 0
        deadline = time.monotonic() + 30
        while not bad_events and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not bad.wait_connected(0.1)
        assert any("refused the connection" in e for e in bad_events), bad_events
    finally:
        bad.close(timeout=0)
        broker.stop()
    with pytest.raises(CredentialsError, match=r"--mqtt-password-file .*missing"):
        MqttPublisher(url, "x", ["s"], "p", username="u",
                      password_file=str(tmp_path / "missing")).start()  # fmt: skip


# --- webhooks ----------------------------------------------------------------------------------


def test_a_webhook_is_retried_through_failures_and_delivered_once():
    receiver = WebhookReceiver(statuses=[503, 503])
    events, on_event = events_list()
    hooks = WebhookSender([receiver.url], on_event=on_event).start()
    try:
        first = record("w-0")
        hooks.result(first)
        hooks.result(record("w-1"))
        receiver.wait(lambda: len(receiver.accepted()) == 2, what="two deliveries")
    finally:
        assert hooks.close(drain_seconds=5) == 0
        receiver.close()
    assert [r["clip_id"] for r in receiver.accepted()] == ["w-0", "w-1"]
    assert receiver.accepted()[0] == first  # the same JSON object JSONL and MQTT carry
    statuses = [status for _, _, status in receiver.requests]
    assert statuses == [503, 503, 200, 200]
    headers = receiver.requests[2][0]
    assert headers["Idempotency-Key"] == first["result_id"]
    assert headers["Content-Type"] == "application/json"
    assert any("HTTP 503; retrying in" in e for e in events)


def test_a_refused_webhook_is_not_retried_and_a_full_queue_drops_the_oldest(tmp_path):
    receiver = WebhookReceiver(statuses=[400])
    events, on_event = events_list()
    hooks = WebhookSender([receiver.url], on_event=on_event).start()
    hooks.result(record("bad-0"))
    receiver.wait(lambda: len(receiver.requests) == 1, what="the refused POST")
    assert hooks.close(drain_seconds=5) == 0
    assert any("refused result" in e and "HTTP 400" in e for e in events)
    port = receiver.port
    receiver.close()

    # Nobody listens: the queue of 2 keeps the newest results, then the receiver comes back.
    events, on_event = events_list()
    hooks = WebhookSender([f"http://127.0.0.1:{port}/hook"], queue_size=2, on_event=on_event)
    for k in range(5):
        hooks.result(record(f"q-{k}"))
    hooks.start()
    receiver = WebhookReceiver(port=port)
    try:
        receiver.wait(lambda: len(receiver.accepted()) == 2, what="the newest two")
    finally:
        hooks.close(drain_seconds=5)
        receiver.close()
    assert [r["clip_id"] for r in receiver.accepted()] == ["q-3", "q-4"]
    assert hooks.targets[0].dropped == 3 and any("queue full" in e for e in events)


def test_webhook_settings_are_checked_first(tmp_path):
    with pytest.raises(CredentialsError, match="not an http"):
        WebhookSender(["ftp://example/hook"])
    token = tmp_path / "token"
    token.write_text("abc\n")
    with pytest.raises(CredentialsError, match="needs https"):
        WebhookSender(["http://127.0.0.1:1/hook"], token_file=str(token))
    sender = WebhookSender(["https://127.0.0.1:1/hook"], token_file=str(token))
    assert sender.headers["Authorization"] == "Bearer abc"
