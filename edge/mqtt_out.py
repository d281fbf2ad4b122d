"""Results to an MQTT broker, laid out for automations and for Home Assistant's MQTT discovery.

Topic layout (the one place it is defined; ``<prefix>`` is ``--mqtt-prefix``, ``asc`` by
default; ``<device>`` the edge's ``--device-id`` and ``<source>`` a source's name, each with
any character outside ``A-Z a-z 0-9 _ -`` turned into ``_``)::

    <prefix>/<device>/status            online | offline, retained; the broker publishes
                                        offline itself (last will) when the edge dies
    <prefix>/<device>/<source>/status   online | offline, retained: the source is streaming,
                                        or lost and reconnecting
    <prefix>/<device>/<source>/result   every clip summary, QoS 1, not retained: the same JSON
                                        object --jsonl writes (result_id, source, path,
                                        fine_label, fine, coarse_label, lossy_probability...)
    <prefix>/<device>/<source>/state    the latest summary of the first codec path, flat, QoS 1,
                                        retained: scene, confidence, lossy_probability,
                                        coarse_scene, result_id... (what Home Assistant reads)
    <discovery>/sensor/asc_edge_<device>/<source>_scene/config
                                        Home Assistant discovery, retained (``<discovery>`` is
                                        ``homeassistant`` unless --mqtt-discovery-prefix says
                                        otherwise; --mqtt-no-discovery leaves it out)

Every source becomes one Home Assistant device (named after the source) with a "Scene"
sensor: its state is the scene, its attributes the confidence, the lossy probability and the
rest of the state object; it is unavailable while the edge or the source is offline. Nothing
is configured on the Home Assistant side: the discovery messages are retained, sent again on
every (re)connect and whenever Home Assistant announces itself on ``<discovery>/status``.

Delivery: QoS 1 (at least once between the edge and the broker; a message whose
acknowledgement was lost is sent again with the DUP flag, so a consumer that must not see a
result twice drops repeats by ``result_id``). While the broker is unreachable, paho keeps up to
``queue`` messages in memory and sends them when it is back (it reconnects by itself, 1 s
doubling to 60 s); past that, new results are dropped and counted. Results still queued when
the edge process dies are lost to MQTT (``--jsonl`` with ``--spool`` is the durable record).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

from edge.security import CredentialsError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
ONLINE, OFFLINE = "online", "offline"
KEEPALIVE_SECONDS = 30
EventCallback = Callable[[str], None]


def topic_part(text: str) -> str:
    """One topic level (and Home Assistant id) from free text: no ``/``, ``+``, ``#`` or
    spaces, which would split or widen a topic."""
    return UNSAFE.sub("_", text) or "_"


def edge_version() -> str:
    try:
        return version("asc-stream")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "0"


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker(url: str) -> Broker:
    """``mqtt://HOST[:PORT]`` (1883) or ``mqtts://HOST[:PORT]`` (TLS, 8883); a bare
    ``HOST[:PORT]`` is mqtt://. Credentials never go in the URL: --mqtt-password-file."""
    text = url.strip()
    if "://" not in text:
        text = "mqtt://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise CredentialsError(f"--mqtt {url}: use mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    if parts.username or parts.password:
        raise CredentialsError(
            "--mqtt: put no user or password in the URL; use --mqtt-username and "
            "--mqtt-password-file"
        )
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise CredentialsError(f"--mqtt {url}: bad port") from None
    if not parts.hostname:
        raise CredentialsError(f"--mqtt {url}: no host")
    return Broker(parts.hostname, port, scheme == "mqtts")


def read_password(path: str) -> str:
    """The password file's first line (a trailing newline is not part of it)."""
    try:
        with open(path, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise CredentialsError(
            f"--mqtt-password-file {path}: {getattr(e, 'strerror', None) or e}"
        ) from None
    if not password:
        raise CredentialsError(f"--mqtt-password-file {path}: the file is empty")
    if mode & stat.S_IROTH:
        print(
            f"asc-edge: warning: {path} is readable by anyone; chmod 600 it",
            file=sys.stderr,
            flush=True,
        )
    return password


class Topics:
    """Every topic the edge publishes to; see the module docstring."""

    def __init__(self, prefix: str, device_id: str, discovery_prefix: str) -> None:
        self.prefix = prefix.strip("/") or "asc"
        self.device = topic_part(device_id)
        self.discovery_prefix = discovery_prefix.strip("/") or "homeassistant"

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.device}/status"

    def source_status(self, source: str) -> str:
        return f"{self.prefix}/{self.device}/{topic_part(source)}/status"

    def result(self, source: str) -> str:
        return f"{self.prefix}/{self.device}/{topic_part(source)}/result"

    def state(self, source: str) -> str:
        return f"{self.prefix}/{self.device}/{topic_part(source)}/state"

    def discovery(self, source: str) -> str:
        node = f"asc_edge_{self.device}"
        return f"{self.discovery_prefix}/sensor/{node}/{topic_part(source)}_scene/config"

    @property
    def ha_status(self) -> str:
        """Where Home Assistant says ``online`` when it (re)starts."""
        return f"{self.discovery_prefix}/status"


