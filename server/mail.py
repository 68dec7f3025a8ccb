"""Email: messages from templates, sent by aiosmtplib over SMTP_URL or written as .eml files under var/mail."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import html
import logging
import os
import re
import string
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from .config import Config

log = logging.getLogger("server.mail")

TEMPLATES = Path(__file__).resolve().parent / "templates"
_STARTTLS = {"auto": None, "require": True, "off": False}  # None: upgrade when the server offers it


def render(name: str, values: dict, *, sender: str, recipient: str, message_id: str) -> EmailMessage:
    """templates/NAME.txt (a `Subject:` line, a blank line, the body) and NAME.html, filled from `values`."""
    head, _, body = (TEMPLATES / f"{name}.txt").read_text().partition("\n\n")
    subject = " ".join(string.Template(head.removeprefix("Subject:")).substitute(values).split())  # one line
    text = string.Template(body).substitute(values)
    escaped = {k: html.escape(str(v)) for k, v in values.items()}
    body_html = string.Template((TEMPLATES / f"{name}.html").read_text()).substitute(escaped)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(usegmt=True)
    message["Message-ID"] = message_id
    message.set_content(text)
    message.add_alternative(body_html, subtype="html")
    return message


def message_id(event_id: int, recipient: str, sender: str) -> str:
    """The same for every attempt at one (event, recipient), so receivers can also spot a duplicate."""
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(recipient.lower().encode()).hexdigest()[:16]
    return f"<event-{event_id}.{digest}@{domain}>"


class SmtpTransport:
    """One SMTP connection, opened on the first message and kept until close() or a failure.

    `smtp://user:pass@host:port` (port 25 by default) upgrades with STARTTLS when the server offers it;
    `?starttls=require` insists on it, `?starttls=off` never tries. `smtps://` (port 465) is TLS from the
    start. `?cafile=PATH` trusts the certificates in PATH besides the system's.
    """

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        starttls = options.get("starttls", "auto")
        if starttls not in _STARTTLS:
            raise ValueError("SMTP_URL's starttls option must be auto, require or off")
        self._settings = dict(
            hostname=parts.hostname or "localhost", port=parts.port or (465 if implicit else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit, start_tls=None if implicit else _STARTTLS[starttls],
            cert_bundle=options.get("cafile"), timeout=timeout)
        self._client: aiosmtplib.SMTP | None = None

    async def send(self, message: EmailMessage) -> None:
        try:
            if self._client is None:
                self._client = aiosmtplib.SMTP(**self._settings)
                await self._client.connect()
            await self._client.send_message(message)
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def close(self) -> None:
        if self._client is not None:
            try:
                await self._client.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass
            self._drop()


class FileTransport:
    """Each message as `<folder>/<message id>.eml`; a repeated message replaces its file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: EmailMessage) -> None:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", message["Message-ID"].strip("<>")) + ".eml"
        path = await asyncio.to_thread(self._write, name, bytes(message))
        log.info("mail to %s written to %s", message["To"], path)

    def _write(self, name: str, data: bytes) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see half a message
        return path

    async def close(self) -> None:
        pass


def make_transport(config: Config) -> SmtpTransport | FileTransport:
    if config.smtp_url:
        return SmtpTransport(config.smtp_url, config.smtp_timeout)
    return FileTransport(config.var_path / "mail")
