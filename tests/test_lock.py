"""The lock is the install: pyproject.toml, requirements/*.txt and the venv must agree.

A floating pin once let a registry release (torchaudio 2.11.1) break both README commands on a
fresh machine. These tests fail, with the command that fixes it, as soon as pyproject.toml, the
lock files or the installed environment drift apart. The benchmark-only peer (BentoML, the
`bench-peer` extra) has a lock of its own that keeps the installed lock's pins and never enters
what `make setup`, the images or devices install.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.lock_digest import BENCHMARK_EXTRAS, pyproject_digest  # noqa: E402

LOCKS = {
    "lock": ("edge", "server", "train", "dev"),
    "server": ("edge", "server"),
    "edge": ("edge",),
    "bench-peer": ("edge", "server", "bench-peer"),  # `make bench-peer` only
}
INSTALLED = ("lock", "server", "edge")  # what `make setup`, the images and devices install
# The platform the x86-64 locks are resolved for (scripts/lock.sh), as marker variables.
LINUX_311 = {"sys_platform": "linux", "platform_machine": "x86_64", "python_version": "3.11"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def read_lock(name: str) -> tuple[dict[str, str], dict[str, str | None], str]:
    """(pins, markers, text) of requirements/NAME.txt."""
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    pins: dict[str, str] = {}
    markers: dict[str, str | None] = {}
    for line in text.splitlines():
        m = PIN.match(line)
        if m:
            key = canonicalize_name(m.group(1))
            pins[key] = m.group(2)
            markers[key] = m.group(3)
    return pins, markers, text


def direct_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """What pyproject.toml asks for with these extras, self-references expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project.get("dependencies", [])]
    for extra in extras:
        for raw in project["optional-dependencies"][extra]:
            req = Requirement(raw)
            if canonicalize_name(req.name) != "asc-stream":
                reqs.append(req)
    return reqs


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_lock_was_made_from_this_pyproject(name: str) -> None:
    _, _, text = read_lock(name)
    header = re.search(r"^# pyproject-digest: (\w+)$", text, re.M)
    assert header, f"requirements/{name}.txt has no pyproject-digest line: run `make lock`"
    with_benchmarks = bool(set(BENCHMARK_EXTRAS) & set(LOCKS[name]))
    assert header.group(1) == pyproject_digest(ROOT / "pyproject.toml", with_benchmarks), (
        f"pyproject.toml's dependencies changed since requirements/{name}.txt was made: "
        "run `make lock` and commit requirements/"
    )
    extras = re.search(r"^# extras: (.+)$", text, re.M)
    assert extras and tuple(extras.group(1).split()) == LOCKS[name]


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_requirement_is_pinned_in_its_lock(name: str) -> None:
    pins, _, _ = read_lock(name)
    for req in direct_requirements(LOCKS[name]):
        if req.marker and not req.marker.evaluate(LINUX_311):
            continue
        key = canonicalize_name(req.name)
        assert key in pins, f"{req} is not in requirements/{name}.txt: run `make lock`"
        assert req.specifier.contains(pins[key], prereleases=True), (
            f"requirements/{name}.txt pins {req.name}=={pins[key]}, outside {req}: run `make lock`"
        )


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_pin_is_exact_and_hashed(name: str) -> None:
    _, _, text = read_lock(name)
    # Each pin starts a block that runs to the next pin; every block carries hashes.
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 3)[3])
    for block in blocks:
        if block.strip() and not block.startswith("#"):
            assert "==" in block.split("\n")[0], block.split("\n")[0]
            assert "--hash=sha256:" in block, f"no hash for {block.split()[0]}"


def test_subsets_share_the_locks_pins() -> None:
    full, _, _ = read_lock("lock")
    for name in ("server", "edge", "bench-peer"):
        pins, _, _ = read_lock(name)
        for key, pinned in pins.items():
            if key in full:
                assert full[key] == pinned, (
                    f"{key}: {pinned} in {name}.txt, {full[key]} in lock.txt: run `make lock`"
                )


