"""Files written whole or not at all (vidsr.io.atomic_write)."""

from __future__ import annotations

import pytest

from vidsr.io.atomic_write import atomic_write


def test_the_file_appears_whole_and_replaces_the_old_one(tmp_path):
    path = tmp_path / "choices.json"
    path.write_text("old")
    with atomic_write(path) as tmp:
        tmp.write_text("new")
        assert path.read_text() == "old" and tmp.suffix == ".json"
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["choices.json"]


def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "plot.png"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, durable=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_a_fixed_name_left_by_a_killed_writer_is_cleared(tmp_path):
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "00000010") as tmp:
        raise RuntimeError("only the name is wanted")
    tmp.mkdir()  # what a writer killed outright leaves
    (tmp / "params.safetensors").write_text("stale")
    with atomic_write(tmp_path / "00000010") as again:
        assert again == tmp and not again.exists()
        again.mkdir()
        (again / "training_state.pt").write_text("new")
    assert [p.name for p in (tmp_path / "00000010").iterdir()] == ["training_state.pt"]


def test_shared_writers_get_names_of_their_own_and_companions_follow(tmp_path):
    path = tmp_path / "net-int8.xml"
    with atomic_write(path, shared=True, companions=(".bin",)) as one, \
            atomic_write(path, shared=True, companions=(".bin",)) as two:
        assert one != two
        for tmp in (one, two):
            tmp.write_text(tmp.name)
            tmp.with_suffix(".bin").write_text("weights")
    assert path.read_text() == one.name  # the last to finish wins
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net-int8.bin", "net-int8.xml"]
