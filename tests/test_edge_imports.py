"""An IoT device must not need torch: the edge's import graph stays free of it."""

import subprocess
import sys


def test_edge_and_codecs_do_not_import_torch():
    code = (
        "import sys, edge, proto.scene_classifier_pb2_grpc, asc.codecs, asc.audio, asc.signals;"
        "import edge.cli, edge.client, edge.sources, edge.output;"
        "import edge.live_sources, edge.multi_stream;"
        "edge.cli.build_parser();"
        "import asc.codecs.cli, asc.codecs.measure;"
        "import numpy as np; from asc.codecs import roundtrip;"
        "roundtrip(np.zeros((4410, 1), np.float32), 44100, 'opus:32k');"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchaudio'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