def test_edge_lock_has_no_torch() -> None:
    pins, _, _ = read_lock("edge")
    assert not {"torch", "torchaudio"} & set(pins), "the edge extra must not need torch"
    assert not any(k.startswith("nvidia-") for k in pins)


def test_torch_and_torchaudio_are_pinned_as_one_pair() -> None:
    for name in ("lock", "server", "bench-peer"):
        pins, _, _ = read_lock(name)
        assert pins["torch"] == pins["torchaudio"] == "2.11.0", (name, pins["torch"])
    server = [r for r in direct_requirements(("server",)) if r.name in ("torch", "torchaudio")]
    assert {str(r.specifier) for r in server} == {"==2.11.0"}, "pin the pair exactly"


def test_the_benchmark_peer_stays_out_of_every_install() -> None:
    """BentoML is installed only by `make bench-peer`: no installed lock or image holds it, no
    other extra pulls it in, and no other make target installs its lock."""
    for name in INSTALLED:
        pins, _, _ = read_lock(name)
        assert "bentoml" not in pins, f"requirements/{name}.txt holds the benchmark peer"
    assert "bentoml" not in (ROOT / "pylock.toml").read_text()
    peer_lock = "requirements/bench-peer.txt"
    for dockerfile in ROOT.glob("*/Dockerfile"):
        assert peer_lock not in dockerfile.read_text(), dockerfile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for extra in LOCKS["lock"]:
        assert not any("bench-peer" in r or "bentoml" in r for r in extras[extra]), extra
    installing, target = [], None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if re.match(r"^[\w$().-]+:", line):
            target = line.split(":")[0]
        elif line.startswith("\t") and peer_lock in line:
            installing.append(target)
    assert installing == ["bench-peer"], f"only `make bench-peer` installs it: {installing}"


def test_installed_environment_matches_the_lock() -> None:
    """A venv built from an older lock (or by hand) is caught before it misleads a test."""
    pins, markers, _ = read_lock("lock")
    wrong = []
    for key, pinned in pins.items():
        marker = markers[key]
        if marker and not Marker(marker).evaluate():
            continue
        try:
            installed = version(key)
        except PackageNotFoundError:
            wrong.append(f"{key} missing (lock: {pinned})")
            continue
        if installed.split("+")[0] != pinned.split("+")[0]:
            wrong.append(f"{key} {installed} (lock: {pinned})")
    assert not wrong, "the venv differs from requirements/lock.txt; run `make setup`: " + ", ".join(
        wrong
    )


def test_pylock_holds_the_same_pins_in_the_standard_format() -> None:
    """pylock.toml (PEP 751) is the lock for tools that read the standard format; it must say
    exactly what requirements/lock.txt says."""
    text = (ROOT / "pylock.toml").read_text()
    digest = re.search(r"^# pyproject-digest: (\w+)$", text, re.M)
    assert digest and digest.group(1) == pyproject_digest(ROOT / "pyproject.toml"), (
        "pylock.toml is older than pyproject.toml: run `make lock`"
    )
    lock = tomllib.loads(text)
    assert lock["lock-version"] == "1.0"
    packages = {canonicalize_name(p["name"]): p for p in lock["packages"]}
    pins, _, _ = read_lock("lock")
    assert {k: p["version"] for k, p in packages.items()} == pins, "run `make lock`"
    for name, package in packages.items():
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        assert files and all(f["hashes"]["sha256"] for f in files), f"{name}: no hashed file"


def test_every_install_instruction_goes_through_the_lock():
    """A `pip install` that neither installs a hashed lock nor the project without its
    dependencies would float with whatever the registry publishes next."""
    import re

    places = [ROOT / "README.md", ROOT / "Makefile", *ROOT.glob("docs/*.md")]
    places += [*ROOT.glob("scripts/*.sh"), *ROOT.glob("*/Dockerfile")]
    places += [p for p in ROOT.glob("*/*.py") if p.parent.name != "tests"]
    floating = []
    for path in places:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for cmd in re.findall(r"pip install[^`&;\n]*", line):
                if not re.search(r"--require-hashes|--no-deps", cmd):
                    floating.append(f"{path.relative_to(ROOT)}:{n}: {cmd.strip()}")
    assert not floating, floating
