"""The server's settings: declared once, read from flags and a TOML file in that order, checked by msgspec
against their declarations with one sentence each, and shown in docs/configuration.md exactly as declared."""

from __future__ import annotations

from pathlib import Path

import pytest
from workerctl.runtime.settings import (
    FRONT_END_SETTINGS,
    SETTINGS,
    SUPERVISOR_SETTINGS,
    ServerSettings,
    SettingsError,
    SettingsFileError,
    changed_flags,
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
    ({"port": "99999"}, "port must be a whole number from 0 to 65535, not '99999'"),
    ({"job_timeout": "0"}, "job-timeout must be a positive number of seconds, not '0'"),
    ({"job_timeout": "soon"}, "job-timeout must be a positive number of seconds, not 'soon'"),
    ({"kill_grace": "-1"}, "kill-grace must be zero or more seconds, not '-1'"),
    ({"max_jobs": "0"}, "max-jobs must be a whole number, at least 1, not '0'"),
    ({"max_output_bytes": "1000"}, "max-output-bytes must be a whole number of bytes, at least 1048576, not '1000'"),
    ({"job_memory": "lots"}, "job-memory must be a size of 1 byte or more (bytes, or a number with K, M, G or T), "
                             "not 'lots'"),
    ({"job_cpus": "0"}, "job-cpus must be a positive number of cores, not '0'"),
    ({"retention_days": "0"}, "retention-days must be a positive number of days, not '0'"),
    ({"rate_limit": "-1"}, "rate-limit must be zero or more requests per second, not '-1'"),
    ({"containment": "docker"}, "containment must be 'auto', 'cgroup' or 'process', not 'docker'"),
    ({"log_level": "loud"}, "log-level must be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL', not 'loud'"),
    ({"name": "a host"}, "name must be a host's name (letters, digits, '.', '_' or '-', starting with a letter or "
                         "digit, at most 64), not 'a host'"),
    ({"max_job_timeout": "5"}, "max-job-timeout must be at least job-timeout (60)"),
    ({"require_client_cert": True}, "require-client-cert needs --client-ca, the CA that signs the client "
                                    "certificates"),
])
def test_a_bad_value_is_one_sentence_naming_the_flag(flags, message):
    with pytest.raises(SettingsError) as raised:
        load_settings(**flags)
    assert str(raised.value) == message


@pytest.mark.parametrize("content, message", [
    ("colour = 'blue'", "has an unknown setting 'colour'"),
    ("port = [", "is not valid TOML"),
    ("port = 1.5", r"port must be a whole number from 0 to 65535, not 1\.5$"),
    ("port = true", "port must be a whole number from 0 to 65535, not True$"),
    ("require-client-cert = 'yes'", "require-client-cert must be true or false, not 'yes'$"),
    ("cert = 5", "cert must be a file's path, not 5$"),
])
def test_a_bad_settings_file_is_one_sentence(tmp_path, content, message):
    config = tmp_path / "server.toml"
    config.write_text(content)
    with pytest.raises(SettingsError, match=message):
        load_settings(config)


def test_a_value_is_typed_as_its_declaration_says(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text('job-memory = "4G"\nport = 9000.0\nmax_job_processes = 3\nlog-level = "debug"\n')
    settings = load_settings(config, home_size="512M", cert="~/server.pem", require_client_cert=True,
                             client_ca="ca.pem")
    assert (settings.job_memory, settings.home_size, settings.port) == (4 * 1024**3, 512 * 1024**2, 9000)
    assert (settings.job_processes, settings.log_level) == (3, "DEBUG")
    assert settings.cert == Path.home() / "server.pem" and settings.client_ca == Path("ca.pem")
    assert load_settings(max_job_processes="5").job_processes == 5


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda setting: setting.name)
def test_every_setting_refuses_a_value_of_the_wrong_kind_naming_its_flag_and_rule(tmp_path, setting):
    config = tmp_path / "server.toml"
    config.write_text(f"{setting.flag_name} = [1, 2]\n")
    with pytest.raises(SettingsFileError) as raised:
        load_settings(config)
    assert str(raised.value) == f"settings file {config}: {setting.flag_name} must {setting.rule}, not [1, 2]"


def test_every_setting_is_declared_with_help_and_a_flag():
    assert [setting.name for setting in SETTINGS] == list(ServerSettings.__struct_fields__)
    for setting in SETTINGS:
        assert setting.help and setting.rule and setting.kind in (str, int, float, bool, Path) and setting.shown
        assert (setting.metavar is None) == (setting.kind is bool)


def test_the_roles_come_from_the_declarations():
    assert FRONT_END_SETTINGS[:3] == ("host", "port", "cert") and "audit_log" in FRONT_END_SETTINGS
    assert SUPERVISOR_SETTINGS[:2] == ("data_dir", "job_timeout") and "name" in SUPERVISOR_SETTINGS
    assert not set(FRONT_END_SETTINGS) & set(SUPERVISOR_SETTINGS)
    both = {setting.name for setting in SETTINGS} - set(FRONT_END_SETTINGS) - set(SUPERVISOR_SETTINGS)
    assert both == {"kill_grace", "cluster", "log_level"}
    changed = load_settings(port="9000", job_memory="2G", log_level="DEBUG")
    assert changed_flags(changed, FRONT_END_SETTINGS) == ["--port"]
    assert changed_flags(changed, SUPERVISOR_SETTINGS) == ["--job-memory"]


def test_the_configuration_page_shows_the_settings_as_declared():
    assert markdown_table() in CONFIGURATION_PAGE.read_text()
