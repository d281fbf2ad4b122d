"""ClassifyClip files decoded in worker processes that may die, not in the server's own.

A file sent to ClassifyClip is parsed by FFmpeg's demuxers and decoded by its decoders: C code
that a crafted file may crash. One did, through PyAV (docs/reliability.md), and killed every
stream the server held. Here each call's file goes to a worker process of its own for the
call's length, so a crash ends that worker and that call (``DATA_LOSS``), and the worker is
started again for the next call.

Nothing the worker says is trusted more than the bytes a client sent: the reply is a JSON
header and raw float32 samples, checked against the call's budget, never a pickle (a worker
taken over by a crafted file must not be able to run code in the server).

A worker that was dead before a call reached it (killed from outside, say) is not the call's
fault: the call starts a fresh one. A call whose worker dies under it is tried once more in a
fresh worker, then ends with ``DATA_LOSS``: a hostile file costs two worker starts (about a
third of a second of CPU each), a rare death from outside costs nothing. A call that ends
while its worker decodes (the client gone, its deadline passed) has the worker killed, so a
decode that hangs lasts no longer than the call.

Run as ``python -m server.decode_sandbox``, this module is the worker: it imports the decoder
and not the models.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from concurrent.futures import Executor
from pathlib import Path
from typing import BinaryIO

import grpc
import numpy as np

from server.bounded_decode import DecodedClip, decode_clip
from server.errors import StreamError
from server.safe_log import shown

log = logging.getLogger("asc.server.decode_sandbox")

_LENGTH_BYTES = 8
_HEADER_MOST = 4096  # a reply's JSON header: a status, a message under 1 KB, three numbers
# The statuses decode_clip may end a call with; a worker naming another is not believed.
_STATUSES = {"DATA_LOSS", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "INTERNAL"}
_ROOT = str(Path(__file__).resolve().parent.parent)  # where the worker finds this package


class WorkerDied(Exception):
    """The worker process ended (or broke its protocol) during a call."""


def _write(out: BinaryIO, payload: bytes) -> None:
    out.write(len(payload).to_bytes(_LENGTH_BYTES, "little"))
    out.write(payload)


def _read(source: BinaryIO, most: int) -> bytes:
    """One length-prefixed payload; EOFError at a clean end, ValueError past ``most`` bytes."""
    prefix = source.read(_LENGTH_BYTES)
    if len(prefix) < _LENGTH_BYTES:
        raise EOFError("the pipe ended")
    length = int.from_bytes(prefix, "little")
    if length > most:
        raise ValueError(f"a payload of {length} bytes, more than the {most} expected")
    payload = source.read(length)
    if len(payload) < length:
        raise EOFError("the pipe ended inside a payload")
    return payload


class DecodeWorker:
    """One worker process, serving one call at a time."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self.starts = 0  # processes started so far (the tests read it)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _start(self) -> subprocess.Popen:
        self.close()
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _ROOT + (os.pathsep + path if path else "")}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "server.decode_sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.starts += 1
        return self._proc

    def call(self, data: bytes, request: dict, most_samples: int) -> DecodedClip:
        """``decode_clip(data, **request)`` in the worker (started first if it is not running).
        Raises StreamError as decode_clip would, WorkerDied if the worker ends during the call."""
        proc = self._proc if self.alive() else self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            _write(proc.stdin, json.dumps(request).encode())
            _write(proc.stdin, data)
            proc.stdin.flush()
            header = json.loads(_read(proc.stdout, _HEADER_MOST))
            samples = _read(proc.stdout, 4 * most_samples)
        except (OSError, EOFError, ValueError) as e:  # ValueError: also a JSON that is not
            self.close()
            raise WorkerDied(str(e)) from e
        return _reply(header, samples, request["clip_id"])

    def close(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def _reply(header: dict, samples: bytes, clip_id: str) -> DecodedClip:
    """The worker's answer as decode_clip's: a DecodedClip, or the StreamError it raised."""
    try:
        if "status" in header:
            status = str(header["status"])
            if status not in _STATUSES:
                raise ValueError(f"unknown status {shown(status, 24)}")
            raise StreamError(grpc.StatusCode[status], str(header["message"]))
        mono = np.frombuffer(samples, np.float32)
        return DecodedClip(mono, float(header["seconds"]), str(header["codec"])[:64])
    except (KeyError, TypeError, ValueError) as e:
        raise StreamError(
            grpc.StatusCode.INTERNAL, f"clip {shown(clip_id)}: the decoding process broke its reply"
        ) from e


class DecodeSandbox:
    """``workers`` worker processes for ClassifyClip's files, started when first needed."""

    def __init__(self, workers: int, executor: Executor):
        self.executor = executor  # threads that wait on a worker's pipe
        self.workers = [DecodeWorker() for _ in range(workers)]
        self._free: asyncio.Queue[DecodeWorker] | None = None

    async def decode(self, data: bytes, most_samples: int, **request) -> DecodedClip:
        """``decode_clip(data, **request)`` in a worker of its own for the call."""
        if self._free is None:
            self._free = asyncio.Queue()
            for worker in self.workers:
                self._free.put_nowait(worker)
        worker = await self._free.get()
        try:
            return await self._call(worker, data, request, most_samples)
        except asyncio.CancelledError:
            # The call ended (its client left, its deadline passed) with the worker perhaps
            # still decoding, a hang included: it is killed, and a fresh one takes its place.
            worker.close()
            fresh = DecodeWorker()
            self.workers[self.workers.index(worker)] = fresh
            worker = fresh
            raise
        finally:
            self._free.put_nowait(worker)

    async def _call(
        self, worker: DecodeWorker, data: bytes, request: dict, most_samples: int
    ) -> DecodedClip:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            try:
                return await loop.run_in_executor(
                    self.executor, worker.call, data, request, most_samples
                )
            except WorkerDied as e:
                log.warning("a decoding process died during a ClassifyClip call: %s", e)
                if attempt == 2:
                    raise StreamError(
                        grpc.StatusCode.DATA_LOSS,
                        f"clip {shown(request['clip_id'])}: decoding its data killed the "
                        "decoding process twice (a corrupt or hostile file)",
                    ) from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def serve(source: BinaryIO, out: BinaryIO) -> None:
    """The worker's loop: a call's JSON arguments and file in, the decoded audio out."""
    while True:
        try:
            request = json.loads(_read(source, _HEADER_MOST))
        except EOFError:
            return  # the server closed the pipe (or died): so does the worker
        data = _read(source, 1 << 31)
        try:
            clip = decode_clip(data, **request)
            header = {"seconds": clip.seconds, "codec": clip.codec}
            samples = clip.mono.astype(np.float32, copy=False).tobytes()
        except StreamError as e:
            header, samples = {"status": e.code.name, "message": e.message}, b""
        except Exception:  # a bug, not the file: INTERNAL, with its traceback on stderr
            log.exception("decoding failed")
            header = {"status": "INTERNAL", "message": "decoding failed inside the server"}
            samples = b""
        _write(out, json.dumps(header).encode())
        _write(out, samples)
        out.flush()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the replies
    serve(sys.stdin.buffer, replies)
