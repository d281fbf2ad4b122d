"""The server's memory of finished clips, bound to their content and bounded in bytes.

A device resends a clip whose summary it never saw; the server answers it from memory instead
of classifying it again. The answer must belong to the audio actually sent: a clip id is only
a name (the edge calls clips ``<file stem>#k``, so a re-recorded file reuses its ids), so an
entry is keyed by everything that shapes its results (device, codec path, rate, channels,
window, hop, detector, clip id) and holds a fingerprint of the clip's payload bytes. A resend
is compared with it as its bytes arrive (``ReplayCheck``): a digest at every ``MARK_BYTES``
stops the comparison at the first differing prefix, and only the same bytes, whole, are
answered from memory; anything else is decoded and classified as the new clip it is. So
garbage sent under a remembered id is refused like any garbage, and guessing another
device's ids reveals nothing a client did not already have.

The memory is an LRU bounded by ``max_bytes`` (serialized results, keys and fingerprints) and
by ``max_clips``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from proto import scene_classifier_pb2 as pb

MARK_BYTES = 64 * 1024
DIGEST_BYTES = 16
ENTRY_OVERHEAD = 512  # dict slot, objects and list around one entry, counted generously
RESULT_OVERHEAD = 64  # the bytes object around each serialized result


@dataclass(frozen=True)
class Fingerprint:
    size: int
    digest: bytes
    marks: tuple[bytes, ...]  # digest of the first k * MARK_BYTES bytes, k = 1, 2, ...


class ContentHasher:
    """Digest of a clip's payload bytes as they arrive, with one at every MARK_BYTES."""

    def __init__(self) -> None:
        # SHA-256 where CPUs carry it in hardware (x86 SHA extensions, Armv8): every byte of
        # every stream goes through it, and it ran 2.7x faster than BLAKE2b on the server's
        # CPU (0.5 against 1.4 ms per 10 s of 44.1 kHz pcm16). 16 bytes of it are kept.
        self._hash = hashlib.sha256()
        self.size = 0
        self.marks: list[bytes] = []

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            piece = view[: MARK_BYTES - self.size % MARK_BYTES]
            self._hash.update(piece)
            self.size += len(piece)
            view = view[len(piece) :]
            if self.size % MARK_BYTES == 0:
                self.marks.append(self._hash.copy().digest()[:DIGEST_BYTES])

    def fingerprint(self) -> Fingerprint:
        return Fingerprint(self.size, self._hash.copy().digest()[:DIGEST_BYTES], tuple(self.marks))


@dataclass
class Remembered:
    fingerprint: Fingerprint
    results: list[bytes]  # serialized SceneResults: windows in order, then the summary
    cost: int

    def replay(self) -> list[pb.SceneResult]:
        return [pb.SceneResult.FromString(r) for r in self.results]


Key = tuple


class ClipMemory:
    def __init__(self, max_bytes: int, max_clips: int):
        self.max_bytes, self.max_clips = max_bytes, max_clips
        self._entries: OrderedDict[Key, Remembered] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Remembered | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: Key, fingerprint: Fingerprint, results: list[pb.SceneResult]) -> None:
        """Remember a finished clip (replacing what its key held); evict the oldest past the
        bounds. An entry larger than the whole budget is not kept."""
        serialized = [r.SerializeToString() for r in results]
        cost = (
            ENTRY_OVERHEAD
            + sum(len(r) + RESULT_OVERHEAD for r in serialized)
            + sum(len(str(part)) for part in key)
            + 16 * (len(fingerprint.marks) + 1)
        )
        self.forget(key)
        if cost > self.max_bytes:
            return
        self._entries[key] = Remembered(fingerprint, serialized, cost)
        self.bytes += cost
        while self.bytes > self.max_bytes or len(self._entries) > self.max_clips:
            _, old = self._entries.popitem(last=False)
            self.bytes -= old.cost

    def forget(self, key: Key) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.cost


class ReplayCheck:
    """A clip arriving under a remembered key, compared with it as its bytes come in.

    Its payloads are kept (at most the stream's clip allowance) so that, the moment they
    differ, they can be decoded as the new clip they are.
    """

    def __init__(self, clip_id: str, remembered: Remembered):
        self.clip_id = clip_id
        self.remembered = remembered
        self.hasher = ContentHasher()
        self.payloads: list[bytes] = []
        self.held = 0
        self.label = ""  # the clip's ground truth, kept should it turn out a new clip
        self.answered = False  # found the same bytes: answered from memory
        self._checked = 0

    def add(self, payload: bytes) -> bool:
        """Take a payload; False as soon as the bytes so far cannot be the remembered clip."""
        self.payloads.append(payload)
        self.held += len(payload)
        self.hasher.update(payload)
        expected = self.remembered.fingerprint
        if self.hasher.size > expected.size:
            return False
        marks = self.hasher.marks
        for k in range(self._checked, len(marks)):
            if k >= len(expected.marks) or marks[k] != expected.marks[k]:
                return False
        self._checked = len(marks)
        return True

    def same_clip(self) -> bool:
        """At the clip's end: the very same bytes as the remembered clip."""
        return self.hasher.fingerprint() == self.remembered.fingerprint
