"""Email: build an alert message (HTML and plain text) and send any message over SMTP.

``send_message(smtp, message)`` is shared with the reports package: it fills in what
the message lacks (From, To, Date, Message-ID) from ``[smtp]``, then either writes one
``.eml`` file into ``smtp.mailbox_dir`` or talks SMTP (plain, STARTTLS or TLS from the
start, with login when ``username`` is set; the password comes from the environment
variable ``password_env``). Failures raise ``RetryableDeliveryError`` (server down,
timeout, 4xx) or ``PermanentDeliveryError`` (login refused, recipients rejected, bad
certificate, missing password).

Messages of one alert episode (firing, reminders, resolution) share a thread:
reminders and the resolution answer the firing message (``In-Reply-To``), so mail
clients group them.
"""
from __future__ import annotations

import os
import smtplib
import socket
import ssl
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from alerts.config import SmtpConfig
from alerts.errors import PermanentDeliveryError, RetryableDeliveryError
from alerts.notification import Notification
from alerts.render import render_email
from warehouse.landing import write_atomically


def build_alert_email(notification: Notification, smtp: SmtpConfig, templates_dir: Path | None) -> EmailMessage:
    rendered = render_email(notification, templates_dir)
    message = EmailMessage()
    message["Subject"] = rendered.subject
    thread_id = f"<{notification.thread or notification.alert_id}@inferledger>"
    if notification.kind == "firing":
        message["Message-ID"] = thread_id
    else:
        message["Message-ID"] = make_msgid(idstring=notification.notification_id, domain="inferledger")
        message["In-Reply-To"] = message["References"] = thread_id
    message["X-Inferledger-Alert"] = notification.alert_id
    message["X-Inferledger-Event"] = notification.kind
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    _complete_headers(smtp, message)
    return message


def send_message(smtp: SmtpConfig, message: EmailMessage) -> None:
    """Deliver ``message`` as ``[smtp]`` says: into ``mailbox_dir`` or to the SMTP server."""
    _complete_headers(smtp, message)
    if smtp.mailbox_dir is not None:
        _write_to_mailbox(Path(smtp.mailbox_dir), message)
        return
    if not smtp.host:
        raise PermanentDeliveryError("[smtp] has neither host nor mailbox_dir: email is not configured")
    try:
        _send_smtp(smtp, message)
    except smtplib.SMTPAuthenticationError as exc:
        raise PermanentDeliveryError(f"SMTP login refused: {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentDeliveryError(f"SMTP refused the recipients: {', '.join(exc.recipients)}") from None
    except smtplib.SMTPNotSupportedError as exc:
        raise PermanentDeliveryError(f"SMTP server does not support it: {exc}") from None
    except smtplib.SMTPResponseException as exc:
        error = RetryableDeliveryError if 400 <= exc.smtp_code < 500 else PermanentDeliveryError
        raise error(f"SMTP error {exc.smtp_code}: {_text(exc.smtp_error)}") from None
    except ssl.SSLCertVerificationError as exc:
        raise PermanentDeliveryError(f"TLS certificate of {smtp.host} not trusted: {exc.verify_message}") from None
    except (OSError, smtplib.SMTPException) as exc:  # refused, unreachable, timeout, disconnected
        raise RetryableDeliveryError(f"SMTP {smtp.host}:{smtp.effective_port}: {type(exc).__name__}: {exc}") from None


def _send_smtp(smtp: SmtpConfig, message: EmailMessage) -> None:
    context = _tls_context(smtp)
    host, port, timeout, local = smtp.host, smtp.effective_port, smtp.timeout_s, socket.gethostname()
    if smtp.security == "ssl":
        client = smtplib.SMTP_SSL(host, port, local_hostname=local, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(host, port, local_hostname=local, timeout=timeout)
    try:
        if smtp.security == "starttls":
            client.starttls(context=context)
        if smtp.username:
            client.login(smtp.username, _password(smtp))
        refused = client.send_message(message)
    finally:
        _close(client)
    if refused:
        raise PermanentDeliveryError(f"SMTP refused some recipients: {', '.join(sorted(refused))}")


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


def _password(smtp: SmtpConfig) -> str:
    password = os.environ.get(smtp.password_env)
    if not password:
        raise PermanentDeliveryError(f"[smtp] username is set but environment variable {smtp.password_env} "
                                     "(smtp.password_env) is empty")
    return password


def _tls_context(smtp: SmtpConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None)
    if not smtp.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _complete_headers(smtp: SmtpConfig, message: EmailMessage) -> None:
    if "From" not in message:
        message["From"] = smtp.sender
    if "To" not in message:
        if not smtp.recipients:
            raise PermanentDeliveryError("the message has no To and [smtp] recipients is empty")
        message["To"] = ", ".join(smtp.recipients)
    if "Date" not in message:
        message["Date"] = format_datetime(datetime.now(UTC))
    if "Message-ID" not in message:
        message["Message-ID"] = make_msgid(domain="inferledger")


def _write_to_mailbox(directory: Path, message: EmailMessage) -> None:
    """One ``.eml`` file per message, renamed into place so a reader never sees half of one."""
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(message.as_bytes(), directory / name, directory, fsync=True)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
