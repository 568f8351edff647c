"""A real SMTP server (aiosmtpd) for hookgate's email tests.

    smtp_server.py DIR [--port N] [--starttls] [--auth USER:PASSWORD]

Listens on 127.0.0.1 (port N, or any free port), prints `listening PORT` once ready, and appends
every accepted message to DIR/messages.jsonl as one JSON object: envelope sender and
recipients, Message-ID, decoded Subject, To/Cc, and the decoded text and HTML bodies.
--starttls makes a test CA (DIR/cert.pem, for the client's CA file) and a certificate for
localhost/127.0.0.1, and requires STARTTLS before MAIL; --auth requires AUTH with that login.
"""
import argparse
import logging
import asyncio
import datetime
import email
import email.policy
import ipaddress
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# aiosmtpd logs a warning about its own internals (Session.login_data) on every login.
logging.getLogger("mail.log").setLevel(logging.ERROR)


def make_cert(directory):
    """A test CA (DIR/cert.pem, for the client to trust) and a localhost leaf it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, signing_key, ca):
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(public_key)
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = (b.add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                 .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        return b.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("hookgate test CA", "hookgate test CA", ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = build("localhost", "hookgate test CA", key.public_key(), ca_key, False)
    ca_path = os.path.join(directory, "cert.pem")
    leaf_path, key_path = os.path.join(directory, "leaf.pem"), os.path.join(directory, "key.pem")
    with open(ca_path, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(leaf_path, "wb") as f:
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(leaf_path, key_path)
    return ctx


class Recorder:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "message_id": msg["Message-ID"],
            "subject": str(msg["Subject"]),
            "to": str(msg["To"] or ""),
            "cc": str(msg["Cc"] or ""),
            # Line ends as the sender wrote them (SMTP carries CRLF).
            "text": text.get_content().replace("\r\n", "\n") if text else None,
            "html": html.get_content().replace("\r\n", "\n") if html else None,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return "250 OK"


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--starttls", action="store_true")
    p.add_argument("--auth")
    a = p.parse_args()
    handler = Recorder(os.path.join(a.dir, "messages.jsonl"))
    tls = make_cert(a.dir) if a.starttls else None
    kwargs = {}
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
                and auth_data.password.decode() == password
            # handled=False: aiosmtpd answers the failure with 535 itself.
            return AuthResult(success=ok, handled=False)

        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(tls))
    if tls:
        kwargs.update(tls_context=tls, require_starttls=True)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost", **kwargs), "127.0.0.1", a.port)
    print("listening", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
