"""What the sandbox hides from jobs, decided without running anything."""

from __future__ import annotations

from pathlib import Path

from workerctl.runtime.settings import ServerSettings
from workerctl.supervisor.sandbox import hidden_from_jobs


def test_a_directory_of_workerctls_own_is_hidden_whole_and_a_shared_one_only_for_the_file(tmp_path: Path) -> None:
    own, shared = tmp_path / "etc-workerctl", tmp_path / "ssl"
    settings = ServerSettings(data_dir=tmp_path / "data", key=own / "server-key.pem", users=own / "users.toml",
                              audit_log=shared / "audit.log")
    assert hidden_from_jobs(settings) == (tmp_path / "data", own, shared / "audit.log")


def test_hidden_paths_are_real_paths(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    settings = ServerSettings(data_dir=tmp_path / "link" / "data", key=tmp_path / "link" / "key.pem",
                              users=tmp_path / "link" / "users.toml")
    assert hidden_from_jobs(settings) == (tmp_path / "real" / "data", tmp_path / "real" / "key.pem",
                                          tmp_path / "real" / "users.toml")
