"""`--codec auto`: the cheapest measured path that keeps the asked share of uncoded accuracy."""

import json

import pytest

from edge.cli import main
from edge.codec_choice import CodecChoiceError, choose_codec

ROWS = [
    {"path": "none", "kbps": 705.6, "accuracy": 0.80},
    {"path": "opus:32k", "kbps": 33.0, "accuracy": 0.78},  # 97.5 %
    {"path": "he-aac:16k", "kbps": 16.4, "accuracy": 0.70},  # 87.5 %
    {"path": "mp3:64k", "kbps": 64.2, "accuracy": 0.80},
    {"path": "aac:128k", "kbps": 128.0, "accuracy": 0.81},
    {"path": "sbc:bitpool=53>aac:64k", "kbps": 64.0, "accuracy": 0.80},  # a chain: never picked
]


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"paths": ROWS}))
    return path


def test_picks_the_lowest_bitrate_that_meets_the_floor(table):
    choice = choose_codec(table, 0.95, 64, 44100, 1)
    assert choice.spec == "opus:32k" and choice.relative == pytest.approx(0.975)
    assert "opus:32k" in choice.reason and "97.5%" in choice.reason and "floor 95%" in choice.reason
    assert choose_codec(table, 0.85, 64, 44100, 1).spec == "he-aac:16k"
    assert choose_codec(table, 1.0, None, 44100, 1).spec == "mp3:64k"
    assert choose_codec(table, 1.01, None, 44100, 1).spec == "aac:128k"


def test_no_path_qualifies_names_why(table):
    with pytest.raises(CodecChoiceError, match=r"within 20 kbps.*opus:32k needs 33.0 kbps"):
        choose_codec(table, 0.95, 20, 44100, 1)


def test_tables_in_another_shape_are_refused(tmp_path):
    bad = tmp_path / "old.json"
    bad.write_text(json.dumps({"paths": [{"spec": "none", "accuracy": 0.7}]}))
    with pytest.raises(CodecChoiceError, match='"paths" list of objects with "path"'):
        choose_codec(bad, 0.95, None, 44100, 1)
    no_ref = tmp_path / "noref.json"
    no_ref.write_text(json.dumps({"paths": ROWS[1:]}))
    with pytest.raises(CodecChoiceError, match="uncoded"):
        choose_codec(no_ref, 0.95, None, 44100, 1)
    with pytest.raises(CodecChoiceError, match="no such results table"):
        choose_codec(tmp_path / "missing.json", 0.95, None, 44100, 1)


def test_cli_says_which_path_it_picked_and_why(table, tmp_path, capsys):
    from asc.audio import save
    from asc.signals import full_band_clip

    wav = tmp_path / "clip.wav"
    save(wav, full_band_clip(44100, 1.0, 1, seed=0), 44100)
    args = ["stream", "--server", "127.0.0.1:1", "--codec", "auto", "--table", str(table)]
    code = main([*args, "--max-kbps", "64", "--max-retries", "0", str(wav)])
    err = capsys.readouterr().err
    assert code == 2 and "codec auto: picked opus:32k" in err  # then the refused connection
    assert main([*args, "--max-kbps", "10", str(wav)]) == 2
    assert "--codec auto: no codec path" in capsys.readouterr().err
