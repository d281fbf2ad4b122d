"""The one codec spec grammar: ``NAME[:BITRATE][,key=value...]``, stages chained with ``>``.

Examples: ``opus:32k``, ``mp3:128k,cutoff=14k``, ``sbc:bitpool=53``, ``sbc:bitpool=53>aac:64k``.
Parsing is purely syntactic; :func:`asc.codecs.registry.validate` checks a parsed spec against a
codec's limits. ``str()`` of a parsed spec is its canonical form: the metric label and cache key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from asc.codecs.errors import CodecError

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)([kK]?)$")
MAX_QUANTITY = 10**9  # far above any bitrate, cutoff or setting; keeps every spelling exact


def parse_quantity(text: str, what: str) -> int:
    """``64k`` -> 64000, ``14000`` -> 14000, ``22.05k`` -> 22050."""
    m = _QUANTITY.match(text.strip())
    if not m:
        raise CodecError(f"{what} {text!r} is not a number like 64k or 14000")
    value = round(float(m.group(1)) * (1000 if m.group(2) else 1))
    if value > MAX_QUANTITY:
        raise CodecError(f"{what} {text!r} is out of range (at most {MAX_QUANTITY})")
    return value


def format_quantity(value: int) -> str:
    if value % 1000 == 0:
        return f"{value // 1000}k"
    if value % 10 == 0 and value >= 1000:  # 22050 -> 22.05k, exactly (no exponent, no rounding)
        return f"{value // 1000}.{value % 1000 // 10:02d}".rstrip("0") + "k"
    return str(value)


@dataclass(frozen=True)
class Stage:
    """One codec hop: a codec name, an optional bitrate in bit/s and extra settings."""

    name: str
    bitrate: int | None = None
    params: tuple[tuple[str, str], ...] = field(default=())

    def param(self, key: str) -> str | None:
        return dict(self.params).get(key)

    def __str__(self) -> str:
        parts = [format_quantity(self.bitrate)] if self.bitrate is not None else []
        parts += [f"{k}={v}" for k, v in self.params]
        return f"{self.name}:{','.join(parts)}" if parts else self.name


@dataclass(frozen=True)
class CodecSpec:
    """A chain of stages applied in order; the wire carries the last stage's bitstream."""

    stages: tuple[Stage, ...]

    @property
    def last(self) -> Stage:
        return self.stages[-1]

    def __str__(self) -> str:
        return ">".join(str(s) for s in self.stages)


def _parse_stage(text: str) -> Stage:
    text = text.strip()
    if not text:
        raise CodecError("empty codec stage (two '>' in a row, or a trailing '>')")
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if not _NAME.match(name):
        raise CodecError(f"codec name {name!r} is not a name like opus or he-aac")
    bitrate: int | None = None
    params: dict[str, str] = {}
    if rest:
        for i, item in enumerate(rest.split(",")):
            item = item.strip()
            if not item:
                raise CodecError(f"empty setting in {text!r}")
            if "=" in item:
                key, _, value = item.partition("=")
                key, value = key.strip().lower(), value.strip()
                if not key or not value:
                    raise CodecError(f"setting {item!r} in {text!r} is not key=value")
                if key in params:
                    raise CodecError(f"setting {key!r} given twice in {text!r}")
                params[key] = value
            elif i == 0:
                bitrate = parse_quantity(item, f"bitrate of {name}")
            else:
                raise CodecError(
                    f"{item!r} in {text!r}: only the first item may be a bare bitrate; "
                    "others are key=value"
                )
    return Stage(name=name, bitrate=bitrate, params=tuple(sorted(params.items())))


def parse_spec(text: str | CodecSpec) -> CodecSpec:
    """Parse a spec string; raises :class:`CodecError` naming the bad part."""
    if isinstance(text, CodecSpec):
        return text
    if not isinstance(text, str) or not text.strip():
        raise CodecError("empty codec spec; expected something like opus:32k or pcm16")
    return CodecSpec(tuple(_parse_stage(part) for part in text.split(">")))


def split_spec_list(text: str) -> list[str]:
    """``"mp3:64k,mp3:128k,cutoff=14k"`` -> ``["mp3:64k", "mp3:128k,cutoff=14k"]``.

    Commas separate both specs and a spec's settings: an item that is only ``key=value`` (no
    codec name before the ``=``) belongs to the spec before it.
    """
    specs: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        is_setting = "=" in item and ":" not in item.split("=", 1)[0]
        if is_setting and specs:
            specs[-1] += "," + item
        elif is_setting:
            raise CodecError(f"setting {item!r} comes before any codec name")
        else:
            specs.append(item)
    return specs
