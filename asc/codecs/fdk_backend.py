"""libfdk-aac's encoder through ctypes: HE-AAC, HE-AAC v2 and the LC encoder of the detection paper.

FFmpeg's PyAV build lacks libfdk_aac, so we drive the shared library's C API directly.
The encoder writes ADTS frames, which FFmpeg's native decoder reads (including SBR and PS).
"""

from __future__ import annotations

import ctypes

import numpy as np

from asc.codecs.errors import CodecError, CodecUnavailable
from asc.codecs.pcm import match_channels, to_int16
from asc.codecs.registry import Resolved, fdk_library

# aacenc_lib.h parameter identifiers and values.
AACENC_AOT = 0x0100
AACENC_BITRATE = 0x0101
AACENC_BITRATEMODE = 0x0102
AACENC_SAMPLERATE = 0x0103
AACENC_CHANNELMODE = 0x0106
AACENC_AFTERBURNER = 0x0200
AACENC_BANDWIDTH = 0x0203
AACENC_TRANSMUX = 0x0300
TT_MP4_ADTS = 2
IN_AUDIO_DATA = 0
OUT_BITSTREAM_DATA = 3
AACENC_OK = 0
AACENC_ENCODE_EOF = 0x80
AOT = {"fdk-aac": 2, "he-aac": 5, "he-aac-v2": 29}


class _BufDesc(ctypes.Structure):
    _fields_ = [
        ("numBufs", ctypes.c_int),
        ("bufs", ctypes.POINTER(ctypes.c_void_p)),
        ("bufferIdentifiers", ctypes.POINTER(ctypes.c_int)),
        ("bufSizes", ctypes.POINTER(ctypes.c_int)),
        ("bufElSizes", ctypes.POINTER(ctypes.c_int)),
    ]


class _InArgs(ctypes.Structure):
    _fields_ = [("numInSamples", ctypes.c_int), ("numAncBytes", ctypes.c_int)]


class _OutArgs(ctypes.Structure):
    _fields_ = [
        ("numOutBytes", ctypes.c_int),
        ("numInSamples", ctypes.c_int),
        ("numAncBytes", ctypes.c_int),
        ("bitResState", ctypes.c_int),
    ]


class _Info(ctypes.Structure):
    _fields_ = [
        ("maxOutBufBytes", ctypes.c_uint),
        ("maxAncBytes", ctypes.c_uint),
        ("inBufFillLevel", ctypes.c_uint),
        ("inputChannels", ctypes.c_uint),
        ("frameLength", ctypes.c_uint),
        ("nDelay", ctypes.c_uint),
        ("nDelayCore", ctypes.c_uint),
        ("confBuf", ctypes.c_ubyte * 64),
        ("confSize", ctypes.c_uint),
    ]


def _lib() -> ctypes.CDLL:
    lib = fdk_library()
    if lib is None:
        raise CodecUnavailable(
            "libfdk-aac is not installed (Debian package libfdk-aac2 or libfdk-aac2t64, non-free)"
        )
    return lib


