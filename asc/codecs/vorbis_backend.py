"""libvorbis through pyogg's ctypes bindings: managed-bitrate Vorbis with an optional lowpass.

FFmpeg's own Vorbis encoder ignores bitrate targets, and soundfile cannot set a bitrate or
lowpass, so we drive libvorbisenc directly; FFmpeg decodes the packets.
"""

from __future__ import annotations

import ctypes

import numpy as np

from asc.codecs.errors import CodecError
from asc.codecs.pcm import match_channels
from asc.codecs.registry import Resolved

OV_ECTL_LOWPASS_SET = 0x21
_P = ctypes.c_void_p
_SIGNATURES = {  # name: (restype, argtypes); pyogg's own wrappers mis-declare several of these
    "vorbis_info_init": (None, [_P]),
    "vorbis_info_clear": (None, [_P]),
    "vorbis_comment_init": (None, [_P]),
    "vorbis_comment_clear": (None, [_P]),
    "vorbis_analysis_init": (ctypes.c_int, [_P, _P]),
    "vorbis_block_init": (ctypes.c_int, [_P, _P]),
    "vorbis_block_clear": (ctypes.c_int, [_P]),
    "vorbis_dsp_clear": (None, [_P]),
    "vorbis_analysis_headerout": (ctypes.c_int, [_P, _P, _P, _P, _P]),
    "vorbis_analysis_buffer": (ctypes.POINTER(ctypes.POINTER(ctypes.c_float)), [_P, ctypes.c_int]),
    "vorbis_analysis_wrote": (ctypes.c_int, [_P, ctypes.c_int]),
    "vorbis_analysis_blockout": (ctypes.c_int, [_P, _P]),
    "vorbis_analysis": (ctypes.c_int, [_P, _P]),
    "vorbis_bitrate_addblock": (ctypes.c_int, [_P]),
    "vorbis_bitrate_flushpacket": (ctypes.c_int, [_P, _P]),
    "vorbis_encode_setup_managed": (
        ctypes.c_int,
        [_P, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long],
    ),
    "vorbis_encode_ctl": (ctypes.c_int, [_P, ctypes.c_int, _P]),
    "vorbis_encode_setup_init": (ctypes.c_int, [_P]),
    "ogg_stream_init": (ctypes.c_int, [_P, ctypes.c_int]),
    "ogg_stream_packetin": (ctypes.c_int, [_P, _P]),
    "ogg_stream_pageout": (ctypes.c_int, [_P, _P]),
    "ogg_stream_flush": (ctypes.c_int, [_P, _P]),
    "ogg_stream_clear": (ctypes.c_int, [_P]),
}


class _Libs:
    """libvorbis, libvorbisenc and libogg, found by pyogg, with signatures declared here."""

    def __init__(self) -> None:
        from pyogg import ogg, vorbis

        self.structs_vorbis, self.structs_ogg = vorbis, ogg
        handles = [
            ctypes.CDLL(lib._name) for lib in (vorbis.libvorbis, vorbis.libvorbisenc, ogg.libogg)
        ]
        for name, (restype, argtypes) in _SIGNATURES.items():
            handle = next(h for h in handles if hasattr(h, name))
            function = getattr(handle, name)
            function.restype, function.argtypes = restype, argtypes
            setattr(self, name, function)


_LIBS: _Libs | None = None


def libs() -> _Libs:
    global _LIBS
    if _LIBS is None:
        _LIBS = _Libs()
    return _LIBS