def confidence(record: dict[str, Any]) -> float:
    """The probability a result gives its own fine label."""
    label = record.get("fine_label")
    return next((p["probability"] for p in record.get("fine", []) if p["label"] == label), 0.0)


def ha_state(record: dict[str, Any]) -> dict[str, Any]:
    """The flat object on the state topic: the sensor's state (``scene``) and attributes."""
    return {
        "scene": record.get("fine_label", ""),
        "confidence": round(confidence(record), 4),
        "lossy_probability": (
            round(record.get("lossy_probability", 0.0), 4) if record.get("detector_ran") else None
        ),
        # the detector's codec family guess ("lossless" below 0.5), None where it did not run
        "codec_family": (record.get("codec_family", "") or None)
        if record.get("detector_ran")
        else None,
        "coarse_scene": record.get("coarse_label", ""),
        "source": record.get("source", ""),
        "codec_path": record.get("path", ""),
        "clip_id": record.get("clip_id", ""),
        "clip_seconds": record.get("clip_seconds", 0.0),
        "result_id": record.get("result_id", ""),
        "time": record.get("time", ""),
        "model_version": record.get("model_version", ""),
    }


def discovery_config(topics: Topics, device_id: str, source: str) -> dict[str, Any]:
    """Home Assistant MQTT discovery for one source's scene sensor (and its device)."""
    device = topics.device
    src = topic_part(source)
    return {
        "name": "Scene",
        "unique_id": f"asc_edge_{device}_{src}_scene",
        "state_topic": topics.state(source),
        "value_template": "{{ value_json.scene }}",
        "json_attributes_topic": topics.state(source),
        "availability": [
            {"topic": topic, "payload_available": ONLINE, "payload_not_available": OFFLINE}
            for topic in (topics.status, topics.source_status(source))
        ],
        "availability_mode": "all",
        "qos": 1,
        "icon": "mdi:ear-hearing",
        "device": {
            "identifiers": [f"asc_edge_{device}_{src}"],
            "name": source,
            "manufacturer": "asc-stream",
            "model": f"asc-edge source on {device_id}",
            "sw_version": edge_version(),
        },
        "origin": {"name": "asc-edge", "sw_version": edge_version()},
    }


