"""Store and forward: every clip is on disk before it is sent, until each codec path answered it.

A spool is a directory that belongs to one running edge (a lock file keeps a second one out);
its files and their format are described in edge.spool_files.

Lifecycle of a clip: :meth:`Spool.plan` says which codec paths still owe it (none when the
ledger shows them all summarised, or when the clip is already spooled), :meth:`Spool.add`
writes it, :meth:`Spool.window_reported` and :meth:`Spool.completed` record what was reported
(the caller reports first, then records), and the entry's files are deleted once every path
it was spooled for is in the ledger. The ledger remembers the last ``LEDGER_KEEP`` clip ids,
so a restarted edge that reads the same files again skips the clips already answered.

Size bound: the clips' files may take ``max_bytes`` together (the ledger, at most a few MB, is
not counted). A new clip that does not fit evicts the oldest entries until it does (oldest
first: a device that has been offline for long keeps its most recent audio); evictions are
counted (clips, bytes, per codec path still owed) and warned about. A clip larger than the
whole bound is not spooled at all (counted as ``unspooled``). An evicted clip that is already
in memory (being sent) is still sent; it is only no longer protected against a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from edge.clips import Clip
from edge.errors import SpoolError, warn
from edge.spool_files import (
    ENTRY_FILE,
    SpoolEntry,
    WindowKey,
    encode_audio,
    read_entry,
    write_atomically,
)

DEFAULT_MAX_MB = 512.0
LEDGER_KEEP = 100_000  # clip ids the ledger remembers; it is rewritten at twice that


@dataclass
class SpoolStats:
    """What the spool holds now and what happened to it during this run."""

    directory: str
    clips: int  # entries held now
    bytes: int
    max_bytes: int
    recovered: int = 0  # entries found on open (left by an earlier run)
    added: int = 0
    completed: int = 0  # entries removed because every path they owed was summarised
    evicted_clips: int = 0  # entries removed to stay under max_bytes
    evicted_bytes: int = 0
    unspooled: int = 0  # clips larger than the whole bound, sent without a spool entry
    errors: int = 0  # writes that failed (disk full...): those clips went unprotected

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Spool:
    """A store-and-forward directory; thread-safe. ``open()`` before use, ``close()`` after."""

    def __init__(
        self,
        directory: str | Path,
        max_bytes: int = int(DEFAULT_MAX_MB * 2**20),
        *,
        on_warning: Callable[[str], None] = warn,
        durable: bool = True,
    ) -> None:
        if max_bytes <= 0:
            raise SpoolError(f"spool size bound must be positive, got {max_bytes} bytes")
        self.directory = Path(directory)
        self.clip_dir = self.directory / "clips"
        self.max_bytes = int(max_bytes)
        self.durable = durable  # fsync writes (off only in tests that count on speed)
        self._warn = on_warning
        self.on_evict: Callable[[SpoolEntry, list[str]], None] | None = None
        self._lock = threading.RLock()
        self._lock_file: Any = None
        self.entries: OrderedDict[str, SpoolEntry] = OrderedDict()  # clip id -> entry, oldest first
        self.done: OrderedDict[str, set[str]] = OrderedDict()  # the ledger: clip id -> paths
        self._ledger: Any = None
        self._ledger_lines = 0
        self._next_seq = 0
        self.bytes = 0
        self._stats = SpoolStats(str(self.directory), 0, 0, self.max_bytes)

    # --- opening ---------------------------------------------------------------------------

    def open(self) -> Spool:
        try:
            self.clip_dir.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            self._load_ledger()
            self._load_entries()
            self._ledger = open(self.directory / "done.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            self.close()
            raise SpoolError(f"spool {self.directory}: {e.strerror or e}") from None
        self._stats.recovered = len(self.entries)
        return self

    def __enter__(self) -> Spool:
        return self if self._lock_file is not None else self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock
                self._lock_file = None

    def _take_lock(self) -> None:
        f = open(self.directory / "lock", "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise SpoolError(
                f"spool {self.directory} is in use by another asc-edge (pid {pid}); "
                "give each edge its own --spool"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f

    def _load_ledger(self) -> None:
        path = self.directory / "done.jsonl"
        if not path.exists():
            return
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    clip_id, codec_path = str(record["clip_id"]), str(record["path"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash: its summary may be reported again
                self.done.setdefault(clip_id, set()).add(codec_path)
                self.done.move_to_end(clip_id)
                self._ledger_lines += 1
        if self._ledger_lines > 2 * LEDGER_KEEP:
            self._compact_ledger()

    def _load_entries(self) -> None:
        files: dict[int, dict[str, Path]] = {}
        for path in self.clip_dir.iterdir():
            match = ENTRY_FILE.match(path.name)
            if match is None:  # a temporary file of an interrupted write
                path.unlink(missing_ok=True)
                continue
            files.setdefault(int(match.group(1)), {})[match.group(2)] = path
        for seq in sorted(files):
            parts = files[seq]
            self._next_seq = max(self._next_seq, seq + 1)
            meta_path = parts.get("json")
            entry = (
                read_entry(seq, meta_path, parts, self.clip_dir, self._warn) if meta_path else None
            )
            if entry is None or entry.clip_id in self.entries or not self._owed(entry):
                # an interrupted add (no metadata), an interrupted removal (every path done),
                # or unreadable: nothing in it can still be sent
                for p in parts.values():
                    p.unlink(missing_ok=True)
                continue
            self.entries[entry.clip_id] = entry
            self.bytes += entry.nbytes

    # --- asking ----------------------------------------------------------------------------

    def _owed(self, entry: SpoolEntry) -> list[str]:
        done = self.done.get(entry.clip_id, ())
        return [p for p in entry.paths if p not in done]

    def owed(self, clip_id: str) -> list[str]:
        """The codec paths a spooled clip still owes (empty when it is not spooled)."""
        with self._lock:
            entry = self.entries.get(clip_id)
            return self._owed(entry) if entry is not None else []

    def summarised(self, clip_id: str) -> set[str]:
        """The codec paths whose summary of this clip the ledger holds (reported already)."""
        with self._lock:
            return set(self.done.get(clip_id, ()))

    def plan(self, clip_id: str, paths: Iterable[str]) -> list[str]:
        """Which of ``paths`` a clip arriving from the source must be sent through.

        Paths the ledger shows summarised are left out, and so are paths an existing entry
        of that clip already owes (the clip is sent from the spool's backlog for those).
        """
        with self._lock:
            done = self.done.get(clip_id, set())
            entry = self.entries.get(clip_id)
            spooled = set(entry.paths) if entry is not None else set()
            return [p for p in paths if p not in done and p not in spooled]

    def backlog(
        self, paths: Iterable[str], rate: int, channels: int
    ) -> list[tuple[SpoolEntry, list[str]]]:
        """Entries to resend first, oldest first, each with the run's paths it still owes.

        Entries recorded at another rate or channel count, or owing only codec paths this run
        does not stream, stay in the spool (a warning says so) for a run that can send them.
        """
        paths = list(paths)
        out, other_format, other_paths = [], 0, set()
        with self._lock:
            for entry in self.entries.values():
                owed = self._owed(entry)
                if (entry.rate, entry.channels) != (rate, channels):
                    other_format += 1
                    continue
                mine = [p for p in owed if p in paths]
                other_paths.update(p for p in owed if p not in paths)
                if mine:
                    out.append((entry, mine))
        if other_format:
            self._warn(
                f"spool: {other_format} clip(s) were recorded at another sample rate or channel "
                f"count than this run's {rate} Hz, {channels} ch; they stay spooled"
            )
        if other_paths:
            self._warn(
                f"spool: clips still owe codec path(s) this run does not stream "
                f"({', '.join(sorted(other_paths))}); they stay spooled for those"
            )
        return out

    def load(self, entry: SpoolEntry) -> np.ndarray | None:
        """The entry's audio as float32 (samples, channels); None when it was evicted."""
        path = self.clip_dir / entry.audio
        try:
            if path.suffix == ".npy":
                pcm = np.load(path, allow_pickle=False)
            else:
                pcm, _ = sf.read(path, dtype="float32", always_2d=True)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RuntimeError) as e:  # sf.LibsndfileError is a RuntimeError
            raise SpoolError(f"spool {path}: unreadable audio: {e}") from None
        return np.asarray(pcm, np.float32).reshape(-1, entry.channels)

    def stats(self) -> SpoolStats:
        with self._lock:
            self._stats.clips, self._stats.bytes = len(self.entries), self.bytes
            return SpoolStats(**asdict(self._stats))

    # --- changing --------------------------------------------------------------------------

    def add(self, clip: Any, pcm: np.ndarray, paths: list[str]) -> SpoolEntry | None:
        """Write a clip (durably) for ``paths``; None when it could not be spooled.

        ``clip`` supplies the id, label, rate and source fields; ``pcm`` its audio. Oldest
        entries are evicted first to make room.
        """
        with self._lock:
            if clip.clip_id in self.entries:
                return self._extend(clip.clip_id, paths)
        data, suffix = encode_audio(pcm, clip.rate)
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            entry = SpoolEntry(
                seq=seq,
                clip_id=clip.clip_id,
                rate=int(clip.rate),
                channels=int(pcm.shape[1]) if pcm.ndim == 2 else 1,
                paths=list(paths),
                audio=f"{seq:012d}{suffix}",
                label=clip.label or "",
                source=str(getattr(clip, "source", "") or ""),
                offset=float(getattr(clip, "offset", 0.0) or 0.0),
            )
            meta = json.dumps(entry.meta(), ensure_ascii=False).encode()
            entry.nbytes = len(data) + len(meta)
            if entry.nbytes > self.max_bytes:
                self._stats.unspooled += 1
                self._warn(
                    f"spool: clip {clip.clip_id} ({entry.nbytes / 2**20:.1f} MB) is larger than "
                    f"the whole spool ({self.max_bytes / 2**20:.1f} MB); sent without a copy"
                )
                return None
            while self.entries and self.bytes + entry.nbytes > self.max_bytes:
                self._evict_oldest()
            self.bytes += entry.nbytes  # reserved before writing, so the bound holds
        try:
            write_atomically(self.clip_dir / entry.audio, data, self.durable)
            write_atomically(
                self.clip_dir / f"{entry.stem}.json", meta, self.durable, sync_dir=True
            )
        except OSError as e:
            with self._lock:
                self.bytes -= entry.nbytes
                self._stats.errors += 1
            for name in (entry.audio, f"{entry.stem}.json"):
                (self.clip_dir / name).unlink(missing_ok=True)
            self._warn(f"spool: could not write clip {clip.clip_id}: {e}; sent without a copy")
            return None
        with self._lock:
            self.entries[entry.clip_id] = entry
            self._stats.added += 1
        return entry

    def _extend(self, clip_id: str, paths: list[str]) -> SpoolEntry | None:
        """An entry of this clip exists (for other paths): it now owes ``paths`` too."""
        with self._lock:
            entry = self.entries.get(clip_id)
            if entry is None:
                return None
            entry.paths += [p for p in paths if p not in entry.paths]
            meta = json.dumps(entry.meta(), ensure_ascii=False).encode()
            try:
                write_atomically(
                    self.clip_dir / f"{entry.stem}.json", meta, self.durable, sync_dir=True
                )
            except OSError as e:
                self._stats.errors += 1
                self._warn(f"spool: could not update clip {clip_id}: {e}")
            return entry

    def window_reported(self, clip_id: str, codec_path: str, key: WindowKey) -> None:
        """A window result was reported: a resend after a restart must not report it again."""
        with self._lock:
            entry = self.entries.get(clip_id)
            if entry is None or key in entry.windows.get(codec_path, ()):
                return
            line = f"{codec_path}\t{key[0]!r}\t{key[1]!r}\n".encode()
            try:
                with open(self.clip_dir / f"{entry.stem}.windows", "ab") as f:
                    f.write(line)
            except OSError as e:
                self._stats.errors += 1
                self._warn(f"spool: could not record a window of {clip_id}: {e}")
                return
            entry.windows.setdefault(codec_path, set()).add(key)
            entry.nbytes += len(line)
            self.bytes += len(line)

    def completed(self, clip_id: str, codec_path: str) -> None:
        """A clip's summary on ``codec_path`` was reported: ledger it, drop the entry when done.

        The ledger line is written (and fsync'd) before the entry's files are removed, so a
        crash in between leaves an entry the next open recognises as done and removes.
        """
        with self._lock:
            if codec_path in self.done.get(clip_id, ()):
                return
            line = json.dumps({"clip_id": clip_id, "path": codec_path}, ensure_ascii=False)
            try:
                self._ledger.write(line + "\n")
                self._ledger.flush()
                if self.durable:
                    os.fsync(self._ledger.fileno())
            except OSError as e:
                self._stats.errors += 1
                self._warn(f"spool: could not ledger {clip_id} on {codec_path}: {e}")
                return
            self.done.setdefault(clip_id, set()).add(codec_path)
            self.done.move_to_end(clip_id)
            self._ledger_lines += 1
            entry = self.entries.get(clip_id)
            if entry is not None and not self._owed(entry):
                self._remove(entry)
                self._stats.completed += 1
            if self._ledger_lines > 2 * LEDGER_KEEP:
                self._compact_ledger()

    def _evict_oldest(self) -> None:
        entry = next(iter(self.entries.values()))
        owed = self._owed(entry)
        self._remove(entry)
        self._stats.evicted_clips += 1
        self._stats.evicted_bytes += entry.nbytes
        self._warn(
            f"spool full ({self.max_bytes / 2**20:.0f} MB): evicted the oldest clip "
            f"{entry.clip_id} (still owed to {', '.join(owed) or 'no path'})"
        )
        if self.on_evict is not None:
            self.on_evict(entry, owed)

    def _remove(self, entry: SpoolEntry) -> None:
        """Metadata first: without it the rest is an orphan that the next open deletes."""
        self.entries.pop(entry.clip_id, None)
        self.bytes -= entry.nbytes
        for name in (f"{entry.stem}.json", entry.audio, f"{entry.stem}.windows"):
            with contextlib.suppress(OSError):
                (self.clip_dir / name).unlink(missing_ok=True)

    def _compact_ledger(self) -> None:
        """Keep the newest LEDGER_KEEP clip ids (and any that still have an entry)."""
        keep = OrderedDict(
            (cid, paths)
            for i, (cid, paths) in enumerate(self.done.items())
            if i >= len(self.done) - LEDGER_KEEP or cid in self.entries
        )
        lines = "".join(
            json.dumps({"clip_id": cid, "path": p}, ensure_ascii=False) + "\n"
            for cid, paths in keep.items()
            for p in sorted(paths)
        )
        path = self.directory / "done.jsonl"
        try:
            write_atomically(path, lines.encode(), self.durable, sync_dir=True)
        except OSError as e:
            self._warn(f"spool: could not compact the ledger: {e}")
            return
        self.done = keep
        self._ledger_lines = sum(len(p) for p in keep.values())
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = open(path, "a", encoding="utf-8")  # noqa: SIM115


class SpooledClip:
    """A clip waiting in the spool; its audio is read from disk when a codec path takes it.

    ``resumed``: left by an earlier run (counted apart in the totals). ``windows`` holds, per
    codec path, the window results already reported, which a resend must not report again.
    """

    live = False

    def __init__(self, spool: Spool, entry: SpoolEntry, resumed: bool) -> None:
        self.spool, self.entry, self.resumed = spool, entry, resumed

    @property
    def clip_id(self) -> str:
        return self.entry.clip_id

    @property
    def label(self) -> str:
        return self.entry.label

    @property
    def rate(self) -> int:
        return self.entry.rate

    @property
    def channels(self) -> int:
        return self.entry.channels

    def windows(self, codec_path: str) -> set[WindowKey]:
        return set(self.entry.windows.get(codec_path, ()))

    def materialize(self) -> Clip | None:
        """The clip with its audio, or None when it was evicted meanwhile."""
        pcm = self.spool.load(self.entry)
        if pcm is None:
            return None
        e = self.entry
        return Clip(e.clip_id, pcm, e.rate, label=e.label, source=e.source, offset=e.offset)
