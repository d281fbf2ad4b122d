"""Where the edge's clips come from: files, folders, label tables, loops and the microphone."""

import threading

import numpy as np
import pytest

from asc.audio import save
from asc.signals import full_band_clip
from edge.clips import Clip, LiveClip
from edge.errors import SourceError
from edge.live_sources import MicSource
from edge.sources import Labels, cut, file_clips, find_audio_files, looped, read_labels

RATE = 16000  # small files keep these tests fast; the loader resamples to any rate


def write(path, seconds: float, rate: int = RATE, channels: int = 1, seed: int = 0):
    save(path, full_band_clip(rate, seconds, channels, seed=seed), rate)
    return path


# --- finding files -------------------------------------------------------------------------


def test_folders_are_searched_recursively_for_audio_in_sorted_order(tmp_path):
    write(tmp_path / "b.wav", 0.2)
    write(tmp_path / "sub" / "a.flac", 0.2)
    write(tmp_path / "sub" / "deeper" / "c.WAV", 0.2)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "meta.csv").write_text("filename,label\n")
    found = find_audio_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "b.wav",
        "sub/a.flac",
        "sub/deeper/c.WAV",
    ]


def test_files_keep_their_order_and_repeats_are_dropped(tmp_path):
    b, a = write(tmp_path / "b.wav", 0.2), write(tmp_path / "a.wav", 0.2)
    assert find_audio_files([b, a, tmp_path]) == [b, a]


def test_a_missing_path_or_an_empty_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(SourceError, match=r"nope\.wav: no such file or folder"):
        find_audio_files([tmp_path / "nope.wav"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="empty: no audio files"):
        find_audio_files([tmp_path / "empty"])


# --- cutting clips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "lengths"),
    [
        (25.0, [10.0, 10.0, 5.0]),  # a 5 s tail is a clip
        (20.5, [10.0, 10.0]),  # a 0.5 s tail is dropped
        (21.0, [10.0, 10.0, 1.0]),  # one second is enough
        (20.0, [10.0, 10.0]),
        (4.0, [4.0]),  # a short file is one clip
        (0.3, [0.3]),  # even shorter than a second, when it is the whole file
    ],
)
def test_cut_into_clips(seconds, lengths):
    rate = 100
    pcm = np.zeros((round(seconds * rate), 1), np.float32)
    pieces = cut(pcm, rate, 10.0)
    assert [len(p) / rate for _, p in pieces] == lengths
    assert [start for start, _ in pieces] == [i * 10 * rate for i in range(len(lengths))]


def test_cut_refuses_a_non_positive_length():
    with pytest.raises(SourceError, match="positive"):
        cut(np.zeros((10, 1), np.float32), 10, 0)


def test_clip_ids_offsets_and_format(tmp_path):
    write(tmp_path / "long.wav", 5.0, rate=22050, channels=2)
    write(tmp_path / "short.wav", 0.4)
    files = find_audio_files([tmp_path])
    clips = list(file_clips(files, rate=RATE, channels=1, clip_seconds=2.0))
    assert [c.clip_id for c in clips] == ["long#0", "long#1", "long#2", "short"]
    assert [c.offset for c in clips] == [0.0, 2.0, 4.0, 0.0]
    assert [round(c.seconds, 3) for c in clips] == [2.0, 2.0, 1.0, 0.4]
    for c in clips:  # resampled and mixed down to the stream's format
        assert c.rate == RATE and c.channels == 1 and c.pcm.dtype == np.float32
        assert not c.live
    assert clips[0].source.endswith("long.wav")


def test_a_file_exactly_one_clip_long_keeps_its_bare_stem(tmp_path):
    write(tmp_path / "x.wav", 1.2)
    assert [c.clip_id for c in file_clips([tmp_path / "x.wav"], rate=RATE, clip_seconds=1.0)] == [
        "x"
    ]


def test_repeated_stems_in_different_folders_get_unique_ids(tmp_path):
    write(tmp_path / "a" / "rain.wav", 0.3)
    write(tmp_path / "b" / "rain.flac", 0.3, seed=1)
    clips = list(file_clips(find_audio_files([tmp_path]), rate=RATE))
    assert [c.clip_id for c in clips] == ["rain", "rain~2"]


def test_an_unreadable_file_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF but not really audio at all" * 10)
    with pytest.raises(SourceError, match=r"bad\.wav"):
        list(file_clips([bad], rate=RATE))


def test_clip_chunks_cover_the_clip_in_order():
    pcm = np.arange(10, dtype=np.float32)[:, None]
    clip = Clip("x", pcm, rate=10)
    pieces = list(clip.chunks(4))
    assert [len(p) for p in pieces] == [4, 4, 2]
    assert np.array_equal(np.concatenate(pieces), pcm)
    assert np.array_equal(np.concatenate(list(clip.chunks(4))), pcm)  # again from the start


# --- looping -------------------------------------------------------------------------------


def test_loop_rounds_get_an_at_suffix_after_round_zero(tmp_path):
    write(tmp_path / "a.wav", 0.3)
    write(tmp_path / "b.wav", 2.2, seed=1)
    files = find_audio_files([tmp_path])
    clips = looped(lambda: file_clips(files, rate=RATE, clip_seconds=1.0), rounds=3)
    ids = [c.clip_id for c in clips]
    assert ids == [
        "a", "b#0", "b#1",
        "a@1", "b#0@1", "b#1@1",
        "a@2", "b#0@2", "b#1@2",
    ]  # fmt: skip
    assert len(set(ids)) == len(ids)


def test_an_endless_loop_keeps_going_and_an_empty_one_stops():
    clip = Clip("x", np.zeros((5, 1), np.float32), rate=5)
    endless = looped(lambda: [clip])
    assert [next(endless).clip_id for _ in range(4)] == ["x", "x@1", "x@2", "x@3"]
    assert list(looped(list)) == []


