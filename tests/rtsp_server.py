"""A real RTSP server for the tests: GStreamer's gst-rtsp-server, as IP cameras run it.

Run with the system Python, which has Debian's GObject bindings (python3-gi and
gir1.2-gst-rtsp-server-1.0, installed by scripts/setup-system.sh)::

    /usr/bin/python3 tests/rtsp_server.py --port 0 --wav audio.wav [--mount /mic]

It serves ``rtsp://127.0.0.1:PORT/mic`` with two tracks, like a camera: AAC audio from the WAV
(RTP MPEG4-GENERIC, paced at real time by the pipeline clock) and a small MJPEG test video.
It prints ``{"port": N}`` once it listens, then one ``SETUP <path>`` line per track a client
asks for, so a test can tell which tracks were requested. At the end of the file a client's
stream ends (EOS); a client that connects again starts from the beginning.
"""

from __future__ import annotations

import argparse
import json
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

AUDIO = (
    "filesrc location={wav} ! wavparse ! audioconvert ! audioresample ! "
    "audio/x-raw,rate=48000 ! avenc_aac bitrate=64000 ! rtpmp4gpay name=pay0 pt=96"
)
VIDEO = (
    "videotestsrc is-live=true pattern=ball ! "
    "video/x-raw,format=I420,width=160,height=120,framerate=5/1 ! "
    "jpegenc quality=50 ! rtpjpegpay name=pay1 pt=26"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free one")
    parser.add_argument("--wav", required=True, help="audio served on the audio track")
    parser.add_argument("--mount", default="/mic")
    parser.add_argument("--no-video", action="store_true", help="serve the audio track only")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    launch = AUDIO.format(wav=args.wav) + ("" if args.no_video else " " + VIDEO)
    factory.set_launch(f"( {launch} )")
    factory.set_shared(False)  # each client its own pipeline, from the start of the file
    server.get_mount_points().add_factory(args.mount, factory)

    def on_setup(client, context) -> None:
        print(f"SETUP {context.uri.abspath}", flush=True)

    def on_client(server, client) -> None:
        client.connect("setup-request", on_setup)

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print(json.dumps({"port": server.get_bound_port()}), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
