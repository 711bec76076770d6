"""The server's settings: declared once, read from flags and a TOML file in that order, checked with one
sentence each, and shown in docs/configuration.md exactly as declared."""

from __future__ import annotations

from pathlib import Path

import pytest
from workerctl.runtime.settings import (
    SETTINGS,
    ServerSettings,
    SettingsError,
    load_settings,
    markdown_table,
)

CONFIGURATION_PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_defaults_serve_the_development_material_on_8443():
    settings = load_settings()
    assert (settings.host, settings.port, settings.job_timeout) == ("127.0.0.1", 8443, 60.0)
    assert settings.cert.name == "server.pem" and settings.users.name == "dev-users.toml"


def test_flags_beat_the_file_which_beats_the_defaults(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text('port = 9000\njob-timeout = 5\nmax_jobs = 7\n')
    settings = load_settings(config, port="9001", job_timeout=None)
    assert (settings.port, settings.job_timeout, settings.max_jobs) == (9001, 5.0, 7)


@pytest.mark.parametrize("flags, message", [
    ({"port": "99999"}, "port must be between 0 and 65535, not 99999"),
    ({"job_timeout": "0"}, "job-timeout must be a positive number of seconds or days"),
    ({"job_timeout": "soon"}, "job-timeout cannot be 'soon'"),
    ({"kill_grace": "-1"}, "kill-grace must be zero or more seconds"),
    ({"max_jobs": "0"}, "max-jobs must be at least 1, not 0"),
    ({"max_output_bytes": "1000"}, "max-output-bytes must be at least 1048576, not 1000"),
    ({"containment": "docker"}, "containment must be 'auto', 'cgroup' or 'process', not 'docker'"),
    ({"log_level": "loud"}, "log-level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not 'loud'"),
])
def test_a_bad_value_is_one_sentence_naming_the_flag(flags, message):
    with pytest.raises(SettingsError) as raised:
        load_settings(**flags)
    assert str(raised.value) == message


@pytest.mark.parametrize("content, message", [
    ("colour = 'blue'", "has an unknown setting 'colour'"),
    ("port = [", "is not valid TOML"),
    ("port = 1.5", "port cannot be 1.5"),
    ("port = true", "port cannot be True"),
])
def test_a_bad_settings_file_is_one_sentence(tmp_path, content, message):
    config = tmp_path / "server.toml"
    config.write_text(content)
    with pytest.raises(SettingsError, match=message):
        load_settings(config)


def test_every_setting_is_declared_with_help_and_a_flag():
    assert [setting.name for setting in SETTINGS] == list(ServerSettings.__dataclass_fields__)
    for setting in SETTINGS:
        assert setting.help and setting.kind in (str, int, float, bool, Path) and setting.shown


def test_the_configuration_page_shows_the_settings_as_declared():
    assert markdown_table() in CONFIGURATION_PAGE.read_text()
