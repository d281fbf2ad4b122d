"""Only known devices: TLS, mutual TLS, bearer tokens, device ids, rate limits, message size.

Two real servers on loopback share the module, with credentials from `scripts/make-certs.sh`:
`tls` (server certificate, tokens, a rate limit, 1 MB messages) and `mtls` (client
certificates required, tokens too, Envoy trusted to forward a device's certificate).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from asc.audio import save
from asc.codecs.stream import StreamEncoder
from asc.signals import full_band_clip
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg
from server.access import (
    DeviceAccess,
    RateLimiter,
    TokenFile,
    add_device,
    forwarded_common_name,
    parse_tokens,
)
from server.session import StreamError
from tests.servers import REPO, start_server

RATE = 44100
DEVICES = ("edge-1", "edge-2", "edge-3")
CODE = grpc.StatusCode


def make_certs(out: Path, devices: str) -> Path:
    env = {**os.environ, "CERTS_DIR": str(out), "DEVICES": devices, "PY": sys.executable}
    subprocess.run(
        ["bash", "scripts/make-certs.sh"], cwd=REPO, env=env, check=True, capture_output=True
    )
    return out


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    return make_certs(tmp_path_factory.mktemp("pki") / "certs", " ".join(DEVICES))


@pytest.fixture(scope="module")
def rogue(tmp_path_factory) -> Path:
    """Another CA's certificates, with the same device names."""
    return make_certs(tmp_path_factory.mktemp("rogue") / "certs", "edge-1")


@pytest.fixture(scope="module")
def servers(certs):
    tls = ["--tls-cert", str(certs / "server.crt"), "--tls-key", str(certs / "server.key")]
    tokens = ["--tokens", str(certs / "tokens.txt")]
    common = ["--detector", "none", "--max-batch", "8"]
    with ThreadPoolExecutor(2) as pool:  # both load their models at once
        plain = pool.submit(
            start_server,
            *common, *tls, *tokens,
            "--rate-limit-kbps", "512", "--rate-limit-burst", "1", "--max-message-mb", "1",
        )  # fmt: skip
        mutual = pool.submit(
            start_server,
            *common, *tls, *tokens,
            "--tls-client-ca", str(certs / "ca.crt"), "--trusted-proxies", "envoy",
        )  # fmt: skip
        started = {"tls": plain.result(), "mtls": mutual.result()}
    yield started
    for process in started.values():
        process.stop()


@pytest.fixture(scope="module")
def tls(servers):
    return servers["tls"]


@pytest.fixture(scope="module")
def mtls(servers):
    return servers["mtls"]


def token(certs: Path, device: str) -> str:
    return (certs / f"{device}.token").read_text().strip()


def credentials(certs: Path, client: str | None = None, ca: Path | None = None):
    key = cert = None
    if client is not None:
        key, cert = (certs / f"{client}.key").read_bytes(), (certs / f"{client}.crt").read_bytes()
    root = (ca or certs / "ca.crt").read_bytes()
    return grpc.ssl_channel_credentials(root, private_key=key, certificate_chain=cert)


def requests(device: str, codec: str = "opus:32k", seconds: float = 2.0, clip_id: str = "c1"):
    yield pb.StreamRequest(
        config=pb.StreamConfig(device_id=device, codec=codec, sample_rate=RATE, channels=1)
    )
    pcm = full_band_clip(RATE, seconds=seconds, channels=1, seed=7)
    encoder, step = StreamEncoder(codec, RATE, 1), RATE // 5
    sequence = 0
    for i in range(0, len(pcm), step):
        payload = encoder.encode(pcm[i : i + step])
        yield pb.StreamRequest(
            packet=pb.AudioPacket(sequence=sequence, clip_id=clip_id, payload=payload)
        )
        sequence += 1
    packet = pb.AudioPacket(
        sequence=sequence, clip_id=clip_id, payload=encoder.finish(), end_of_clip=True
    )
    yield pb.StreamRequest(packet=packet)


