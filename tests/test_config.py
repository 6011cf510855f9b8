"""Configuration: defaults, file, environment and CLI precedence, and exact error messages."""
from __future__ import annotations

from pathlib import Path

import pytest

from inferledger.config import ConfigError, load_config, subject_key


def test_defaults_need_no_file():
    config = load_config(None, environ={})
    assert (config.server.http_port, config.server.grpc_port, config.server.host) == (4318, 4317, "127.0.0.1")
    assert config.ingest.capture_content is False
    assert config.data_dir == Path("inferledger-data")


def test_precedence_file_then_environment_then_options(tmp_path):
    path = tmp_path / "inferledger.toml"
    path.write_text('data_dir = "/from/file"\n[server]\nhttp_port = 5000\ngrpc_port = 5001\n')
    config = load_config(path, environ={"INFERLEDGER_SERVER__GRPC_PORT": "6001", "INFERLEDGER_DATA_DIR": "/env"},
                         server__http_port=None)
    assert (config.server.http_port, config.server.grpc_port, config.data_dir) == (5000, 6001, Path("/env"))
    config = load_config(path, environ={"INFERLEDGER_SERVER__GRPC_PORT": "6001"}, server__grpc_port=7001)
    assert config.server.grpc_port == 7001 and config.data_dir == Path("/from/file")


def test_config_file_from_environment(tmp_path):
    path = tmp_path / "elsewhere.toml"
    path.write_text("[ingest]\ncapture_content = true\n")
    assert load_config(None, environ={"INFERLEDGER_CONFIG": str(path)}).ingest.capture_content is True


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[server]\nhttp_port = -1\n", "server.http_port: Input should be greater than or equal to 0 (got -1)"),
        ("[ingest]\nmax_body_bytes = 'big'\n", "ingest.max_body_bytes: Input should be a valid integer"),
        ("[nope]\nx = 1\n", "nope: unknown setting"),
        ("[storage]\nseal_interval_s = 0\n", "storage.seal_interval_s: Input should be greater than 0"),
    ],
)
def test_bad_values_are_named(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert f"invalid configuration in {path}" in str(error.value)
    assert expected in str(error.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})


def test_subject_key_from_environment_or_generated_once(tmp_path):
    config = load_config(None, environ={}, data_dir=tmp_path)
    assert subject_key(config, {"INFERLEDGER_SUBJECT_KEY": "0a0b"}) == b"\x0a\x0b"
    generated = subject_key(config, {})
    assert len(generated) == 32 and subject_key(config, {}) == generated
    assert (tmp_path / "keys" / "subject.key").stat().st_mode & 0o777 == 0o600


def test_storage_settings_reach_the_storage_layer(tmp_path):
    from inferledger.app import storage_settings

    config = load_config(None, environ={}, data_dir=tmp_path, storage__wal_compression="lz4",
                         storage__compaction_enabled=False, storage__max_wal_file_bytes=8 * 1024 * 1024)
    settings = storage_settings(config, book=None)
    assert settings.wal_compression == "lz4" and settings.compaction.enabled is False
    assert settings.max_wal_file_bytes == 8 * 1024 * 1024
    assert storage_settings(load_config(None, environ={}), book=None).wal_compression is None


def test_budget_names_are_unique_and_job_names_known(tmp_path):
    from inferledger.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="budget names must be unique; repeated: all"):
        load_config(None, environ={}, budgets=[{"name": "all", "amount_usd": 1.0}, {"name": "all", "amount_usd": 2.0}])
    with pytest.raises(ConfigError, match="unknown job name.*rolups"):
        load_config(None, environ={}, jobs__disabled=["rolups"])
