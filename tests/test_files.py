"""Run files are written whole or not at all, with the permissions the umask gives."""

import os
import stat

from mhmoe.files import write_json, write_text


def test_files_get_the_umasks_permissions_not_mkstemps(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "hello\n")
        write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert (tmp_path / "a.txt").read_text() == "hello\n" and not list(tmp_path.glob(".*"))