def stream(
    target: str,
    creds,
    device: str,
    bearer: str | None = None,
    extra: tuple = (),
    **kw,
) -> tuple[list[pb.SceneResult], grpc.StatusCode]:
    """Results and the status the stream ended with (OK when it ended cleanly)."""
    metadata = [*extra] + ([("authorization", f"Bearer {bearer}")] if bearer is not None else [])
    channel = grpc.insecure_channel(target) if creds is None else grpc.secure_channel(target, creds)
    results = []
    with channel:
        call = pbg.SceneClassifierStub(channel).StreamScenes(
            requests(device, **kw), metadata=metadata, timeout=60
        )
        try:
            results.extend(call)
        except grpc.RpcError as e:
            return results, e.code()
    return results, CODE.OK


def summaries(results) -> list[pb.SceneResult]:
    return [r for r in results if r.clip_summary]


# -- TLS and tokens ------------------------------------------------------------------------------


def test_tls_with_the_devices_token_gets_results(tls, certs):
    results, code = stream(tls.target, credentials(certs), "edge-1", token(certs, "edge-1"))
    assert code == CODE.OK
    assert [r.clip_id for r in summaries(results)] == ["c1"]


def test_plaintext_is_refused_on_a_tls_port(tls, certs):
    results, code = stream(tls.target, None, "edge-1", token(certs, "edge-1"))
    assert code == CODE.UNAVAILABLE and not results


def test_a_server_certificate_from_another_ca_is_refused_by_the_device(tls, certs, rogue):
    creds = credentials(certs, ca=rogue / "ca.crt")
    results, code = stream(tls.target, creds, "edge-1", token(certs, "edge-1"))
    assert code == CODE.UNAVAILABLE and not results


@pytest.mark.parametrize(
    "bearer",
    [None, "", "not-a-token", "x" * 43],
    ids=["missing", "empty", "wrong", "wrong-length"],
)
def test_missing_or_wrong_token_is_unauthenticated(tls, certs, bearer):
    results, code = stream(tls.target, credentials(certs), "edge-1", bearer)
    assert code == CODE.UNAUTHENTICATED and not results


def test_other_scheme_or_another_servers_token_is_unauthenticated(tls, certs, rogue):
    theirs = token(rogue, "edge-1")  # a well-formed token, from another tokens file
    for metadata in ([("authorization", f"Bearer {theirs}")], [("authorization", "Basic YTpi")]):
        results, code = stream(tls.target, credentials(certs), "edge-1", extra=tuple(metadata))
        assert code == CODE.UNAUTHENTICATED and not results


def test_a_devices_token_with_another_device_id_is_permission_denied(tls, certs):
    results, code = stream(tls.target, credentials(certs), "edge-2", token(certs, "edge-1"))
    assert code == CODE.PERMISSION_DENIED and not results


def test_unary_calls_need_the_token_too(tls, certs):
    with grpc.secure_channel(tls.target, credentials(certs)) as channel:
        stub = pbg.SceneClassifierStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetInfo(pb.InfoRequest(), timeout=10)
        assert info.value.code() == CODE.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            stub.ClassifyClip(pb.ClipRequest(clip_id="x", data=b"abc"), timeout=10)
        assert info.value.code() == CODE.UNAUTHENTICATED
        auth = [("authorization", f"Bearer {token(certs, 'edge-1')}")]
        assert stub.GetInfo(pb.InfoRequest(), metadata=auth, timeout=10).server_version


