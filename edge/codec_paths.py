"""The codec paths a run asks for, checked and spelt one way before anything connects."""

from __future__ import annotations

from collections.abc import Sequence

from asc.codecs.registry import resolve
from asc.codecs.spec import parse_spec
from edge.errors import SourceError


def canonical_codecs(codecs: str | Sequence[str], rate: int, channels: int) -> list[str]:
    """Canonical spellings of the asked codec paths, validated here before any connection.

    Raises the engine's CodecError/CodecUnavailable (its message names the bad part), so a
    typo fails in a second instead of after a connect. Duplicates collapse into one path.
    (``auto``, choosing a path from the network, is not a codec and is refused like any
    unknown name.)
    """
    from asc.codecs.spec import split_spec_list

    items = split_spec_list(codecs) if isinstance(codecs, str) else list(codecs)
    out: list[str] = []
    for item in items:
        spec = str(parse_spec(item))
        resolve(spec, rate, channels)
        if spec not in out:
            out.append(spec)
    if not out:
        raise SourceError("no codec path given (e.g. --codec opus:32k)")
    return out
