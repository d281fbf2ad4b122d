"""ClassifyClip's decoding in worker processes that may die (server/decode_sandbox.py).

The workers are real processes decoding real files; a crash is a real signal sent to one, at
the moment the case needs (SIGSTOP first, so the worker cannot answer before it dies)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from asc.codecs.clip import decode, encode
from asc.signals import full_band_clip
from server.bounded_decode import decode_clip
from server.decode_sandbox import DecodeSandbox, DecodeWorker
from server.errors import StreamError

RATE = 44100
SECONDS = 30.0


@pytest.fixture(scope="module")
def flac() -> bytes:
    return encode(full_band_clip(RATE, 3.0, seed=5), RATE, "flac")


def _request(clip_id: str = "c") -> dict:
    return {"rate": 16000, "clip_id": clip_id, "max_seconds": SECONDS, "codec": None}


def _decode(sandbox: DecodeSandbox, data: bytes, clip_id: str = "c"):
    return asyncio.run(sandbox.decode(data, round(SECONDS * 16000), **_request(clip_id)))


@pytest.fixture
def sandbox():
    pool = ThreadPoolExecutor(2)
    box = DecodeSandbox(1, pool)
    yield box
    box.close()
    pool.shutdown()


def test_a_worker_decodes_exactly_as_the_server_would(sandbox, flac):
    here = decode_clip(flac, 16000, "c", SECONDS)
    there = _decode(sandbox, flac)
    assert np.array_equal(here.mono, there.mono)
    assert (there.seconds, there.codec) == (here.seconds, here.codec)
    bad = b"RIFF" + bytes(300)
    with pytest.raises(StreamError) as here_error:
        decode_clip(bad, 16000, "c", SECONDS)
    with pytest.raises(StreamError) as there_error:
        _decode(sandbox, bad)
    assert there_error.value.code == here_error.value.code == grpc.StatusCode.DATA_LOSS
    assert there_error.value.message == here_error.value.message


def test_the_worker_does_not_load_the_models(sandbox, flac):
    _decode(sandbox, flac)
    maps = Path(f"/proc/{sandbox.workers[0].pid}/maps").read_text()
    assert "avcodec" in maps  # FFmpeg, which it is there for
    assert "libtorch" not in maps


def test_a_worker_killed_while_idle_costs_the_next_call_nothing(sandbox, flac):
    first = _decode(sandbox, flac)
    worker = sandbox.workers[0]
    os.kill(worker.pid, signal.SIGKILL)
    time.sleep(0.2)
    again = _decode(sandbox, flac)
    assert np.array_equal(first.mono, again.mono)
    assert worker.starts == 2


def _kill_under_call(worker: DecodeWorker, deaths: int, done: threading.Event) -> None:
    """Stop the call's worker before it can answer, then kill it; then each worker started
    after it, before it has imported enough to answer (about a third of a second)."""
    pid = worker.pid
    os.kill(pid, signal.SIGSTOP)
    done.wait()  # the call has been handed to the stopped worker (or is being)
    time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    for _ in range(deaths - 1):
        while worker.pid in (pid, None):
            time.sleep(0.001)
        pid = worker.pid
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("deaths", "survives"), [(1, True), (2, False)])
def test_a_call_whose_worker_dies_under_it_is_tried_once_more(sandbox, flac, deaths, survives):
    """One death might be anyone's (the kernel's OOM killer): the call gets a fresh worker.
    A second is the file's: DATA_LOSS, and the next call decodes in a third worker."""
    _decode(sandbox, flac)  # the worker is up
    worker = sandbox.workers[0]
    handed = threading.Event()
    killer = threading.Thread(target=_kill_under_call, args=(worker, deaths, handed))
    killer.start()

    async def call():
        task = asyncio.ensure_future(sandbox.decode(flac, round(SECONDS * 16000), **_request()))
        await asyncio.sleep(0.1)
        handed.set()
        return await task

    try:
        if survives:
            assert asyncio.run(call()).seconds == pytest.approx(3.0)
        else:
            with pytest.raises(StreamError) as error:
                asyncio.run(call())
            assert error.value.code == grpc.StatusCode.DATA_LOSS
            assert "killed the decoding process twice" in error.value.message
    finally:
        handed.set()
        killer.join()
    assert worker.starts == 2  # the first, and the one the call was tried again in
    assert _decode(sandbox, flac).seconds == pytest.approx(3.0)
    assert worker.starts == (2 if survives else 3)


def test_a_call_that_ends_while_its_worker_hangs_has_the_worker_killed(sandbox, flac):
    """A decode that never returns (here a stopped worker) lasts no longer than its call."""
    _decode(sandbox, flac)
    hung = sandbox.workers[0].pid
    os.kill(hung, signal.SIGSTOP)

    async def call():
        await asyncio.wait_for(
            sandbox.decode(flac, round(SECONDS * 16000), **_request()), timeout=0.5
        )

    with pytest.raises(TimeoutError):
        asyncio.run(call())
    assert not Path(f"/proc/{hung}").exists()  # killed and reaped
    assert _decode(sandbox, flac).seconds == pytest.approx(3.0)
    assert sandbox.workers[0].pid != hung


@pytest.mark.parametrize("spec", ["sbc:64k", "aptx", "mp3:64k", "mp2:64k", "ac3:64k"])
def test_a_file_decoded_in_runs_of_frames_gives_the_engines_samples(spec):
    """decode_clip converts a file's frames in runs (SBC's are 128 samples each); the samples
    are the engine's own decoder's, mixed to mono, and the refusal past the budget holds."""
    stereo = full_band_clip(RATE, 3.0, channels=2, seed=6)
    last = spec.split(":")[0]
    raw = last if last in ("sbc", "aptx") else None
    data = encode(stereo, RATE, spec)
    clip = decode_clip(data, RATE, "c", SECONDS, raw, RATE)
    reference, _ = decode(data, RATE, 2, spec)
    np.testing.assert_allclose(clip.mono, reference.mean(axis=1), atol=1e-6)
    with pytest.raises(StreamError, match="more than 1 s of audio"):
        decode_clip(data, RATE, "c", 1.0, raw, RATE)