def test_an_oversized_message_is_refused(tls, certs):
    auth = [("authorization", f"Bearer {token(certs, 'edge-1')}")]
    with (
        grpc.secure_channel(tls.target, credentials(certs)) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        pbg.SceneClassifierStub(channel).ClassifyClip(
            pb.ClipRequest(clip_id="big", data=bytes(2 * 1024 * 1024)),
            metadata=auth,
            timeout=10,
        )
    assert info.value.code() == CODE.RESOURCE_EXHAUSTED


def test_rate_limit_stops_one_device_while_another_streams_on(tls, certs):
    """edge-3 sends PCM as fast as it can (far over 512 kbit/s); edge-2 sends Opus meanwhile."""
    outcome = {}

    def flood():
        outcome["flood"] = stream(
            tls.target,
            credentials(certs),
            "edge-3",
            token(certs, "edge-3"),
            codec="pcm16",
            seconds=6,
        )

    flooder = threading.Thread(target=flood)
    flooder.start()
    results, code = stream(tls.target, credentials(certs), "edge-2", token(certs, "edge-2"))
    flooder.join(60)
    assert code == CODE.OK and len(summaries(results)) == 1
    flood_results, flood_code = outcome["flood"]
    assert flood_code == CODE.RESOURCE_EXHAUSTED and not summaries(flood_results)
    assert 'asc_access_denied_total{reason="rate_limited"}' in tls.metrics()


def test_edge_cli_streams_and_classifies_over_tls_with_its_token(tls, certs, tmp_path):
    save(tmp_path / "clip.wav", full_band_clip(RATE, 3.0, 1, seed=3), RATE)
    auth = ["--tls-ca", str(certs / "ca.crt"), "--token-file", str(certs / "edge-2.token")]
    common = ["--server", tls.target, "--codec", "opus:32k", *auth]
    streamed = edge("stream", *common, "--device-id", "edge-2", str(tmp_path / "clip.wav"))
    assert streamed.returncode == 0, streamed.stderr
    assert "clip" in streamed.stdout
    classified = edge("classify", str(tmp_path / "clip.wav"), *common)
    assert classified.returncode == 0, classified.stderr
    for run in (streamed, classified):
        assert token(certs, "edge-2") not in run.stdout + run.stderr
    # No token: the server's refusal, in one line, exit code 2.
    refused = edge("classify", str(tmp_path / "clip.wav"), "--server", tls.target,
                   "--codec", "opus:32k", "--tls-ca", str(certs / "ca.crt"))  # fmt: skip
    assert refused.returncode == 2 and "UNAUTHENTICATED" in refused.stderr


def test_edge_cli_names_a_missing_credential_file(tmp_path, certs):
    missing = tmp_path / "nope.token"
    run = edge("classify", str(REPO / "samples" / "park.flac"), "--server", "127.0.0.1:1",
               "--codec", "opus:32k", "--tls-ca", str(certs / "ca.crt"),
               "--token-file", str(missing))  # fmt: skip
    assert run.returncode == 2 and str(missing) in run.stderr
    assert run.stderr.count("\n") == 1
    run = edge("classify", str(REPO / "samples" / "park.flac"), "--server", "127.0.0.1:1",
               "--codec", "opus:32k", "--token-file", str(certs / "edge-1.token"))  # fmt: skip
    assert run.returncode == 2 and "needs TLS" in run.stderr


def test_health_and_info_over_tls(tls, mtls, certs):
    ca = ["--tls-ca", str(certs / "ca.crt")]
    assert server_cli("health", "--server", tls.target, *ca).returncode == 0
    assert server_cli("health", "--server", tls.target).returncode == 1  # plaintext: refused
    info = server_cli("info", "--server", tls.target, *ca,
                      "--token-file", str(certs / "edge-1.token"))  # fmt: skip
    assert info.returncode == 0 and '"server_version"' in info.stdout
    denied = server_cli("info", "--server", tls.target, *ca)
    assert denied.returncode == 2 and "UNAUTHENTICATED" in denied.stderr
    # The compose healthcheck under mutual TLS: no flags, the serve environment plus a CA.
    env = {
        "ASC_TLS_CA": str(certs / "ca.crt"),
        "ASC_TLS_CERT": str(certs / "server.crt"),
        "ASC_TLS_KEY": str(certs / "server.key"),
    }
    healthy = server_cli("health", "--server", mtls.target, env=env)
    assert healthy.returncode == 0 and "SERVING" in healthy.stdout
    assert server_cli("health", "--server", mtls.target, *ca).returncode == 1  # no certificate


# -- mutual TLS ----------------------------------------------------------------------------------


def test_mtls_refuses_a_client_without_a_certificate(mtls, certs):
    results, code = stream(mtls.target, credentials(certs), "edge-1", token(certs, "edge-1"))
    assert code == CODE.UNAVAILABLE and not results


def test_mtls_refuses_a_certificate_signed_by_another_ca(mtls, certs, rogue):
    creds = grpc.ssl_channel_credentials(
        (certs / "ca.crt").read_bytes(),
        private_key=(rogue / "edge-1.key").read_bytes(),
        certificate_chain=(rogue / "edge-1.crt").read_bytes(),
    )
    results, code = stream(mtls.target, creds, "edge-1", token(certs, "edge-1"))
    assert code == CODE.UNAVAILABLE and not results


def test_mtls_binds_the_certificate_to_its_device_and_token(mtls, certs):
    creds = credentials(certs, "edge-1")
    results, code = stream(mtls.target, creds, "edge-1", token(certs, "edge-1"))
    assert code == CODE.OK and len(summaries(results)) == 1
    for device, bearer, expected in [
        ("edge-2", token(certs, "edge-1"), CODE.PERMISSION_DENIED),  # another device's id
        ("edge-2", token(certs, "edge-2"), CODE.PERMISSION_DENIED),  # another device's token
        ("edge-1", token(certs, "edge-2"), CODE.PERMISSION_DENIED),
        ("edge-1", None, CODE.UNAUTHENTICATED),  # certificate alone: the token is required
    ]:
        results, code = stream(mtls.target, creds, device, bearer)
        assert (code, results) == (expected, []), (device, expected)


def test_only_a_trusted_proxy_may_forward_a_devices_certificate(mtls, certs):
    forwarded = (("x-forwarded-client-cert", 'Hash=00;Subject="CN=edge-2,O=asc-stream"'),)
    via_envoy = credentials(certs, "envoy")
    results, code = stream(
        mtls.target, via_envoy, "edge-2", token(certs, "edge-2"), extra=forwarded
    )
    assert code == CODE.OK and len(summaries(results)) == 1
    # A device forging the header is still itself.
    results, code = stream(
        mtls.target, credentials(certs, "edge-1"), "edge-2", token(certs, "edge-1"), extra=forwarded
    )
    assert code == CODE.PERMISSION_DENIED and not results
    # Envoy without a forwarded certificate speaks for nobody.
    results, code = stream(mtls.target, via_envoy, "edge-2", token(certs, "edge-2"))
    assert code == CODE.UNAUTHENTICATED and not results


def test_edge_cli_with_a_client_certificate(mtls, certs, tmp_path):
    save(tmp_path / "clip.wav", full_band_clip(RATE, 2.0, 1, seed=4), RATE)
    run = edge(
        "stream", "--server", mtls.target, "--codec", "opus:32k", "--device-id", "edge-3",
        "--tls-ca", str(certs / "ca.crt"), "--tls-cert", str(certs / "edge-3.crt"),
        "--tls-key", str(certs / "edge-3.key"), "--token-file", str(certs / "edge-3.token"),
        str(tmp_path / "clip.wav"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


# -- what must never show --------------------------------------------------------------------


def test_tokens_never_reach_logs_or_metrics(tls, mtls, certs):
    """Runs last: by now both servers have logged refusals of every kind."""
    secrets = [token(certs, d) for d in DEVICES]
    for process in (tls, mtls):
        log, metrics = process.stderr(), process.metrics()
        assert "access denied" in log  # the refusals were logged, without the tokens
        for secret in [*secrets, "not-a-token"]:
            assert secret not in log and secret not in metrics
        assert "asc_access_denied_total" in metrics
    metrics = tls.metrics()
    for reason in ("no_token", "bad_token", "wrong_device", "rate_limited"):
        assert f'asc_access_denied_total{{reason="{reason}"}}' in metrics


# -- units ---------------------------------------------------------------------------------------


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(kbps=8, packets=0, burst_seconds=1, clock=lambda: now[0])  # 1000 B/s
    assert limiter.admit("a", 1500)  # a full bucket takes one message larger than itself
    assert not limiter.admit("a", 1) and limiter.admit("b", 10)
    now[0] = 0.4  # 400 B back: still 100 B in debt
    assert not limiter.admit("a", 1)
    now[0] = 0.6
    assert limiter.admit("a", 1)
    packets = RateLimiter(packets=2, burst_seconds=1, clock=lambda: now[0])
    assert packets.admit("a", 0) and packets.admit("a", 0) and not packets.admit("a", 0)


def test_tokens_file_errors_name_the_line_but_never_quote_it(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("# devices\nedge-1 sha256:" + "0" * 64 + "\nedge-2 plain-secret-token\n")
    with pytest.raises(ValueError, match=r"tokens.txt:3") as info:
        parse_tokens(path)
    assert "plain-secret-token" not in str(info.value)


class FakeContext:
    def __init__(self, metadata=(), cn: str | None = None):
        self.metadata, self.cn = tuple(metadata), cn

    def invocation_metadata(self):
        return self.metadata

    def auth_context(self):
        return {"x509_common_name": [self.cn.encode()]} if self.cn else {}

    def peer(self):
        return "ipv4:127.0.0.1:1"


def test_identity_from_a_certificate_alone_or_a_token_alone(tmp_path):
    path = tmp_path / "tokens.txt"
    secret = add_device(path, "edge-9")
    assert path.stat().st_mode & 0o777 == 0o600
    by_cert = DeviceAccess(client_certs=True)
    assert by_cert.authenticate(FakeContext(cn="edge-8")) == "edge-8"
    by_token = DeviceAccess(tokens=TokenFile(path))
    assert by_token.authenticate(FakeContext([("authorization", f"bearer {secret}")])) == "edge-9"
    by_token.authorize("edge-9", "edge-9")
    with pytest.raises(StreamError) as info:
        by_token.authorize("edge-9", "edge-8")
    assert info.value.code == CODE.PERMISSION_DENIED
    path.write_text("")  # revoked: the file is read again when it changes
    with pytest.raises(StreamError) as info:
        by_token.authenticate(FakeContext([("authorization", f"Bearer {secret}")]))
    assert info.value.code == CODE.UNAUTHENTICATED and secret not in info.value.message


def test_serve_refuses_bad_security_flags_before_loading_models(tmp_path, certs, capsys):
    from server.cli import main

    bad_tokens = tmp_path / "tokens.txt"
    bad_tokens.write_text("edge-1 my-plain-token\n")
    base = ["serve", "--port", "0", "--metrics-port", "0", "--ensemble", str(tmp_path / "none")]
    cases = [
        (["--tls-cert", str(certs / "server.crt")], "--tls-key"),
        (["--tls-cert", str(tmp_path / "x.crt"), "--tls-key", str(certs / "server.key")], "x.crt"),
        (["--tls-client-ca", str(certs / "ca.crt")], "--tls-cert"),
        (["--tokens", str(bad_tokens)], "tokens.txt:1"),
        (["--trusted-proxies", "envoy"], "--tls-client-ca"),
    ]
    for flags, named in cases:
        assert main([*base, *flags]) == 2
        err = capsys.readouterr().err
        assert named in err and "my-plain-token" not in err, err


def test_forwarded_subject_parsing():
    class Context:
        def __init__(self, value):
            self.value = value

        def invocation_metadata(self):
            return (("x-forwarded-client-cert", self.value),)

    assert forwarded_common_name(Context('Hash=1;Subject="CN=kit-1,O=a\\,b"')) == "kit-1"
    assert forwarded_common_name(Context('Subject="O=asc-stream,CN=kit-2"')) == "kit-2"
    assert forwarded_common_name(Context('Subject="CN=a",Subject="CN=b"')) is None  # a chain
    assert forwarded_common_name(Context("Hash=1")) is None


# -- helpers -------------------------------------------------------------------------------------


def edge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASC_EDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def server_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASC_")}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**clean, **(env or {})},
    )  # fmt: skip
