import os

import pytest

from unilab.files import atomic_write


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run.json"
    atomic_write(path, lambda tmp: tmp.write_text("old"))

    def write_half_then_fail(tmp):
        tmp.write_text("ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, write_half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_written_files_get_the_umask_mode_like_open(tmp_path):
    path = tmp_path / "cache.npy.json"
    atomic_write(path, lambda tmp: tmp.write_text("{}"))
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_progress_bar_shows_counts_as_integers():
    from types import SimpleNamespace

    from unilab.callbacks import TrainingProgressBar

    trainer = SimpleNamespace(progress_bar_metrics={"it": 37.0, "sps": 2980.4, "rew": 0.12345}, loggers=[], logger=None)
    assert TrainingProgressBar().get_metrics(trainer, None) == {"it": "37", "sps": "2980", "rew": "0.123"}
