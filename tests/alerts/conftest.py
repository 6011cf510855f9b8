"""Fixtures for the alert tests: real SMTP and HTTP servers on loopback, and job metrics written as the runner does."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.conftest import make_config
from warehouse.jobs.results import replace_windows
from warehouse.jobs.runner import METRICS_SCHEMA, METRICS_TABLE, Metric, metrics_table

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
SMTP_USER, SMTP_PASSWORD = "alerts", "s3cret-pass"


def put_metric(data_dir: Path, metric: str, value: float | None, labels: dict | None = None, **window) -> None:
    """One series' value in a window; see ``put_metrics``."""
    put_metrics(data_dir, metric, [(labels or {}, value)], **window)


def put_metrics(data_dir: Path, metric: str, series: list[tuple[dict, float | None]], *, start: dt.datetime = T0,
                hours: int = 24, verdict: str | None = None, detail: dict | None = None,
                threshold: float | None = None, job: str = "variance") -> None:
    """Write job_metrics rows exactly as the runner does: all of ``job``'s rows of that window are replaced."""
    window = (start, start + dt.timedelta(hours=hours))
    metrics = [Metric(window, metric, value, labels, verdict, threshold, detail) for labels, value in series]
    replace_windows(data_dir, METRICS_TABLE, job, METRICS_SCHEMA, [window], metrics_table(job, metrics, start))


def alert_config(data_dir: Path, **overrides):
    """A configuration with fast retries; other settings from ``overrides`` (dotted as ``a__b``)."""
    values = {"alerts__delivery__backoff_initial_s": 0.01, "alerts__delivery__backoff_max_s": 0.05}
    values.update(overrides)
    return make_config(data_dir, **values)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------------------------------- SMTP

@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages


class _Collect:
    def __init__(self, server: SmtpServer):
        self.server = server

    async def handle_DATA(self, smtp, session, envelope):  # noqa: N802 - aiosmtpd hook name
        self.server.envelopes.append(envelope)
        self.server.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def _authenticator(server: SmtpServer):
    def check(smtp, session, envelope, mechanism, auth_data):
        ok = auth_data.login.decode() == SMTP_USER and auth_data.password.decode() == SMTP_PASSWORD
        if ok:
            server.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 535
    return check


def start_smtp(tls: ssl.SSLContext | None = None, implicit_tls: bool = False, login: bool = False,
               port: int | None = None):
    """A real aiosmtpd server on loopback (a free port unless given); returns (controller, SmtpServer)."""
    server = SmtpServer("127.0.0.1", port or free_port())
    kwargs: dict[str, Any] = {"server_hostname": "localhost"}
    if login:
        kwargs.update(authenticator=_authenticator(server), auth_require_tls=tls is not None)
    if tls is not None and not implicit_tls:
        kwargs["tls_context"] = tls
    controller = Controller(_Collect(server), hostname=server.host, port=server.port,
                            ssl_context=tls if implicit_tls else None, **kwargs)
    controller.start()
    return controller, server


@pytest.fixture
def smtp_server():
    controller, server = start_smtp(login=True)
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (cert.pem doubles as the CA file), made with `cryptography`."""
    crypto = pytest.importorskip("cryptography")
    del crypto
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "inferledger test")])
    now = dt.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return directory / "cert.pem", directory / "key.pem"


def server_tls_context(tls_files) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    return context


# ------------------------------------------------------------------------------------------- HTTP

@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200
    delay_s: float = 0.0


def _handler(receiver: HttpReceiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server hook name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            time.sleep(receiver.delay_s)
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def http_receiver():
    """A real HTTP server in a thread on a free loopback port, recording every POST."""
    receiver = HttpReceiver("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook/secret-token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