class MqttPublisher:
    """Publishes results, source availability and discovery; thread-safe, never blocks.

    ``start()`` checks the credential files and begins connecting in paho's own thread (a
    broker that is not up yet is retried like a lost one); ``close()`` marks every source and
    the edge offline and waits up to ``timeout`` for what is queued.
    """

    def __init__(
        self,
        url: str,
        device_id: str,
        sources: Iterable[str],
        primary_path: str,
        *,
        username: str | None = None,
        password_file: str | None = None,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        prefix: str = "asc",
        discovery_prefix: str = "homeassistant",
        discovery: bool = True,
        queue: int = 1000,
        on_event: EventCallback | None = None,
    ) -> None:
        self.broker = parse_broker(url)
        if (ca or cert) and not self.broker.tls:
            raise CredentialsError("--mqtt-ca/--mqtt-cert need TLS: use mqtts://HOST[:PORT]")
        if bool(cert) != bool(key):
            raise CredentialsError("give --mqtt-cert and --mqtt-key together")
        if password_file and not username:
            raise CredentialsError("--mqtt-password-file needs --mqtt-username")
        self.device_id = device_id
        self.sources = list(sources)
        self.primary_path = primary_path
        self.topics = Topics(prefix, device_id, discovery_prefix)
        self.discovery = discovery
        self.queue = queue
        self.username, self.password_file = username, password_file
        self.ca, self.cert, self.key = ca, cert, key
        self.on_event = on_event
        self.published = 0  # results handed to paho (each one a result and maybe a state)
        self.dropped = 0  # results dropped: the queue was full
        self._online: dict[str, bool] = dict.fromkeys(self.sources, False)
        self._pending: deque = deque()  # MQTTMessageInfo not yet acknowledged
        self._lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._connected = threading.Event()
        self._closing = False
        self._client: Any = None

    # --- connection ------------------------------------------------------------------------

    def _event(self, message: str) -> None:
        if self.on_event is not None:
            self.on_event(message)

    def start(self) -> MqttPublisher:
        import paho.mqtt.client as mqtt

        password = read_password(self.password_file) if self.password_file else None
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"asc-edge-{self.topics.device}-{secrets.token_hex(3)}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if self.username:
            client.username_pw_set(self.username, password)
        if self.broker.tls:
            for flag, path in (("--mqtt-ca", self.ca), ("--mqtt-cert", self.cert)):
                if path and not os.path.isfile(path):
                    raise CredentialsError(f"{flag} {path}: no such file")
            try:
                client.tls_set(ca_certs=self.ca, certfile=self.cert, keyfile=self.key)
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
                raise CredentialsError(f"--mqtt TLS files: {e}") from None
        client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        client.max_queued_messages_set(self.queue)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_SECONDS)
        client.loop_start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._event(f"{self.broker} refused the connection: {reason_code}; retrying")
            return
        self._event(f"connected to {self.broker}")
        client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        if self.discovery:
            client.subscribe(self.topics.ha_status, qos=1)
            self._announce(client)
        with self._status_lock:  # again, for a broker that lost its retained messages
            for source, online in self._online.items():
                client.publish(
                    self.topics.source_status(source), ONLINE if online else OFFLINE, 1, True
                )
        self._connected.set()

    def _announce(self, client) -> None:
        for source in self.sources:
            config = discovery_config(self.topics, self.device_id, source)
            client.publish(self.topics.discovery(source), json.dumps(config), qos=1, retain=True)

    def _on_connect_fail(self, client, userdata) -> None:
        self._event(f"cannot reach {self.broker}; retrying")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._closing:
            self._event(f"lost {self.broker} ({reason_code}); reconnecting")

    def _on_message(self, client, userdata, message) -> None:
        if message.topic == self.topics.ha_status and message.payload == b"online":
            self._announce(client)  # Home Assistant restarted: tell it again

    # --- publishing ------------------------------------------------------------------------

    def _publish(self, topic: str, payload: str, retain: bool) -> bool:
        import paho.mqtt.client as mqtt

        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            return False
        with self._lock:
            self._pending.append(info)
            while self._pending and _acknowledged(self._pending[0]):
                self._pending.popleft()
        return True

    def source_status(self, source: str, online: bool) -> None:
        """A source connected or was lost: its Home Assistant device follows."""
        with self._status_lock:  # published in the order the changes happened
            if self._online.get(source) == online:
                return
            self._online[source] = online
            self._publish(self.topics.source_status(source), ONLINE if online else OFFLINE, True)

    def result(self, record: dict[str, Any]) -> None:
        """One clip summary (the record --jsonl writes): to the result topic, and the first
        codec path's to the retained state topic."""
        source = record.get("source", "")
        ok = self._publish(self.topics.result(source), json.dumps(record), False)
        if ok and record.get("path") == self.primary_path:
            ok = self._publish(self.topics.state(source), json.dumps(ha_state(record)), True)
        if ok:
            self.published += 1
            return
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 100 == 0:
            self._event(
                f"{self.queue} messages wait for {self.broker}: dropped {self.dropped} "
                f"result(s) so far (latest {record.get('result_id', '?')})"
            )

    def close(self, timeout: float = 5.0) -> int:
        """Mark the sources and the edge offline, send what is queued (up to ``timeout``
        seconds), disconnect. Returns how many messages were still unacknowledged."""
        if self._client is None:
            return 0
        for source in self.sources:
            self.source_status(source, False)
        self._publish(self.topics.status, OFFLINE, True)
        deadline = time.monotonic() + timeout
        with self._lock:
            pending = list(self._pending)
        while time.monotonic() < deadline and any(not _acknowledged(i) for i in pending):
            time.sleep(0.05)
        left = sum(not _acknowledged(i) for i in pending)
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()
        if left:
            self._event(f"{left} message(s) never reached {self.broker}")
        return left


def _acknowledged(info: Any) -> bool:
    """The broker acknowledged the message. A message published while disconnected carries
    paho's "not connected" code, for which ``is_published()`` raises, yet paho sends it once
    the connection is back: then its own flag tells."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return bool(getattr(info, "_published", False))
