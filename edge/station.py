"""``asc-edge stream`` as a listening station: its network-source and result-output options.

The options (``--source``, ``--mqtt*``, ``--webhook*``) are defined here, and turned into
:class:`~edge.network_sources.NetworkSource` s and an :class:`Outputs` that fans every clip
summary out to MQTT and webhooks, so edge/cli.py and edge/stream_command.py only wire them
in. Lists that may hold secrets (a camera URL with its password, a webhook URL whose path is
its key) are never shown in ``--help``, unlike other options' values from the environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from asc.cli_options import EnvOptions, positive
from edge.cli_common import ENV_PREFIX
from edge.network_sources import SourceSpec, parse_sources

if TYPE_CHECKING:
    from edge.mqtt_out import MqttPublisher
    from edge.webhook_out import WebhookSender

EventCallback = Callable[[str, str], None]  # (who, message), as ConsoleReport.event takes


def _secret_list(
    opts: EnvOptions, flag: str, env: str, metavar: str, text: str, absent: str
) -> None:
    """A repeatable option whose environment variable holds a space-separated list; its
    help names the variable but never shows the value."""
    opts.parser.add_argument(
        flag,
        action="append",
        metavar=metavar,
        help=f"{text} (default: {absent}) [{opts.prefix}{env}, separated by spaces]",
    )
    opts.names.append((opts.prefix + env, f"{flag}, separated by spaces"))


def add_station_options(opts: EnvOptions) -> None:
    """Network sources, MQTT and webhooks for ``asc-edge stream``, in that order in --help."""
    _source_options(opts)
    _mqtt_connection_options(opts)
    _mqtt_topic_options(opts)
    _webhook_options(opts)


def _source_options(opts: EnvOptions) -> None:
    _secret_list(
        opts,
        "--source",
        "SOURCES",
        "NAME=URL",
        "a network source: a name of your choice (letters, digits, - or _; it names the "
        "results and the Home Assistant device) and a URL FFmpeg opens: rtsp://, rtsps://, "
        "http(s):// (Icecast, HLS)...; only its audio track is read; repeat for several "
        "sources at once",
        "none, files or --mic",
    )
    opts.add(
        "--source-timeout",
        env="SOURCE_TIMEOUT",
        type=positive(float),
        default=10.0,
        help="seconds a network source may take to connect or stay silent before it counts as "
        "lost and is reconnected",
    )
    opts.add(
        "--rtsp-transport",
        env="RTSP_TRANSPORT",
        choices=("tcp", "udp"),
        default="tcp",
        help="how rtsp:// sources carry RTP; tcp passes NAT and firewalls and loses nothing",
    )
    opts.add(
        "--source-ca",
        env="SOURCE_CA",
        metavar="PEM",
        help="check rtsps:// and https:// sources' certificates against this CA",
        absent="none: such sources are encrypted but their certificate is not checked",
    )


def _mqtt_connection_options(opts: EnvOptions) -> None:
    opts.add(
        "--mqtt",
        env="MQTT",
        metavar="URL",
        help="publish every clip summary to this MQTT broker, mqtt://HOST[:PORT] or "
        "mqtts://HOST[:PORT] (TLS), with Home Assistant discovery",
        absent="none, off",
    )
    opts.add(
        "--mqtt-username", env="MQTT_USERNAME", help="MQTT user name", absent="none, anonymous"
    )
    opts.add(
        "--mqtt-password-file",
        env="MQTT_PASSWORD_FILE",
        metavar="FILE",
        help="file whose first line is the MQTT password",
        absent="none",
    )
    opts.add(
        "--mqtt-ca",
        env="MQTT_CA",
        metavar="PEM",
        help="with mqtts://: trust this CA for the broker",
        absent="none, the system's CAs",
    )
    opts.add(
        "--mqtt-cert",
        env="MQTT_CERT",
        metavar="PEM",
        help="with mqtts://: this edge's client certificate",
        absent="none",
    )
    opts.add("--mqtt-key", env="MQTT_KEY", metavar="PEM", help="its private key", absent="none")


def _mqtt_topic_options(opts: EnvOptions) -> None:
    opts.add(
        "--mqtt-prefix",
        env="MQTT_PREFIX",
        default="asc",
        help="first level of every topic: PREFIX/DEVICE_ID/SOURCE/result, .../state, .../status",
    )
    opts.add(
        "--mqtt-discovery-prefix",
        env="MQTT_DISCOVERY_PREFIX",
        default="homeassistant",
        help="Home Assistant's discovery prefix",
    )
    opts.add(
        "--mqtt-no-discovery",
        env="MQTT_NO_DISCOVERY",
        action="store_true",
        help="publish no Home Assistant discovery messages",
        absent="off, discovery on",
    )
    opts.add(
        "--mqtt-queue",
        env="MQTT_QUEUE",
        type=positive(int),
        default=1000,
        help="messages held in memory while the broker is unreachable; past it new results "
        "are dropped (and counted)",
    )


def _webhook_options(opts: EnvOptions) -> None:
    _secret_list(
        opts,
        "--webhook",
        "WEBHOOKS",
        "URL",
        "POST every clip summary as JSON to this http(s):// URL, retried with backoff; repeat "
        "for several",
        "none, off",
    )
    opts.add(
        "--webhook-token-file",
        env="WEBHOOK_TOKEN_FILE",
        metavar="FILE",
        help="file holding a bearer token sent to every webhook (https:// only)",
        absent="none, no Authorization header",
    )
    opts.add(
        "--webhook-ca",
        env="WEBHOOK_CA",
        metavar="PEM",
        help="trust this CA for https:// webhooks",
        absent="none, the system's CAs",
    )
    opts.add(
        "--webhook-queue",
        env="WEBHOOK_QUEUE",
        type=positive(int),
        default=1000,
        help="results waiting per webhook; when full the oldest is dropped (and counted)",
    )
    opts.add(
        "--webhook-timeout",
        env="WEBHOOK_TIMEOUT",
        type=positive(float),
        default=10.0,
        help="seconds one POST may take before it counts as failed and is retried",
    )


def env_list(values: Sequence[str] | None, env: str) -> list[str]:
    """The command line's values, else the variable's space-separated ones."""
    if values:
        return list(values)
    return os.environ.get(ENV_PREFIX + env, "").split()


def source_specs(args: argparse.Namespace) -> list[SourceSpec]:
    return parse_sources(env_list(args.source, "SOURCES"))


class Outputs:
    """Where clip summaries go besides the console and JSONL: MQTT and webhooks."""

    def __init__(self, mqtt: MqttPublisher | None, webhooks: WebhookSender | None) -> None:
        self.mqtt, self.webhooks = mqtt, webhooks

    def result(self, record: dict[str, Any]) -> None:
        if record.get("type") != "summary":
            return  # windows stay in JSONL: one message per clip and source
        if self.mqtt is not None:
            self.mqtt.result(record)
        if self.webhooks is not None:
            self.webhooks.result(record)

    def source_status(self, source: str, online: bool) -> None:
        if self.mqtt is not None:
            self.mqtt.source_status(source, online)

    def close(self) -> None:
        if self.mqtt is not None:
            self.mqtt.close()
        if self.webhooks is not None:
            self.webhooks.close()


def open_outputs(
    args: argparse.Namespace,
    sources: Sequence[str],
    primary_path: str,
    on_event: EventCallback,
) -> Outputs:
    """MQTT and webhooks as the options ask; credential files are read here, before any
    audio is streamed, so a typo fails at once."""
    mqtt = webhooks = None
    if args.mqtt:
        from edge.mqtt_out import MqttPublisher

        mqtt = MqttPublisher(
            args.mqtt,
            args.device_id,
            sources,
            primary_path,
            username=args.mqtt_username,
            password_file=args.mqtt_password_file,
            ca=args.mqtt_ca,
            cert=args.mqtt_cert,
            key=args.mqtt_key,
            prefix=args.mqtt_prefix,
            discovery_prefix=args.mqtt_discovery_prefix,
            discovery=not args.mqtt_no_discovery,
            queue=args.mqtt_queue,
            on_event=lambda message: on_event("mqtt", message),
        )
    urls = env_list(args.webhook, "WEBHOOKS")
    if urls:
        from edge.webhook_out import WebhookSender

        webhooks = WebhookSender(
            urls,
            token_file=args.webhook_token_file,
            ca=args.webhook_ca,
            timeout=args.webhook_timeout,
            queue_size=args.webhook_queue,
            on_event=lambda message: on_event("webhook", message),
        )
    if mqtt is not None:
        mqtt.start()
    if webhooks is not None:
        webhooks.start()
    return Outputs(mqtt, webhooks)