class FdkEncoder:
    """Encodes float32 PCM into ADTS frames; one frame per packet."""

    def __init__(self, r: Resolved):
        self.resolved = r
        self.rate = r.rate
        self.channels = r.channels
        self.header = b""
        lib = _lib()
        self._lib = lib
        handle = ctypes.c_void_p()
        if lib.aacEncOpen(ctypes.byref(handle), 0, r.channels) != AACENC_OK:
            raise CodecError(f"{r.stage}: libfdk-aac could not open an encoder")
        self._handle = handle
        settings = [
            (AACENC_AOT, AOT[r.name]),
            (AACENC_SAMPLERATE, r.rate),
            (AACENC_CHANNELMODE, r.channels),
            (AACENC_BITRATEMODE, 0),  # constant bitrate
            (AACENC_BITRATE, r.bitrate),
            (AACENC_TRANSMUX, TT_MP4_ADTS),
            (AACENC_AFTERBURNER, 1),
        ]
        if r.cutoff is not None:
            settings.append((AACENC_BANDWIDTH, r.cutoff))
        for param, value in settings:
            if lib.aacEncoder_SetParam(handle, param, ctypes.c_uint(int(value))) != AACENC_OK:
                self.close()
                raise CodecError(f"{r.stage}: libfdk-aac rejects parameter {param:#06x}={value}")
        err = lib.aacEncEncode(handle, None, None, None, None)
        if err != AACENC_OK:
            self.close()
            raise CodecError(
                f"{r.stage}: libfdk-aac rejects this configuration "
                f"({r.bitrate} bit/s at {r.rate} Hz, "
                f"{r.channels} channel(s); error {err:#x})"
            )
        info = _Info()
        lib.aacEncInfo(handle, ctypes.byref(info))
        self.frame_size = info.frameLength
        self.encoder_delay = info.nDelay
        self._out = ctypes.create_string_buffer(max(info.maxOutBufBytes, 8192))
        self._pending = np.zeros((0, r.channels), np.int16)

    def _call(self, samples: np.ndarray | None) -> bytes:
        """One aacEncEncode call: feed ``samples`` (interleaved int16) or flush with None."""
        in_args, out_args = _InArgs(), _OutArgs()
        out_ptr = ctypes.cast(self._out, ctypes.c_void_p)
        out_desc = _BufDesc(
            1,
            ctypes.pointer(out_ptr),
            ctypes.pointer(ctypes.c_int(OUT_BITSTREAM_DATA)),
            ctypes.pointer(ctypes.c_int(len(self._out))),
            ctypes.pointer(ctypes.c_int(1)),
        )
        if samples is None:
            in_args.numInSamples = -1
            in_desc = _BufDesc(0, None, None, None, None)
        else:
            in_args.numInSamples = samples.size
            in_ptr = ctypes.c_void_p(samples.ctypes.data)
            in_desc = _BufDesc(
                1,
                ctypes.pointer(in_ptr),
                ctypes.pointer(ctypes.c_int(IN_AUDIO_DATA)),
                ctypes.pointer(ctypes.c_int(samples.nbytes)),
                ctypes.pointer(ctypes.c_int(2)),
            )
        err = self._lib.aacEncEncode(
            self._handle,
            ctypes.byref(in_desc),
            ctypes.byref(out_desc),
            ctypes.byref(in_args),
            ctypes.byref(out_args),
        )
        if err == AACENC_ENCODE_EOF:
            return b""
        if err != AACENC_OK:
            raise CodecError(f"{self.resolved.stage}: libfdk-aac encode failed (error {err:#x})")
        if samples is not None and out_args.numInSamples != samples.size:
            raise CodecError(f"{self.resolved.stage}: libfdk-aac consumed a partial frame")
        return self._out.raw[: out_args.numOutBytes]

    def encode(self, pcm: np.ndarray) -> list[bytes]:
        x = to_int16(match_channels(pcm, self.channels))
        self._pending = np.concatenate([self._pending, x]) if len(self._pending) else x
        out: list[bytes] = []
        n = self.frame_size
        full = len(self._pending) // n * n
        for start in range(0, full, n):
            block = np.ascontiguousarray(self._pending[start : start + n])
            if data := self._call(block):
                out.append(data)
        self._pending = self._pending[full:]
        return out

    def flush(self) -> list[bytes]:
        out: list[bytes] = []
        if len(self._pending):
            block = np.zeros((self.frame_size, self.channels), np.int16)
            block[: len(self._pending)] = self._pending
            self._pending = self._pending[:0]
            if data := self._call(block):
                out.append(data)
        while data := self._call(None):
            out.append(data)
        self.close()
        return out

    def close(self) -> None:
        if getattr(self, "_handle", None):
            self._lib.aacEncClose(ctypes.byref(self._handle))
            self._handle = None

    def __del__(self) -> None:
        self.close()
