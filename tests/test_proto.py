"""The checked-in gRPC code is what `make proto` generates from the .proto file today."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ["scene_classifier_pb2.py", "scene_classifier_pb2.pyi", "scene_classifier_pb2_grpc.py"]


def test_generated_code_is_current(tmp_path):
    (tmp_path / "proto").mkdir()
    shutil.copy(ROOT / "proto" / "scene_classifier.proto", tmp_path / "proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            "--python_out=.",
            "--pyi_out=.",
            "--grpc_python_out=.",
            "proto/scene_classifier.proto",
        ],
        cwd=tmp_path,
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "proto" / name).read_text()
        checked_in = (ROOT / "proto" / name).read_text()
        assert fresh == checked_in, f"proto/{name} is stale: run `make proto`"


def test_messages_round_trip_on_the_wire():
    from proto import scene_classifier_pb2 as pb

    request = pb.StreamRequest(
        config=pb.StreamConfig(
            device_id="dev-1", codec="opus:32k", sample_rate=44100, channels=1, detector=True
        )
    )
    parsed = pb.StreamRequest.FromString(request.SerializeToString())
    assert parsed.WhichOneof("kind") == "config" and parsed.config.codec == "opus:32k"
    packet = pb.StreamRequest(packet=pb.AudioPacket(sequence=3, clip_id="c", payload=b"\x00"))
    assert pb.StreamRequest.FromString(packet.SerializeToString()).packet.sequence == 3
