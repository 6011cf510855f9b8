"""API keys: stored hashed, private, atomically replaced; the gate's answers; when a server may start."""
from __future__ import annotations

import json
import stat

import pytest
from typer.testing import CliRunner

from inferledger.app import RunningServer, StartupError, build_pipeline
from inferledger.auth import (AuthConfig, AuthFailure, Gate, authenticate, create_key, gate_for, is_loopback,
                              keys_path, list_keys, presented_key, revoke_key)
from inferledger.cli import app
from tests.conftest import make_config


def test_key_file_holds_hashes_only_and_is_private(tmp_path):
    record, plain = create_key(tmp_path, "auditor", "alice", tenant="acme")
    text = keys_path(tmp_path).read_text()
    secret = plain.split("_", 2)[2]
    assert plain not in text and secret not in text
    stored = json.loads(text)["keys"][0]
    assert stored["id"] == record.id and stored["role"] == "auditor" and stored["tenant"] == "acme"
    assert stored["revoked"] is False and stored["created_at"].endswith("Z")
    assert stat.S_IMODE(keys_path(tmp_path).stat().st_mode) == 0o600
    assert not list(keys_path(tmp_path).parent.glob("*.tmp"))  # written via a temporary file, renamed


def test_authenticate_known_unknown_and_revoked_keys(tmp_path):
    record, plain = create_key(tmp_path, "admin", "root")
    principal = authenticate(tmp_path, plain)
    assert (principal.key_id, principal.name, principal.role, principal.tenant) == (record.id, "root", "admin", None)
    assert authenticate(tmp_path, plain[:-1] + ("x" if plain[-1] != "x" else "y")) is None  # wrong secret
    assert authenticate(tmp_path, "not-a-key") is None
    assert revoke_key(tmp_path, record.id).revoked
    assert authenticate(tmp_path, plain) is None
    assert [k.revoked for k in list_keys(tmp_path)] == [True]


def test_bad_key_requests_are_refused_with_reasons(tmp_path):
    with pytest.raises(ValueError, match="unknown role"):
        create_key(tmp_path, "superuser", "x")
    with pytest.raises(ValueError, match="needs a name"):
        create_key(tmp_path, "ingest", "  ")
    with pytest.raises(ValueError, match="admin keys act on every tenant"):
        create_key(tmp_path, "admin", "root", tenant="acme")
    with pytest.raises(KeyError, match="no API key"):
        revoke_key(tmp_path, "abcdef")


def test_gate_messages_say_what_is_wrong(tmp_path):
    record, plain = create_key(tmp_path, "ingest", "checkout-service")
    gate = Gate(tmp_path, required=True)
    cases = {
        "missing": ({}, 401, "missing API key"),
        "malformed": ({"Authorization": "Bearer nonsense"}, 401, "malformed API key"),
        "unknown": ({"X-API-Key": "ilk_aaaaaaaaaaaa_secret"}, 401, "unknown API key"),
        "role": ({"x-api-key": plain}, 403,
                 f"{record.id} (checkout-service) has role 'ingest'; this needs auditor or admin"),
    }
    for headers, status, message in cases.values():
        with pytest.raises(AuthFailure) as failure:
            gate.require(headers, "auditor")
        assert failure.value.status == status and message in failure.value.message
    revoke_key(tmp_path, record.id)  # the gate re-reads the changed file: no restart needed
    with pytest.raises(AuthFailure, match="was revoked"):
        gate.require({"x-api-key": plain}, "ingest")


def test_gate_without_required_keys_still_holds_a_presented_key_to_its_scope(tmp_path):
    _, plain = create_key(tmp_path, "auditor", "acme auditor", tenant="acme")
    gate = Gate(tmp_path, required=False)
    assert gate.principal({}).role == "admin"  # no key, loopback, auth off: full access
    assert gate.principal({"authorization": f"Bearer {plain}"}).tenant == "acme"
    with pytest.raises(AuthFailure):
        gate.principal({"authorization": "Bearer ilk_aaaaaaaaaaaa_secret"})


def test_presented_key_and_loopback():
    assert presented_key({"Authorization": "Bearer k1"}) == "k1"
    assert presented_key({"authorization": "bearer  k2 "}) == "k2"
    assert presented_key({"X-API-Key": "k3"}) == "k3"
    assert presented_key({"Authorization": "Basic abc"}) is None
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "10.1.2.3", "::", "example.com"]))


def test_startup_rules(tmp_path):
    auto = AuthConfig()
    assert gate_for(tmp_path, "127.0.0.1", auto).required is False
    assert gate_for(tmp_path, "127.0.0.1", AuthConfig(mode="off")).required is False
    with pytest.raises(Exception, match="holds no active API key"):
        gate_for(tmp_path, "0.0.0.0", auto)
    with pytest.raises(Exception, match='mode is "off"'):
        gate_for(tmp_path, "0.0.0.0", AuthConfig(mode="off"))
    with pytest.raises(Exception, match='mode is "required"'):
        gate_for(tmp_path, "127.0.0.1", AuthConfig(mode="required"))
    record, _ = create_key(tmp_path, "ingest", "svc")
    assert gate_for(tmp_path, "0.0.0.0", auto).required is True
    revoke_key(tmp_path, record.id)  # a revoked key does not count
    with pytest.raises(Exception, match="holds no active API key"):
        gate_for(tmp_path, "0.0.0.0", auto)


def test_server_on_a_non_loopback_host_without_keys_does_not_start(tmp_path):
    with pytest.raises(StartupError, match="server.host 0.0.0.0 is not loopback|not loopback"):
        build_pipeline(make_config(tmp_path / "data", server__host="0.0.0.0"))
    with pytest.raises(StartupError, match='mode is "off"'):
        build_pipeline(make_config(tmp_path / "data", server__host="0.0.0.0", auth__mode="off"))


def test_server_on_all_interfaces_with_a_key_starts_and_requires_it(tmp_path):
    import httpx

    _, plain = create_key(tmp_path / "data", "auditor", "alice")
    with RunningServer(make_config(tmp_path / "data", server__host="0.0.0.0", server__grpc_enabled=False)) as server:
        url = f"http://127.0.0.1:{server.pipeline.http_port}/api/v1/whoami"
        assert httpx.get(url).status_code == 401
        answer = httpx.get(url, headers={"X-API-Key": plain}).json()
        assert answer["name"] == "alice" and answer["authentication_required"] is True


def test_keys_cli_create_list_revoke(tmp_path):
    runner = CliRunner()
    data_dir = str(tmp_path / "data")
    created = runner.invoke(app, ["keys", "create", "--role", "auditor", "--tenant", "acme", "--name", "alice",
                                  "--data-dir", data_dir])
    assert created.exit_code == 0, created.output
    plain = created.stdout.strip().splitlines()[-1]
    assert plain.startswith("ilk_") and authenticate(tmp_path / "data", plain).tenant == "acme"
    key_id = list_keys(tmp_path / "data")[0].id
    listed = runner.invoke(app, ["keys", "list", "--data-dir", data_dir])
    assert listed.exit_code == 0 and key_id in listed.stdout and "acme" in listed.stdout and plain not in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", key_id, "--data-dir", data_dir]).exit_code == 0
    assert authenticate(tmp_path / "data", plain) is None
    bad = runner.invoke(app, ["keys", "revoke", "nope", "--data-dir", data_dir])
    assert bad.exit_code == 1 and "no API key" in bad.output
