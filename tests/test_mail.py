"""Mail transports against a real SMTP server: auth from the URL, STARTTLS, implicit TLS, .eml files."""

from __future__ import annotations

import datetime
import email
import email.policy
import ssl

import aiosmtplib
import pytest
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.config import Config, ConfigError
from server.mail import FileTransport, SmtpTransport, message_id, render
from tests.outbox_kit import Inbox, start_smtp


def _message(to: str = "ann@example.com"):
    return render("welcome", {"name": "Ann <&>", "username": "ann", "email": to}, sender="Blog <blog@example.org>",
                  recipient=to, message_id=message_id(7, to, "Blog <blog@example.org>"))


def test_render_fills_both_bodies_and_escapes_html():
    message = _message()
    assert message["Subject"] == "Welcome to the blog, Ann <&>"
    assert message["Message-ID"] == message_id(7, "ANN@example.com", "blog@example.org")
    assert message["Message-ID"].endswith("@example.org>")
    assert "Hello Ann <&>," in message.get_body(("plain",)).get_content()
    assert "Hello Ann &lt;&amp;&gt;," in message.get_body(("html",)).get_content()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, and its file to trust."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return folder / "cert.pem", context


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"mailer" and auth_data.password == b"p@ss/word"
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself


async def test_starttls_and_login_from_the_url(tls_files):
    cafile, context = tls_files
    inbox = Inbox()
    controller = start_smtp(inbox, tls_context=context, require_starttls=True, authenticator=_authenticator,
                            auth_required=True)
    try:
        url = f"smtp://mailer:p%40ss%2Fword@127.0.0.1:{controller.port}?starttls=require&cafile={cafile}"
        transport = SmtpTransport(url, timeout=5)
        await transport.send(_message("a@example.com"))
        await transport.send(_message("b@example.com"))  # the same connection
        await transport.close()
        assert [m["To"] for m in inbox.messages] == ["a@example.com", "b@example.com"]
        wrong = SmtpTransport(url.replace("p%40ss", "nope"), timeout=5)
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await wrong.send(_message())
        untrusted = SmtpTransport(url.split("&cafile")[0], timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusted.send(_message())
    finally:
        controller.stop()


async def test_smtps_is_tls_from_the_first_byte(tls_files):
    cafile, context = tls_files
    inbox = Inbox()
    controller = start_smtp(inbox, ssl_context=context)
    try:
        transport = SmtpTransport(f"smtps://127.0.0.1:{controller.port}?cafile={cafile}", timeout=5)
        await transport.send(_message())
        await transport.close()
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


async def test_file_transport_writes_one_eml_per_message_id(tmp_path):
    transport = FileTransport(tmp_path / "mail")
    await transport.send(_message())
    await transport.send(_message())  # a repeat replaces the same file
    files = list((tmp_path / "mail").iterdir())
    assert len(files) == 1 and files[0].suffix == ".eml"
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "ann@example.com" and parsed.get_body(("html",)) is not None


def test_smtp_settings_are_checked():
    with pytest.raises(ConfigError, match="SMTP_URL must start with smtp:// or smtps://"):
        Config.from_env({"SMTP_URL": "http://mail:25"})
    with pytest.raises(ValueError, match="starttls option"):
        SmtpTransport("smtp://mail:25?starttls=maybe", timeout=5)
    assert "hunter2" not in repr(Config.from_env({"SMTP_URL": "smtp://u:hunter2@mail:587"}))