def xiph_lace(packets: list[bytes]) -> bytes:
    """Vorbis header packets in the Xiph-laced form FFmpeg expects as extradata."""
    out = bytearray([len(packets) - 1])
    for p in packets[:-1]:
        out += b"\xff" * (len(p) // 255) + bytes([len(p) % 255])
    for p in packets:
        out += p
    return bytes(out)


class VorbisEncoder:
    """Encodes float32 PCM into Vorbis packets; keeps granule positions for the Ogg writer."""

    frame_size = 1024

    def __init__(self, r: Resolved):
        lib = self._lib = libs()
        self.resolved = r
        self.rate, self.channels = r.rate, r.channels
        self._closed = True
        self._info = lib.structs_vorbis.vorbis_info()
        lib.vorbis_info_init(ctypes.byref(self._info))
        err = lib.vorbis_encode_setup_managed(
            ctypes.byref(self._info), r.channels, r.rate, -1, r.bitrate, -1
        )
        if err != 0:
            lib.vorbis_info_clear(ctypes.byref(self._info))
            raise CodecError(
                f"{r.stage}: libvorbis has no mode for {r.bitrate} bit/s at {r.rate} Hz with "
                f"{r.channels} channel(s)"
            )
        if r.cutoff is not None:
            kilohertz = ctypes.c_double(r.cutoff / 1000)
            if lib.vorbis_encode_ctl(
                ctypes.byref(self._info), OV_ECTL_LOWPASS_SET, ctypes.byref(kilohertz)
            ):
                lib.vorbis_info_clear(ctypes.byref(self._info))
                raise CodecError(f"{r.stage}: libvorbis rejects cutoff {r.cutoff} Hz")
        if lib.vorbis_encode_setup_init(ctypes.byref(self._info)) != 0:
            lib.vorbis_info_clear(ctypes.byref(self._info))
            raise CodecError(f"{r.stage}: libvorbis could not set up the encoder")
        self._dsp = lib.structs_vorbis.vorbis_dsp_state()
        self._block = lib.structs_vorbis.vorbis_block()
        self._comment = lib.structs_vorbis.vorbis_comment()
        lib.vorbis_analysis_init(ctypes.byref(self._dsp), ctypes.byref(self._info))
        lib.vorbis_block_init(ctypes.byref(self._dsp), ctypes.byref(self._block))
        lib.vorbis_comment_init(ctypes.byref(self._comment))
        self._closed = False
        heads = [lib.structs_ogg.ogg_packet() for _ in range(3)]
        lib.vorbis_analysis_headerout(
            ctypes.byref(self._dsp), ctypes.byref(self._comment), *map(ctypes.byref, heads)
        )
        self.header_packets = [ctypes.string_at(h.packet, h.bytes) for h in heads]
        self.header = xiph_lace(self.header_packets)
        self.granules: list[int] = []  # granule position of each packet returned so far

    def _drain(self) -> list[bytes]:
        lib, dsp, block = self._lib, ctypes.byref(self._dsp), ctypes.byref(self._block)
        out: list[bytes] = []
        packet = lib.structs_ogg.ogg_packet()
        while lib.vorbis_analysis_blockout(dsp, block) == 1:
            lib.vorbis_analysis(block, None)
            lib.vorbis_bitrate_addblock(block)
            while lib.vorbis_bitrate_flushpacket(dsp, ctypes.byref(packet)):
                out.append(ctypes.string_at(packet.packet, packet.bytes))
                self.granules.append(int(packet.granulepos))
        return out

    def encode(self, pcm: np.ndarray) -> list[bytes]:
        x = match_channels(pcm, self.channels)
        out: list[bytes] = []
        # About a second per call: libvorbis analyses a submitted buffer on the stack and
        # overflows it on long ones (a 60 s mono clip in one call crashed the process).
        step = self._info.rate or 44100
        for start in range(0, len(x), step):
            block = x[start : start + step]
            buffers = self._lib.vorbis_analysis_buffer(ctypes.byref(self._dsp), len(block))
            for c in range(self.channels):
                column = np.ascontiguousarray(block[:, c], dtype=np.float32)
                ctypes.memmove(buffers[c], column.ctypes.data, column.nbytes)
            self._lib.vorbis_analysis_wrote(ctypes.byref(self._dsp), len(block))
            out += self._drain()
        return out

    def flush(self) -> list[bytes]:
        self._lib.vorbis_analysis_wrote(ctypes.byref(self._dsp), 0)
        out = self._drain()
        self.close()
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        lib = self._lib
        lib.vorbis_block_clear(ctypes.byref(self._block))
        lib.vorbis_dsp_clear(ctypes.byref(self._dsp))
        lib.vorbis_comment_clear(ctypes.byref(self._comment))
        lib.vorbis_info_clear(ctypes.byref(self._info))

    def __del__(self) -> None:
        self.close()


def write_ogg(header_packets: list[bytes], packets: list[bytes], granules: list[int]) -> bytes:
    """Pages Vorbis packets into an Ogg file with libogg."""
    lib = libs()
    state = (ctypes.c_ubyte * 1024)()  # ogg_stream_state is opaque to us; 1 KiB covers its ~400 B
    page = lib.structs_ogg.ogg_page()
    lib.ogg_stream_init(state, 0x41534331)
    out = bytearray()
    keep = []  # packet buffers must outlive packetin until the page is written

    def put(data: bytes, granule: int, number: int, bos: bool, eos: bool) -> None:
        buffer = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        keep.append(buffer)
        packet = lib.structs_ogg.ogg_packet()
        packet.packet = ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ubyte))
        packet.bytes, packet.b_o_s, packet.e_o_s = len(data), int(bos), int(eos)
        packet.granulepos, packet.packetno = granule, number
        lib.ogg_stream_packetin(state, ctypes.byref(packet))

    def take(pager) -> None:
        while pager(state, ctypes.byref(page)):
            out.extend(ctypes.string_at(page.header, page.header_len))
            out.extend(ctypes.string_at(page.body, page.body_len))

    for i, data in enumerate(header_packets):
        put(data, 0, i, i == 0, False)
    take(lib.ogg_stream_flush)  # the audio must start on a fresh page
    for i, (data, granule) in enumerate(zip(packets, granules, strict=True)):
        put(data, granule, len(header_packets) + i, False, i == len(packets) - 1)
        take(lib.ogg_stream_pageout)
    take(lib.ogg_stream_flush)
    lib.ogg_stream_clear(state)
    return bytes(out)
