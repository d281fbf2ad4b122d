"""One whole clip (ClassifyClip): a file coded through one codec path, or sent as it is to be
probed by the server, answered with its windows and summary in one reply."""

from __future__ import annotations

from pathlib import Path

import grpc

from edge.codec_paths import canonical_codecs
from edge.errors import EdgeError, SourceError
from proto import scene_classifier_pb2 as pb
from proto import scene_classifier_pb2_grpc as pbg


def classify_file(
    target: str,
    path: str | Path,
    codec: str,
    *,
    rate: int = 44100,
    channels: int = 1,
    detector: bool = False,
    window_seconds: float = 0.0,
    hop_seconds: float = 0.0,
    timeout: float = 120.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> pb.ClipResult:
    """Send one file to ClassifyClip: coded whole through ``codec``, or as-is with ``probe``.

    ``probe`` sends the file's bytes untouched with an empty codec, for the server to probe
    the container; any other spec is validated here, the file loaded at ``rate``/``channels``
    and coded with the engine into that codec's container.
    """
    from asc.audio import load
    from asc.codecs.clip import encode

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if codec == "probe":
        data, spec = path.read_bytes(), ""
    else:
        spec = canonical_codecs([codec], rate, channels)[0]
        try:
            pcm, _ = load(path, rate, channels)
        except ValueError as e:
            raise SourceError(str(e)) from None
        data = encode(pcm, rate, spec)
    request = pb.ClipRequest(
        clip_id=path.stem,
        data=data,
        codec=spec,
        sample_rate=rate,
        detector=detector,
        window_seconds=window_seconds,
        hop_seconds=hop_seconds,
    )
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    channel = (
        grpc.secure_channel(target, credentials, options=options)
        if credentials is not None
        else grpc.insecure_channel(target, options=options)
    )
    try:
        return pbg.SceneClassifierStub(channel).ClassifyClip(request, timeout=timeout)
    except grpc.RpcError as e:
        raise EdgeError(e.code().name, e.details() or str(e)) from None
    finally:
        channel.close()