# --- labels --------------------------------------------------------------------------------


def test_tau_meta_csv_labels_by_basename(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "filename\tscene_label\tidentifier\tsource_label\n"
        "audio/airport-lisbon-1000-40000-a.wav\tairport\tlisbon-1000\ta\n"
        "audio/bus-lyon-1001-40001-b.wav\tbus\tlyon-1001\tb\n"
    )
    assert read_labels(meta) == {
        "airport-lisbon-1000-40000-a.wav": "airport",
        "bus-lyon-1001-40001-b.wav": "bus",
    }


def test_esc50_csv_labels_by_category(tmp_path):
    (tmp_path / "meta").mkdir()
    meta = tmp_path / "meta" / "esc50.csv"
    meta.write_text(
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-100032-A-0.wav,1,0,dog,True,100032,A\n"
        "1-100038-A-14.wav,1,14,chirping_birds,False,100038,A\n"
    )
    assert read_labels(meta) == {"1-100032-A-0.wav": "dog", "1-100038-A-14.wav": "chirping_birds"}


def test_generic_csv_with_path_and_label_columns(tmp_path):
    meta = tmp_path / "labels.csv"
    meta.write_text("Path,Label\nC:\\rec\\one.wav,park\n/data/two.flac,tram\n\n")
    assert read_labels(meta) == {"one.wav": "park", "two.flac": "tram"}


def test_label_files_without_the_columns_or_rows_are_refused(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("name,scene\na.wav,park\n")
    with pytest.raises(
        SourceError, match=r"file column \(filename/file/path\).*found: name, scene"
    ):
        read_labels(meta)
    meta.write_text("filename,label\n")
    with pytest.raises(SourceError, match="no label rows"):
        read_labels(meta)
    with pytest.raises(SourceError, match="unreadable label file"):
        read_labels(tmp_path / "missing.csv")


def test_clips_get_their_files_label_and_unlisted_files_warn_once(tmp_path):
    for name in ("park-1.wav", "x.wav", "y.wav"):
        write(tmp_path / name, 0.3)
    meta = tmp_path / "meta.csv"
    meta.write_text("filename\tscene_label\naudio/park-1.wav\tpark\n")
    warnings = []
    labels = Labels.from_file(meta, on_warning=warnings.append)
    clips = list(file_clips(find_audio_files([tmp_path]), rate=RATE, labels=labels))
    assert [(c.clip_id, c.label) for c in clips] == [("park-1", "park"), ("x", ""), ("y", "")]
    assert len(warnings) == 1 and "x.wav" in warnings[0]
    assert labels.missing == ["x.wav", "y.wav"]


def test_one_label_for_every_clip(tmp_path):
    write(tmp_path / "a.wav", 0.3)
    clips = list(file_clips([tmp_path / "a.wav"], rate=RATE, labels=Labels(default="metro")))
    assert clips[0].label == "metro"


# --- live clips and the microphone ---------------------------------------------------------


def test_a_live_clip_is_read_while_it_is_captured_and_again_from_the_start():
    clip = LiveClip("m", rate=10, channels=1, samples=25)
    audio = np.arange(25, dtype=np.float32)[:, None]
    got = []
    reader = threading.Thread(target=lambda: got.extend(clip.chunks(10)))
    reader.start()
    for start in range(0, 25, 3):  # capture blocks of 3 samples
        rest = clip.append(audio[start : start + 3])
        assert len(rest) == 0
    reader.join(5)
    assert not reader.is_alive() and clip.closed
    assert [len(p) for p in got] == [10, 10, 5]
    assert np.array_equal(np.concatenate(got), audio)
    assert np.array_equal(np.concatenate(list(clip.chunks(7))), audio)  # a resend


def test_a_live_clip_closed_early_ends_with_what_was_recorded():
    clip = LiveClip("m", rate=10, channels=1, samples=100)
    clip.append(np.ones((12, 1), np.float32))
    clip.close()
    assert [len(p) for p in clip.chunks(5)] == [5, 5, 2]
    assert clip.seconds == 1.2


def test_microphone_capture_is_cut_into_consecutive_clips():
    mic = MicSource(rate=100, channels=1, clip_seconds=1.0, label="home")
    for _ in range(5):  # 2.5 s in blocks of 0.5 s
        mic.feed(np.full((50, 1), 0.1, np.float32))
    mic.stop()
    clips = list(mic)
    assert [c.clip_id.rsplit("-", 1)[1] for c in clips] == ["0", "1", "2"]
    assert all(c.clip_id.startswith("mic-") and c.clip_id.count("Z-") == 1 for c in clips)
    assert [c.seconds for c in clips] == [1.0, 1.0, 0.5]  # the last one stopped early
    assert all(c.live and c.label == "home" for c in clips)


def test_microphone_backlog_drops_the_oldest_unsent_clip():
    warnings = []
    mic = MicSource(rate=10, clip_seconds=1.0, backlog=2, on_warning=warnings.append)
    mic.feed(np.zeros((45, 1), np.float32))  # five clips started, none taken
    mic.stop()
    assert [c.clip_id.rsplit("-", 1)[1] for c in mic] == ["3", "4"]
    assert mic.dropped == 3 and len(warnings) == 3


def test_no_microphone_is_a_clear_error():
    mic = MicSource(rate=44100, channels=1)
    try:
        import sounddevice

        devices = sounddevice.query_devices()
        if any(d["max_input_channels"] > 0 for d in devices):
            pytest.skip("this machine has an audio input device")
    except OSError:
        pass  # no PortAudio at all: the case to check
    with pytest.raises(SourceError, match=r"^--mic: .*(PortAudio|input device)"):
        mic.start()
