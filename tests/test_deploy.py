"""The operators' stack, checked where no Docker engine runs.

Static checks: the compose files against the Compose Specification's schema, every build
context, Dockerfile, copied path, mounted config and provisioned file, entrypoints that are
console scripts of this repository, `promtool` on the Prometheus config and on every dashboard
query, the Envoy config's shape, the Kubernetes example, and the README's table of variables.

Live checks: the commands the compose services `server` and `edge-sim` run (the CPU variant)
start here as local processes on loopback; results and metrics flow, the compose healthcheck
passes, every metric the Grafana dashboard queries is one the running server exports, and, with
Debian's `prometheus` installed, a real Prometheus scrapes the server and answers every
dashboard query.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from urllib.parse import quote
from urllib.request import urlopen

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
COMPOSE_TLS = ROOT / "docker-compose.tls.yml"
SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "asc-stream.json"
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ENVOY_YAML = ROOT / "deploy" / "envoy" / "envoy.yaml"
ENVOY_TLS_YAML = ROOT / "deploy" / "envoy" / "envoy-tls.yaml"
K8S = ROOT / "deploy" / "k8s"
SERVICES = {"server", "edge-sim", "envoy", "prometheus", "grafana"}
IMAGE_WORKDIR = "/app"  # WORKDIR of both images: the repository root's stand-in

# ---------------------------------------------------------------------------------------------
# Compose files as Compose reads them: YAML with !reset/!override, merged, then interpolated.


class _Reset:
    """A value tagged `!reset`: the override removes the key."""


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
_ComposeLoader.add_constructor(
    "!override",
    lambda loader, node: {"__override__": loader.construct_object(node, deep=True)},
)


def load_yaml(path: Path):
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # a SafeLoader subclass


def merge(base, override):
    """Compose's merge: mappings merge key by key, `!reset` removes, `!override` replaces.

    Sequences of scalars under the keys Compose merges (ports, volumes, ...) are not used by our
    override, which replaces `deploy` and merges `environment`, so lists simply replace here.
    """
    if isinstance(override, dict) and "__override__" in override:
        return override["__override__"]
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, _Reset):
            out.pop(key, None)
        elif key in out:
            out[key] = merge(out[key], value)
        else:
            out[key] = merge({}, value) if isinstance(value, dict) else value
    return out


_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[^}]+)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, env: dict[str, str]):
    """`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `$VAR` and `$$`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        expr = match.group("braced") or match.group("named")
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?", expr, re.S)
        assert m, f"bad interpolation ${{{expr}}}"
        name, op, arg = m.groups()
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return interpolate(arg, env) if unset else current
        if op in (":?", "?"):
            assert current, f"{name} must be set: {arg}"
        return current or ""

    return _VAR.sub(one, value)


def variables_in(path: Path) -> set[str]:
    text = "\n".join(line.split(" #")[0] for line in path.read_text().splitlines())
    return {m.group(1) for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)}


def compose_model(*files: Path, env: dict[str, str] | None = None) -> dict:
    model: dict = {}
    for path in files or (COMPOSE,):
        model = merge(model, load_yaml(path))
    return interpolate(model, env or {})


VARIANTS = {"gpu": (COMPOSE,), "cpu": (COMPOSE, COMPOSE_CPU), "tls": (COMPOSE, COMPOSE_TLS)}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request) -> tuple[str, dict]:
    return request.param, compose_model(*VARIANTS[request.param])


@pytest.fixture(scope="module")
def gpu_model() -> dict:
    return compose_model(*VARIANTS["gpu"])


@pytest.fixture(scope="module")
def cpu_model() -> dict:
    return compose_model(*VARIANTS["cpu"])


# ---------------------------------------------------------------------------------------------
# The compose files


def test_compose_files_match_the_compose_specification(variant):
    name, model = variant
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(model)
    ]
    assert not errors, f"{name} variant:\n" + "\n".join(errors)


def test_the_schema_check_catches_mistakes(gpu_model):
    """The vendored schema is strict where it matters: a typo'd key, a GPU without capabilities."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    typo = json.loads(json.dumps(gpu_model))
    typo["services"]["server"]["healthchek"] = typo["services"]["server"].pop("healthcheck")
    assert any("healthchek" in e.message for e in validator.iter_errors(typo))
    no_caps = json.loads(json.dumps(gpu_model))
    devices = no_caps["services"]["server"]["deploy"]["resources"]["reservations"]["devices"]
    devices[0].pop("capabilities")
    assert any("capabilities" in e.message for e in validator.iter_errors(no_caps))


def test_vendored_schema_is_the_documented_copy():
    import hashlib

    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert digest in (SCHEMA.parent / "README.md").read_text()
    assert "Apache License" in (SCHEMA.parent / "compose-spec.LICENSE").read_text()


def test_services_and_how_they_connect(gpu_model):
    services = gpu_model["services"]
    assert set(services) == SERVICES
    server, envoy, edge = services["server"], services["envoy"], services["edge-sim"]

    # Scalable: no fixed host port or container name on the server; Envoy publishes the port.
    assert "ports" not in server and "container_name" not in server
    grpc_port, metrics_port = (
        server["environment"]["ASC_PORT"],
        server["environment"]["ASC_METRICS_PORT"],
    )
    assert {str(grpc_port), str(metrics_port)} <= {str(p) for p in server["expose"]}
    published = [str(p).split(":")[-1] for p in envoy["ports"]]
    assert str(grpc_port) in published

    # GPU reservation on the default stack.
    devices = server["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]

    # The healthcheck asks the gRPC health service through the server's own CLI.
    test = server["healthcheck"]["test"]
    assert test[:3] == ["CMD", "asc-server", "health"]
    assert test[test.index("--server") + 1].endswith(f":{grpc_port}")

    # Devices go through Envoy, never straight to one replica.
    command = edge["command"]
    target = next(a.split("=", 1)[1] for a in command if a.startswith("--server="))
    assert target == f"envoy:{envoy_listener_port()}"
    assert edge["depends_on"]["server"]["condition"] == "service_healthy"
    assert "--loop" in command and "--labels-from=samples/meta.csv" in command
    assert sum(a.startswith("--codec=") for a in command) >= 4

    # Third-party images are pinned; ours are built here.
    for name in ("envoy", "prometheus", "grafana"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), image
    assert "build" in server and "build" in edge


def test_cpu_variant_drops_the_gpu_and_runs_on_cpu(cpu_model, gpu_model):
    server = cpu_model["services"]["server"]
    assert "deploy" not in server
    assert server["environment"]["ASC_DEVICE"] == "cpu"
    assert server["image"] == gpu_model["services"]["server"]["image"]  # one image for both
    assert set(cpu_model["services"]) == SERVICES


# ---------------------------------------------------------------------------------------------
# Build contexts, Dockerfiles and images


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec (JSON) form: {args}"
    return json.loads(args)


def dockerignore_patterns(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(relpath: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is excluded when it or a parent folder matches (last match wins)."""
    parts = Path(relpath).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!"))
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def built_services(model: dict) -> dict[str, tuple[Path, Path]]:
    out = {}
    for name, service in model["services"].items():
        if "build" in service:
            build = service["build"]
            context = (ROOT / (build if isinstance(build, str) else build["context"])).resolve()
            dockerfile = context / (
                build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            )
            out[name] = (context, dockerfile)
    return out


def console_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_build_contexts_dockerfiles_and_copied_paths_exist(gpu_model):
    built = built_services(gpu_model)
    assert set(built) == {"server", "edge-sim"}
    for name, (context, dockerfile) in built.items():
        assert context.is_dir(), f"{name}: build context {context} is missing"
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        patterns = dockerignore_patterns(context)
        for word, args in dockerfile_instructions(dockerfile):
            if word not in ("COPY", "ADD"):
                continue
            if any(p.startswith("--from=") for p in shlex.split(args)):
                continue  # from an earlier build stage, not from the context
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            for source in parts[:-1]:
                assert (context / source).exists(), f"{dockerfile.name}: COPY {source} is missing"
                assert not ignored(source.rstrip("/"), patterns), (
                    f"{dockerfile.relative_to(ROOT)}: COPY {source} is excluded by .dockerignore"
                )


def test_secrets_and_local_state_stay_out_of_the_images():
    patterns = dockerignore_patterns(ROOT)
    secret = ("secrets", "certs", "tls/server.key", "a/b.pem", ".env")
    for path in (".git", ".venv", "data", ".cache", *secret):
        assert ignored(path, patterns), f"{path} would be sent to the Docker build"
    for path in ("models/ensemble.safetensors", "samples/meta.csv", "asc/codecs", "proto"):
        assert not ignored(path, patterns), f"{path} is needed in an image"
    for dockerfile in (ROOT / "server" / "Dockerfile", ROOT / "edge" / "Dockerfile"):
        for word, args in dockerfile_instructions(dockerfile):
            assert not re.search(r"(?i)(token|passw|secret|\.key\b|\.pem\b)", args), (
                f"{dockerfile.relative_to(ROOT)}: {word} {args}"
            )


def test_entrypoints_are_console_scripts_of_this_repo(gpu_model):
    scripts = console_scripts()
    extras = {"server": "server", "edge-sim": "edge"}
    for name, (_, dockerfile) in built_services(gpu_model).items():
        instructions = dockerfile_instructions(dockerfile)
        entry = [exec_form(a) for w, a in instructions if w == "ENTRYPOINT"]
        assert len(entry) == 1, f"{dockerfile}: one ENTRYPOINT"
        assert entry[0][0] in scripts, f"{dockerfile}: {entry[0][0]} is not in [project.scripts]"
        for word, args in instructions:
            if word == "HEALTHCHECK":
                cmd = exec_form(args.split(" CMD ", 1)[1])
                assert cmd[0] in scripts, f"{dockerfile}: healthcheck runs {cmd[0]}"
        installs = " ".join(a for w, a in instructions if w == "RUN" and "pip install" in a)
        assert f'".[{extras[name]}]"' in installs, f"{dockerfile}: installs .[{extras[name]}]"
    healthcheck = gpu_model["services"]["server"]["healthcheck"]["test"]
    assert healthcheck[1] in scripts


def lock_install(instructions: list[tuple[str, str]]) -> str:
    """The requirements file a Dockerfile installs with `pip install --require-hashes -r`."""
    copies = {}
    for word, args in instructions:
        if word == "COPY" and "requirements/" in args:
            source, target = shlex.split(args)[-2:]
            copies[target] = source
    (run,) = [a for w, a in instructions if w == "RUN" and "--require-hashes" in a]
    target = re.search(r"--require-hashes -r (\S+)", run).group(1)
    return copies[target]


def test_images_install_from_the_lock_on_a_python_base():
    for name, lock in (("server", "requirements/server.txt"), ("edge", "requirements/edge.txt")):
        instructions = dockerfile_instructions(ROOT / name / "Dockerfile")
        base = next(a for w, a in instructions if w == "ARG" and a.startswith("BASE_IMAGE="))
        assert base == "BASE_IMAGE=python:3.11-slim-bookworm", f"{name}: {base}"
        assert all(a.split()[0] == "${BASE_IMAGE}" for w, a in instructions if w == "FROM")
        assert lock_install(instructions) == lock, f"{name}/Dockerfile does not install {lock}"
        installs = [a for w, a in instructions if w == "RUN" and "pip install" in a]
        assert any("--no-deps" in a for a in installs), f"{name}: the project with --no-deps"


def test_server_image_carries_torch_2_11_and_the_models():
    env = dockerfile_env(ROOT / "server" / "Dockerfile")
    for var in ("ASC_ENSEMBLE", "ASC_DETECTOR"):
        assert in_repo(env[var]).is_file(), f"{var}={env[var]} is not in the image"
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "torch==2.11.0" in pins["server"] and "torchaudio==2.11.0" in pins["server"]
    lock = (ROOT / "requirements" / "server.txt").read_text()
    for package in ("torch", "torchaudio"):
        assert re.search(rf"^{package}==2\.11\.0 ", lock, re.M), f"{package} 2.11.0 in the lock"


def test_edge_image_has_no_torch():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert not [d for d in extras["edge"] if re.match(r"torch|torchaudio", d)]
    instructions = dockerfile_instructions(ROOT / "edge" / "Dockerfile")
    assert not any("torch" in a and w == "RUN" and "find_spec" not in a for w, a in instructions)
    lock = (ROOT / "requirements" / "edge.txt").read_text()
    assert not re.search(r"^(torch|torchaudio|nvidia-)", lock, re.M)


def dockerfile_env(path: Path) -> dict[str, str]:
    env = {}
    for word, args in dockerfile_instructions(path):
        if word == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def in_repo(image_path: str) -> Path:
    """Where a path inside an image (under WORKDIR /app) lies in this checkout."""
    assert image_path.startswith(IMAGE_WORKDIR + "/"), image_path
    return ROOT / image_path[len(IMAGE_WORKDIR) + 1 :]


# ---------------------------------------------------------------------------------------------
# Mounted configuration: Prometheus, Envoy, Grafana


def bind_mounts(service: dict) -> list[tuple[Path, str]]:
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out.append(((ROOT / source).resolve(), target))
    return out


def test_every_mounted_config_exists_and_is_read_only(gpu_model):
    mounts = 0
    for name, service in gpu_model["services"].items():
        for source, _ in bind_mounts(service):
            mounts += 1
            assert source.exists(), f"{name}: mounts {source}, which is missing"
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and volume.startswith("./"):
                assert volume.endswith(":ro"), f"{name}: mount configuration read-only: {volume}"
    assert mounts >= 4


def container_path(model: dict, service: str, target: str) -> Path | None:
    """The host path that a service sees at `target` through its bind mounts."""
    for source, mount in bind_mounts(model["services"][service]):
        if target == mount or target.startswith(mount.rstrip("/") + "/"):
            return source / target[len(mount) :].lstrip("/")
    return None


def test_prometheus_config_passes_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is absent (Debian package prometheus; `make setup` installs it)")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_finds_every_server_replica_and_envoy(gpu_model):
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    server = gpu_model["services"]["server"]
    dns = jobs["asc-server"]["dns_sd_configs"][0]
    assert dns["names"] == ["server"] and dns["type"] == "A"  # one record per replica
    assert str(dns["port"]) == str(server["environment"]["ASC_METRICS_PORT"])
    envoy_target = jobs["envoy"]["static_configs"][0]["targets"][0]
    admin = yaml.safe_load(ENVOY_YAML.read_text())["admin"]["address"]["socket_address"]
    assert envoy_target == f"envoy:{admin['port_value']}"
    assert (
        container_path(gpu_model, "prometheus", "/etc/prometheus/prometheus.yml") == PROMETHEUS_YML
    )


def envoy_listener_port() -> int:
    config = yaml.safe_load(ENVOY_YAML.read_text())
    (listener,) = config["static_resources"]["listeners"]
    return listener["address"]["socket_address"]["port_value"]


def test_envoy_balances_grpc_streams_over_http2(gpu_model):
    config = yaml.safe_load(ENVOY_YAML.read_text())
    assert container_path(gpu_model, "envoy", "/etc/envoy/envoy.yaml") == ENVOY_YAML
    (listener,) = config["static_resources"]["listeners"]
    (hcm,) = listener["filter_chains"][0]["filters"]
    assert hcm["name"] == "envoy.filters.network.http_connection_manager"
    typed = hcm["typed_config"]
    assert typed["@type"].endswith("http_connection_manager.v3.HttpConnectionManager")
    assert "http2_protocol_options" in typed
    assert [f["name"] for f in typed["http_filters"]][-1] == "envoy.filters.http.router"
    routes = typed["route_config"]["virtual_hosts"][0]["routes"]
    assert all(r["route"]["timeout"] == "0s" for r in routes)  # streams have no deadline
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert {r["route"]["cluster"] for r in routes} <= set(clusters)

    cluster = clusters["asc_server"]
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert options["@type"].endswith("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    assert "http2_protocol_options" in options["explicit_http_config"]  # HTTP/2 upstream
    assert cluster["type"] == "STRICT_DNS"  # every replica's address, re-resolved
    assert cluster["lb_policy"] in ("LEAST_REQUEST", "ROUND_ROBIN", "RANDOM")
    assert "grpc_health_check" in cluster["health_checks"][0]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    address = endpoint["address"]["socket_address"]
    server_env = gpu_model["services"]["server"]["environment"]
    assert address["address"] == "server"
    assert str(address["port_value"]) == str(server_env["ASC_PORT"])


def _type_urls(node) -> set[str]:
    if isinstance(node, dict):
        found = {node["@type"]} if "@type" in node else set()
        return found.union(*(_type_urls(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_type_urls(v) for v in node))
    return set()


@pytest.mark.parametrize("path", [ENVOY_YAML, ENVOY_TLS_YAML], ids=lambda p: p.name)
def test_envoy_config_is_valid_against_envoys_api(path):
    """Every field, enum and typed config of envoy.yaml, read as Envoy's v3 Bootstrap message."""
    pytest.importorskip("envoy_data_plane", reason="envoy-data-plane (a dev dependency) is absent")
    import importlib
    import warnings

    config = yaml.safe_load(path.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the library's own import-time deprecation noise
        from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap

        for url in _type_urls(config):  # importing a package registers its types for Any
            package = url.removeprefix("type.googleapis.com/").rsplit(".", 1)[0]
            importlib.import_module(f"envoy_data_plane.{package}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bootstrap = Bootstrap.from_dict(config)
    deprecated = [str(w.message) for w in caught if "deprecated" in str(w.message)]
    assert not deprecated, f"envoy.yaml uses deprecated fields: {deprecated}"
    assert [c.name for c in bootstrap.static_resources.clusters] == ["asc_server"]
    typo = yaml.safe_load(path.read_text())
    typo["static_resources"]["clusters"][0]["lb_polcy"] = "ROUND_ROBIN"
    with pytest.raises(KeyError, match="lb_polcy"):
        Bootstrap.from_dict(typo)


def test_tls_override_mounts_every_credential_it_names():
    """docker-compose.tls.yml: each /run/secrets path a service's environment or Envoy's TLS
    config names is a secret of that service, from a file `make certs` writes; the rest of the
    stack stays envoy.yaml's."""
    model = compose_model(COMPOSE, COMPOSE_TLS)
    made = {"ca.crt", "server.crt", "server.key", "envoy.crt", "envoy.key", "tokens.txt"}
    made |= {f"edge-sim.{ext}" for ext in ("crt", "key", "token")}
    for name, secret in model["secrets"].items():
        assert secret["file"] == f"./certs/{name}" and name in made, name
    envoy_tls = container_path(model, "envoy", "/etc/envoy/envoy.yaml")
    assert envoy_tls == ENVOY_TLS_YAML
    for name, service in model["services"].items():
        named = set(re.findall(r"/run/secrets/([\w.-]+)", json.dumps(service.get("environment"))))
        if name == "envoy":
            named |= set(re.findall(r"/run/secrets/([\w.-]+)", ENVOY_TLS_YAML.read_text()))
        assert named <= set(service.get("secrets", [])), f"{name}: {named}"
    server_env = model["services"]["server"]["environment"]
    assert set(server_env) <= server_env_vars() and "ASC_TOKENS" in server_env
    assert set(model["services"]["edge-sim"]["environment"]) <= edge_env_vars()
    plain, tls = yaml.safe_load(ENVOY_YAML.read_text()), yaml.safe_load(ENVOY_TLS_YAML.read_text())
    tls["static_resources"]["clusters"][0].pop("transport_socket")
    tls["static_resources"]["listeners"][0]["filter_chains"][0].pop("transport_socket")
    hcm = tls["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert hcm["typed_config"].pop("forward_client_cert_details") == "SANITIZE_SET"
    hcm["typed_config"].pop("set_current_client_cert_details")
    assert tls == plain


def test_grafana_provisions_prometheus_and_the_dashboard(gpu_model):
    provisioning = container_path(gpu_model, "grafana", "/etc/grafana/provisioning")
    assert provisioning is not None and provisioning.is_dir()
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    prometheus_port = gpu_model["services"]["prometheus"]["ports"][0].split(":")[-1]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"

    (provider,) = yaml.safe_load((provisioning / "dashboards" / "asc-stream.yml").read_text())[
        "providers"
    ]
    folder = container_path(gpu_model, "grafana", provider["options"]["path"])
    assert folder is not None and (folder / DASHBOARD.name).resolve() == DASHBOARD
    home = gpu_model["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert container_path(gpu_model, "grafana", home) == DASHBOARD

    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard_panels(dashboard) if p["type"] != "row"}
    uids |= {t["datasource"]["uid"] for t in dashboard_targets(dashboard)}
    assert uids == {datasource["uid"]}


# ---------------------------------------------------------------------------------------------
# The dashboard


def dashboard_panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_targets(dashboard: dict) -> list[dict]:
    return [t for p in dashboard_panels(dashboard) for t in p.get("targets", [])]


def dashboard_queries(dashboard: dict) -> list[str]:
    """Every PromQL expression: panel targets and template-variable queries."""
    exprs = [t["expr"] for t in dashboard_targets(dashboard)]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", query or "")
        if m and m.group(1):
            exprs.append(m.group(1))
    return exprs


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                "and", "or", "unless", "inf", "nan"}  # fmt: skip
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def promql_metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = GROUPING.sub(" ", text)
    text = re.sub(r"\$\w+", "", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[m.end() :].lstrip()
        if rest.startswith("(") or m.group(0) in PROMQL_WORDS:
            continue
        if m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue  # the exponent of a number such as 1e3
        names.add(m.group(0))
    return names


def promql_grouping_labels(expr: str) -> set[str]:
    labels = set()
    for _, inside in GROUPING.findall(expr):
        labels |= {x.strip() for x in inside.split(",") if x.strip()}
    return labels


PROMETHEUS_SERIES = {"up"}  # made by Prometheus itself, not by the server
PROMETHEUS_LABELS = {"le", "instance", "job"}


def sample_names(families) -> dict[str, set[str]]:
    """Sample name -> label names, as the exposition format writes them, from metric families."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created", ""),
        "info": ("_info",),
    }
    out: dict[str, set[str]] = {}
    for family in families:
        labels = set(getattr(family, "_labelnames", ()))
        for sample in family.samples:
            labels |= set(sample.labels) - {"le", "quantile"}
        for suffix in suffixes.get(family.type, ("",)):
            name = family.name + suffix
            out[name] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def server_metrics_registry_names() -> dict[str, set[str]]:
    from server.metrics import ServerMetrics

    metrics = ServerMetrics()
    label_names = {
        collector._name: set(collector._labelnames)
        for collector in vars(metrics).values()
        if hasattr(collector, "_labelnames")
    }
    families = list(metrics.registry.collect())
    for family in families:
        family._labelnames = label_names.get(family.name, ())
    return sample_names(families)


REQUIRED_PANELS = {
    "accuracy per codec path": "asc_correct_clips_total",
    "bitrate per codec path": "asc_payload_bytes_total",
    "windows per second": "asc_windows_classified_total",
    "latency p50 / p99": "asc_window_latency_seconds_bucket",
    "batch size": "asc_batch_size_count",
    "queue delay": "asc_queue_delay_seconds_bucket",
    "detector positives": "asc_detector_positives_total",
    "decode errors": "asc_decode_errors_total",
    "active streams": "asc_active_streams",
}


def test_dashboard_has_the_operators_panels():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard_panels(dashboard) if p["type"] != "row"]
    ids = [p["id"] for p in dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["w"] > 0 and pos["h"] > 0, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
    for title, metric in REQUIRED_PANELS.items():
        matching = [p for p in panels if title in p["title"].lower()]
        assert matching, f"no panel titled like {title!r}"
        names = {n for p in matching for t in p["targets"] for n in promql_metric_names(t["expr"])}
        assert metric in names, f"{title!r} does not query {metric}"
    kbps = next(p for p in panels if "bitrate" in p["title"].lower())["targets"][0]["expr"]
    assert "asc_decoded_seconds_total" in kbps and "* 8" in kbps  # bits per second of audio
    latency = next(p for p in panels if "latency" in p["title"].lower())
    assert {"0.5", "0.99"} <= {
        re.search(r"quantile\(([\d.]+)", t["expr"]).group(1) for t in latency["targets"]
    }


def test_dashboard_queries_only_metrics_the_server_defines():
    exported = server_metrics_registry_names()
    dashboard = json.loads(DASHBOARD.read_text())
    used = set()
    for expr in dashboard_queries(dashboard):
        names = promql_metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        used |= names
        unknown = names - set(exported) - PROMETHEUS_SERIES
        assert not unknown, f"{expr!r} queries {sorted(unknown)}, which server/metrics.py lacks"
        labels = set().union(*(exported.get(n, set()) for n in names)) | PROMETHEUS_LABELS
        missing = promql_grouping_labels(expr) - labels
        assert not missing, f"{expr!r} groups by {sorted(missing)}, a label these series lack"
    assert len(used) >= 12


def grafana_to_promql(expr: str, rate_interval: str = "1m") -> str:
    """What Grafana sends: variables replaced ($codec_path at its 'All' value)."""
    return expr.replace("$__rate_interval", rate_interval).replace("$codec_path", ".*")


def test_dashboard_queries_parse_as_promql(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is absent (Debian package prometheus; `make setup` installs it)")
    dashboard = json.loads(DASHBOARD.read_text())
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, expr in enumerate(dashboard_queries(dashboard))
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promql_metric_names_reads_queries_as_intended():
    expr = (
        "histogram_quantile(0.99, sum by (le, model) "
        '(rate(asc_x_bucket{a=~"$v"}[$__rate_interval])))'
        ' / on (model) group_left () count(up{job="asc-server"} == 1) * 1e3'
    )
    assert promql_metric_names(expr) == {"asc_x_bucket", "up"}
    assert promql_grouping_labels(expr) == {"le", "model"}


# ---------------------------------------------------------------------------------------------
# Kubernetes example


def test_kubernetes_example_is_consistent(gpu_model):
    docs = [
        d for path in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d
    ]
    by_kind = {d["kind"]: d for d in docs}
    assert {"Deployment", "Service", "Ingress"} <= set(by_kind)
    deployment, service, ingress = by_kind["Deployment"], by_kind["Service"], by_kind["Ingress"]

    template = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()

    (container,) = template["spec"]["containers"]
    assert container["image"] == gpu_model["services"]["server"]["image"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    server_env = gpu_model["services"]["server"]["environment"]
    assert ports == {
        "grpc": int(server_env["ASC_PORT"]),
        "metrics": int(server_env["ASC_METRICS_PORT"]),
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    known = server_env_vars()
    assert {e["name"] for e in container["env"]} <= known

    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    for name, port in service_ports.items():
        assert port["targetPort"] in ports, f"Service port {name} targets an unnamed port"
    assert service["spec"]["clusterIP"] == "None"  # headless: every pod is an endpoint
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in service_ports
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"


# ---------------------------------------------------------------------------------------------
# docs/configuration.md: one table of the variables operators set


def server_env_vars() -> set[str]:
    from server.cli import build_parser

    text = " ".join(
        action.help or ""
        for sub in build_parser()._subparsers._group_actions[0].choices.values()
        for action in sub._actions
    )
    return set(re.findall(r"\[(ASC_[A-Z_]+)\]", text)) | {"ASC_SERVER"}


def edge_env_vars() -> set[str]:
    from edge.cli import build_parser

    _, options = build_parser()
    return {name for opts in options.values() for name, _ in opts.names}


def documented_variables() -> set[str]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", text, re.M))


def test_configuration_page_documents_every_variable():
    documented = documented_variables()
    wanted = server_env_vars() | edge_env_vars() | variables_in(COMPOSE) | variables_in(COMPOSE_CPU)
    missing = sorted(wanted - documented)
    assert not missing, f"docs/configuration.md's table of environment variables lacks {missing}"


def test_docker_compose_itself_accepts_the_files():
    """Where Docker Compose is installed (an operator's machine), ask it too."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if (
            shutil.which(cmd[0])
            and subprocess.run([*cmd, "version"], capture_output=True).returncode == 0
        ):
            break
    else:
        pytest.skip("Docker Compose is not installed here; the schema test above stands in")
    for files in VARIANTS.values():
        args = [a for f in files for a in ("-f", str(f))]
        result = subprocess.run(
            [*cmd, *args, "config", "--quiet"], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Live: the compose services' commands as local processes on loopback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def parse_metrics(text: str) -> dict[str, dict[tuple, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def by_codec(series: dict[tuple, float]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for labels, value in series.items():
        path = dict(labels).get("codec_path")
        totals[path] = totals.get(path, 0.0) + value
    return totals


class Lines:
    """Collects a process's stdout lines in a thread, so a test can wait for them."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))


def stage_image(dockerfile: Path, context: Path, dest: Path) -> Path:
    """Lay out what the Dockerfile copies under WORKDIR, as the image has it, filtered by
    .dockerignore: a process run from there finds only the files the image would have."""
    patterns = dockerignore_patterns(context)
    workdir = "/"
    for word, args in dockerfile_instructions(dockerfile):
        if word == "WORKDIR":
            workdir = posixpath.join(workdir, args)
        if word not in ("COPY", "ADD"):
            continue
        *sources, target = [a for a in shlex.split(args) if not a.startswith("--")]
        target = posixpath.join(workdir, target)
        if not target.startswith(IMAGE_WORKDIR + "/"):
            continue  # build-time helpers (the codec-library installer under /tmp)
        base = dest / target[len(IMAGE_WORKDIR) + 1 :]
        for source in sources:
            src = context / source
            files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
            for file in files:
                if ignored(file.relative_to(context).as_posix(), patterns):
                    continue
                if src.is_file():
                    out = base / src.name if target.endswith("/") else base
                else:
                    out = base / file.relative_to(src)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, out)
    return dest


# Runs a console script's entry point with this checkout's editable install switched off, so
# a module the image lacks fails to import instead of coming from the checkout.
LAUNCH = (
    "import importlib, sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path "
    "if 'Editable' not in getattr(f, '__name__', '')]; "
    "module, _, func = sys.argv.pop(1).partition(':'); sys.argv[0] = sys.argv.pop(1); "
    "sys.exit(getattr(importlib.import_module(module), func)())"
)


class Stack:
    """`server` and `edge-sim` of the compose file (CPU variant) as local processes: each runs
    its image's entrypoint and compose command, from its image's file set (`stage_image`)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.services = compose_model(*VARIANTS["cpu"])["services"]
        self.built = built_services(compose_model(*VARIANTS["cpu"]))
        self.procs: list[subprocess.Popen] = []
        self.apps = {
            name: stage_image(dockerfile, context, tmp / name)
            for name, (context, dockerfile) in self.built.items()
        }

    def run_args(self, service: str, *args: str) -> list[str]:
        """ENTRYPOINT + args, with the console script resolved through pyproject.toml."""
        dockerfile = self.built[service][1]
        (entry,) = [
            exec_form(a) for w, a in dockerfile_instructions(dockerfile) if w == "ENTRYPOINT"
        ]
        script = entry[0]
        return [sys.executable, "-c", LAUNCH, console_scripts()[script], script, *entry[1:], *args]

    def env(self, service: str) -> dict[str, str]:
        app = self.apps[service]
        env = {**os.environ, "PYTHONPATH": str(app)}
        env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        for key, value in dockerfile_env(self.built[service][1]).items():
            if key.startswith("ASC_"):
                env[key] = (
                    str(app / value[len(IMAGE_WORKDIR) + 1 :])
                    if value.startswith(IMAGE_WORKDIR + "/")
                    else value
                )
        env.update({k: str(v) for k, v in self.services[service].get("environment", {}).items()})
        return env

    def start_server(self) -> None:
        env = self.env("server")
        # Loopback only, and ports the system picks: this machine is shared.
        env.update(ASC_HOST="127.0.0.1", ASC_PORT="0", ASC_METRICS_PORT="0")
        self.server_log = open(self.tmp / "server.log", "w+")  # noqa: SIM115 - closed in stop()
        self.server = subprocess.Popen(
            self.run_args("server", *self.services["server"]["command"]),
            cwd=self.apps["server"], env=env, stdout=subprocess.PIPE, stderr=self.server_log,
            text=True,
        )  # fmt: skip
        self.procs.append(self.server)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = self.server.stdout.readline()
            if line.startswith("{"):
                self.ready = json.loads(line)
                self.port, self.metrics_port = self.ready["port"], self.ready["metrics_port"]
                return
            if not line and self.server.poll() is not None:
                break
        raise AssertionError(f"server did not start: {self.read(self.server_log)}")

    def healthcheck(self) -> subprocess.CompletedProcess:
        test = self.services["server"]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] in console_scripts(), test
        args = test[2:]
        args[args.index("--server") + 1] = f"127.0.0.1:{self.port}"  # the port picked here
        cmd = [sys.executable, "-c", LAUNCH, console_scripts()[test[1]], test[1], *args]
        return subprocess.run(
            cmd, cwd=self.apps["server"], env=self.env("server"), capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip

    def edge_command(self) -> list[str]:
        command = []
        for arg in self.services["edge-sim"]["command"]:
            if arg.startswith("--server="):
                arg = f"--server=127.0.0.1:{self.port}"  # envoy's place: one server here
            command.append(arg)
        return self.run_args("edge-sim", *command)

    def start_edge(self) -> None:
        self.edge_log = open(self.tmp / "edge.log", "w+")  # noqa: SIM115 - closed in stop()
        self.edge = subprocess.Popen(
            self.edge_command(), cwd=self.apps["edge-sim"], env=self.env("edge-sim"),
            stdout=subprocess.PIPE, stderr=self.edge_log, text=True,
        )  # fmt: skip
        self.procs.append(self.edge)
        self.edge_lines = Lines(self.edge.stdout)

    def summaries(self) -> set[str]:
        """Codec paths for which the edge has printed a clip summary."""
        found = (re.match(r"summary path=(\S+)", line) for line in list(self.edge_lines.lines))
        return {m.group(1) for m in found if m}

    def stop_edge(self) -> int | None:
        if self.edge.poll() is None:
            self.edge.send_signal(signal.SIGINT)  # finishes clips in flight...
            time.sleep(1.0)
            if self.edge.poll() is None:
                self.edge.send_signal(signal.SIGINT)  # ...or, asked twice, quits now
        try:
            return self.edge.wait(30)
        except subprocess.TimeoutExpired:
            self.edge.kill()
            return None

    def stop(self) -> None:
        if hasattr(self, "edge"):
            self.stop_edge()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log in (getattr(self, "server_log", None), getattr(self, "edge_log", None)):
            if log is not None:
                log.close()

    @staticmethod
    def read(log) -> str:
        log.flush()
        log.seek(0)
        return log.read()[-4000:]


class LocalPrometheus:
    """Debian's Prometheus scraping the local server with the repository's scrape job."""

    def __init__(self, tmp: Path, metrics_port: int) -> None:
        config = yaml.safe_load(PROMETHEUS_YML.read_text())
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "asc-server"]
        job.pop("dns_sd_configs")  # the compose network's DNS is not here: one static target
        job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
        job["scrape_interval"], job["scrape_timeout"] = "1s", "1s"
        config["scrape_configs"] = [job]
        path = tmp / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log = open(tmp / "prometheus.log", "w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [shutil.which("prometheus"), f"--config.file={path}",
             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def query(self, expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?query={quote(expr)}"
        with urlopen(url, timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def edge_codec_paths(services: dict) -> list[str]:
    from asc.codecs.spec import parse_spec

    command = services["edge-sim"]["command"]
    return [str(parse_spec(a.split("=", 1)[1])) for a in command if a.startswith("--codec=")]


@pytest.fixture(scope="module")
def live():
    """The server and edge-sim commands running until every codec path has a labelled clip."""
    tmp = Path(tempfile.mkdtemp(prefix="asc-deploy-"))
    stack = Stack(tmp)
    prometheus = None
    try:
        stack.start_server()
        if shutil.which("prometheus"):
            prometheus = LocalPrometheus(tmp, stack.metrics_port)
        stack.start_edge()
        paths = edge_codec_paths(stack.services)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and stack.edge.poll() is None:
            metrics = parse_metrics(scrape(stack.metrics_port))
            labelled = by_codec(metrics.get("asc_labelled_clips_total", {}))
            if all(labelled.get(p, 0) >= 1 for p in paths) and set(paths) <= stack.summaries():
                break
            time.sleep(0.5)
        during = scrape(stack.metrics_port)
        if prometheus is not None:
            time.sleep(3)  # a few more 1 s scrapes, so rate() has samples on both sides
        yield {
            "stack": stack,
            "paths": paths,
            "metrics": during,
            "prometheus": prometheus,
        }
    finally:
        if prometheus is not None:
            prometheus.stop()
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_compose_commands_run_here_and_results_flow(live):
    stack, paths = live["stack"], live["paths"]
    metrics = parse_metrics(live["metrics"])
    assert stack.edge.poll() is None, f"edge-sim exited: {Stack.read(stack.edge_log)}"
    assert stack.ready["device"] == "cpu"  # the CPU variant's ASC_DEVICE reached the server

    # The edge printed a clip summary for every codec path it streams...
    summaries = stack.summaries()
    assert set(paths) <= summaries, (
        summaries,
        Stack.read(stack.edge_log),
        Stack.read(stack.server_log),
    )
    # ...and the server counted audio, windows, labelled clips and latency for each of them.
    for name in ("asc_packets_total", "asc_payload_bytes_total", "asc_decoded_seconds_total",
                 "asc_windows_classified_total", "asc_clips_total", "asc_labelled_clips_total",
                 "asc_window_latency_seconds_count", "asc_accuracy"):  # fmt: skip
        seen = by_codec(metrics.get(name, {}))
        assert all(seen.get(p, 0) > 0 or (name == "asc_accuracy" and p in seen) for p in paths), (
            name,
            seen,
        )
    assert sum(metrics["asc_batch_size_count"].values()) > 0
    assert sum(metrics["asc_active_streams"].values()) == len(paths)  # one stream per path
    assert set(by_codec(metrics["asc_detector_positives_total"])) <= set(paths)

    # The bitrate the dashboard shows (payload bits per decoded second) is the codec's.
    bits = by_codec(metrics["asc_payload_bytes_total"])
    seconds = by_codec(metrics["asc_decoded_seconds_total"])
    kbps = {p: bits[p] * 8 / 1000 / seconds[p] for p in paths}
    assert 600 < kbps["pcm16"] < 800, kbps
    assert 20 < kbps["opus:32k"] < 45, kbps


def test_compose_healthcheck_command_reports_serving(live):
    result = live["stack"].healthcheck()
    assert result.returncode == 0 and "SERVING" in result.stdout, result.stdout + result.stderr


def test_images_lack_what_they_should_not_carry(live):
    """The staged file sets are the images' own: no torch-side code on the edge, no tests."""
    apps = live["stack"].apps
    edge, server = apps["edge-sim"], apps["server"]
    assert (edge / "samples" / "meta.csv").is_file() and (edge / "edge" / "cli.py").is_file()
    assert not (edge / "server").exists() and not (edge / "models").exists()
    assert (server / "models" / "ensemble.safetensors").is_file()
    assert not (server / "edge").exists() and not (server / "training").exists()
    for app in (edge, server):
        assert not (app / "tests").exists() and not list(app.rglob("__pycache__"))


def test_dashboard_metrics_are_exported_by_the_running_server(live):
    from prometheus_client.parser import text_string_to_metric_families

    exported = sample_names(text_string_to_metric_families(live["metrics"]))
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(promql_metric_names(q) for q in dashboard_queries(dashboard)))
    missing = sorted(used - set(exported) - PROMETHEUS_SERIES)
    assert not missing, f"the dashboard queries {missing}; the running server exports none of them"
    # Everything but the error counters has samples already (they appear with the first error).
    present = set(parse_metrics(live["metrics"]))
    quiet = {"asc_decode_errors_total", "asc_rejected_requests_total", "asc_streams_total"}
    assert not sorted(used - present - PROMETHEUS_SERIES - quiet)


def test_prometheus_answers_every_dashboard_query(live):
    prometheus = live["prometheus"]
    if prometheus is None:
        pytest.skip("prometheus is absent (Debian package prometheus; `make setup` installs it)")
    dashboard = json.loads(DASHBOARD.read_text())
    paths = live["paths"]
    deadline = time.monotonic() + 30  # until Prometheus has scraped a labelled clip per path
    while len(prometheus.query("asc_labelled_clips_total")) < len(paths):
        assert time.monotonic() < deadline, "Prometheus did not scrape the server's results"
        time.sleep(0.5)
    assert prometheus.query('up{job="asc-server"}')[0]["value"][1] == "1", "the scrape failed"
    answers = {}
    for expr in dashboard_queries(dashboard):
        answers[expr] = prometheus.query(grafana_to_promql(expr, "10s"))  # fails on a bad query
    panels = {p["title"]: p for p in dashboard_panels(dashboard) if p["type"] != "row"}

    def series(title: str, ref: str = "A") -> dict[str, float]:
        (target,) = [t for t in panels[title]["targets"] if t["refId"] == ref]
        result = answers[target["expr"]]
        return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in result}

    accuracy = series("Accuracy per codec path (now)")
    assert len(accuracy) == len(paths) and all(0 <= v <= 1 for v in accuracy.values()), accuracy
    assert series("Servers up") == {"{}": 1.0}
    assert series("Active streams") == {"{}": float(len(paths))}
    kbps = {
        json.loads(k)["codec_path"]: v for k, v in series("Bitrate per codec path (kbps)").items()
    }
    assert 600 < kbps.get("pcm16", 0) < 800 and 20 < kbps.get("opus:32k", 0) < 45, kbps
