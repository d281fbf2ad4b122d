"""asc-edge's errors that need no server: each is one line on stderr and exit code 2."""

import json
import socket
import subprocess
import sys
import time

import pytest

from asc.audio import save
from asc.signals import full_band_clip
from edge.cli import main
from edge.client import PathTotals, canonical_codecs
from edge.errors import SourceError
from edge.output import ConsoleReport, JsonlWriter, result_record
from proto import scene_classifier_pb2 as pb

RATE = 16000


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "clip.wav"
    save(path, full_band_clip(RATE, 1.5, 1, seed=0), RATE)
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Tests see only the ASC_EDGE_* variables they set themselves."""
    import os

    for name in list(os.environ):
        if name.startswith("ASC_EDGE_"):
            monkeypatch.delenv(name)


def closed_port() -> int:
    """A loopback port nobody listens on (bound once by us, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unknown_codec_is_refused_before_connecting(capsys, wav):
    code = main(["stream", "--server", "127.0.0.1:1", "--codec", "foo:32k", str(wav)])
    assert code == 2
    line = one_error_line(capsys)
    assert line.startswith("asc-edge: error: unknown codec 'foo'; known codecs: pcm16, flac")


def test_an_out_of_range_setting_gets_the_engines_message(capsys, wav):
    code = main(["stream", "--server", "127.0.0.1:1", "--codec", "pcm16,mp3:1k", str(wav)])
    assert code == 2
    assert "mp3:1k: bitrate 1k is out of range for mp3" in one_error_line(capsys)


def test_auto_without_a_table_names_the_missing_file(capsys, wav, tmp_path):
    missing = tmp_path / "results.json"
    args = ["stream", "--server", "127.0.0.1:1", "--codec", "auto", "--table", str(missing)]
    assert main([*args, str(wav)]) == 2
    assert f"--codec auto: {missing}: no such results table" in one_error_line(capsys)


def test_missing_file_is_one_line(capsys, tmp_path):
    missing = tmp_path / "nope.wav"
    assert main(["stream", "--server", "127.0.0.1:1", "--codec", "opus:32k", str(missing)]) == 2
    assert one_error_line(capsys) == f"asc-edge: error: {missing}: no such file or folder"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "h:1", "--codec", "opus:32k"], "no input: give audio files or folders"),
        (["--server", "h:1", "x.wav"], "give a codec path with --codec"),
        (["--codec", "opus:32k", "x.wav"], "give the server with --server"),
        (["--server", "h:1", "--codec", "pcm16", "--label", "a", "--labels-from", "m.csv", "x"],
         "give --label or --labels-from, not both"),
        (["--server", "h:1", "--codec", "pcm16", "--mic", "x.wav"], "audio files or --mic, not"),
        (["--server", "h:1", "--codec", "pcm16", "--max-in-flight", "0", "x"], "must be positive"),
        (["--server", "h:1", "--codec", "pcm16", "--wait-grid-tests", "x"], "give --detector too"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["stream", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_mic_without_an_input_device_is_a_clear_error(capsys):
    try:
        import sounddevice

        if any(d["max_input_channels"] > 0 for d in sounddevice.query_devices()):
            pytest.skip("this machine has an audio input device")
    except OSError:
        pass
    assert main(["stream", "--server", "127.0.0.1:1", "--codec", "opus:32k", "--mic"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("asc-edge: error: --mic: ")
    assert "PortAudio" in line or "input device" in line


def test_connection_refused_gives_up_with_unavailable(capsys, wav):
    started = time.monotonic()
    port = closed_port()
    server = f"127.0.0.1:{port}"
    code = main(
        ["stream", "--server", server, "--codec", "opus:32k", "--max-retries", "1", str(wav)]
    )
    assert code == 2
    assert time.monotonic() - started < 20
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("asc-edge: error: UNAVAILABLE: ")
    assert "gave up after 2 attempt(s)" in err[-1]
    assert any("retrying in" in line for line in err[:-1])  # the one retry was announced


def test_settings_come_from_the_environment(capsys, monkeypatch, wav):
    monkeypatch.setenv("ASC_EDGE_SERVER", "127.0.0.1:1")
    monkeypatch.setenv("ASC_EDGE_CODEC", "pcm16,bogus")
    monkeypatch.setenv("ASC_EDGE_INPUTS", str(wav))
    assert main(["stream"]) == 2
    assert "unknown codec 'bogus'" in one_error_line(capsys)
    monkeypatch.setenv("ASC_EDGE_CODEC", "opus:32k")
    monkeypatch.setenv("ASC_EDGE_RATE", "22050")
    monkeypatch.setenv("ASC_EDGE_CODEC", "sbc:64k")  # sbc has no 22.05 kHz
    assert main(["stream"]) == 2
    assert "sample rate 22050 Hz is unsupported by sbc" in one_error_line(capsys)
    assert main(["stream", "--rate", "44100", "--codec", "bogus2"]) == 2  # the command line wins
    assert "unknown codec 'bogus2'" in one_error_line(capsys)


def test_a_bad_yes_no_variable_is_a_usage_error(capsys, monkeypatch, wav):
    monkeypatch.setenv("ASC_EDGE_REALTIME", "maybe")
    with pytest.raises(SystemExit) as exit_:
        main(["stream", "--server", "h:1", "--codec", "pcm16", str(wav)])
    assert exit_.value.code == 2
    assert "ASC_EDGE_REALTIME='maybe' is not a yes/no value" in capsys.readouterr().err


def test_help_lists_the_environment_variables(capsys):
    with pytest.raises(SystemExit):
        main(["stream", "--help"])
    out = capsys.readouterr().out
    for name in ("ASC_EDGE_SERVER", "ASC_EDGE_CODEC", "ASC_EDGE_DEVICE_ID", "ASC_EDGE_INPUTS"):
        assert f"\n  {name} " in out


def test_classify_errors(capsys, tmp_path, wav):
    assert main(["classify", str(tmp_path / "x.wav"), "--server", "h:1", "--codec", "pcm16"]) == 2
    assert one_error_line(capsys).endswith("x.wav: no such file")
    assert main(["classify", str(wav), "--server", "h:1", "--codec", "nope"]) == 2
    assert "unknown codec 'nope'" in one_error_line(capsys)
    port = closed_port()
    assert main(["classify", str(wav), "--server", f"127.0.0.1:{port}", "--codec", "probe"]) == 2
    assert one_error_line(capsys).startswith("asc-edge: error: UNAVAILABLE: ")


def test_the_console_script_exits_2_with_one_line(wav):
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "stream", "--server", "h:1", "--codec", "x", str(wav)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "asc-edge: error: unknown codec 'x'; known codecs: pcm16, flac, opus, mp3, aac, fdk-aac, "
        "he-aac, he-aac-v2, vorbis, sbc, aptx, mp2, ac3"
    ]


# --- the pieces behind the command -----------------------------------------------------------


def test_codec_paths_are_canonical_and_unique():
    assert canonical_codecs("mp3:64k,mp3:128k,cutoff=14k,opus:32000,opus:32k", 44100, 1) == [
        "mp3:64k",
        "mp3:128k,cutoff=14k",
        "opus:32k",
    ]
    assert canonical_codecs(["sbc:bitpool=53>aac:64k"], 44100, 1) == ["sbc:bitpool=53>aac:64k"]
    with pytest.raises(SourceError, match="no codec path"):
        canonical_codecs("", 44100, 1)


def test_totals_arithmetic():
    t = PathTotals("opus:32k", clips=4, results=8, audio_seconds=10.0, payload_bytes=40_000)
    t.wire_bytes, t.labelled, t.correct, t.latency_ms_total = 41_600, 4, 3, 400.0
    assert t.wire_kbps == pytest.approx(33.28)
    assert t.payload_kbps == pytest.approx(32.0)
    assert t.wire_ratio == pytest.approx(1.04)
    assert t.accuracy == 0.75 and t.mean_latency_ms == 50.0
    assert PathTotals("pcm16").accuracy is None and PathTotals("pcm16").wire_kbps == 0.0
    assert json.loads(json.dumps(t.as_dict()))["wire_ratio"] == 1.04


def summary_result(**kwargs) -> pb.SceneResult:
    fields = dict(
        clip_id="a#0",
        fine_label="park",
        fine=[pb.ClassProbability(label="park", probability=0.75)],
        coarse_label="outdoor",
        clip_summary=True,
        codec_path="opus:32k",
        windows=1,
    )
    return pb.SceneResult(**{**fields, **kwargs})


def test_plain_output_and_jsonl(capsys, tmp_path):
    report = ConsoleReport(force_plain=True)
    report.result("opus:32k", summary_result(clip_summary=False, server_latency_ms=42.0), "park")
    report.result("opus:32k", summary_result(), "park")
    report.totals({"opus:32k": PathTotals("opus:32k", clips=1, audio_seconds=1.0)})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "summary path=opus:32k clip=a#0 label=park predicted=park conf=0.75 coarse=outdoor "
        "lossy=- family=- latency_ms=42"
    )
    report.result(
        "sbc:64k",
        summary_result(
            detector_ran=True, lossy_probability=0.97, codec_family="sbc", server_latency_ms=9.0
        ),
        "park",
    )
    assert capsys.readouterr().out.strip().endswith("lossy=0.97 family=sbc latency_ms=9")
    assert out[1].startswith("totals path=opus:32k clips=1 windows=0 accuracy=-")

    path = tmp_path / "out.jsonl"
    writer = JsonlWriter(str(path))
    writer.result("opus:32k", summary_result(detector_ran=True, lossy_probability=0.5), "park")
    writer.totals({"opus:32k": PathTotals("opus:32k", clips=1)})
    writer.close()
    first, totals = (json.loads(line) for line in path.read_text().splitlines())
    assert first["type"] == "summary" and first["true_label"] == "park"
    assert first["clip_id"] == "a#0" and first["lossy_probability"] == 0.5
    assert first["last_window"] is False  # defaults are written too
    assert totals["type"] == "totals" and totals["path"] == "opus:32k" and totals["clips"] == 1
    assert result_record("pcm16", summary_result(clip_summary=False))["type"] == "window"
