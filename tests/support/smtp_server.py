#!/usr/bin/env python3
"""A real SMTP server for Roster's notification tests, built on aiosmtpd.

It listens on --host (127.0.0.1 unless given) and --port, and records every message it accepts
as one JSON file in --dir (written whole, then renamed into place), so a test counts deliveries
by reading records, never logs. Each record holds the envelope, the Message-ID and the parsed
MIME parts (the HTML part's link targets too). Chosen recipients are refused: --reject ADDR
answers RCPT with a permanent 550, --tempfail ADDR with a temporary 451. --auth USER:PASS
requires SMTP AUTH (PLAIN or LOGIN; by default without TLS, this is loopback only).
--hold-while PATH answers each message's DATA only once PATH no longer exists (writing
PATH.held when the first one waits), so a test can act between a message's sending and the
server's reply.

TLS, with --tls-cert FILE --tls-key FILE (PEM): --starttls offers STARTTLS and refuses every
command but EHLO/NOOP/QUIT/STARTTLS before it; --implicit-tls wraps the listener itself in TLS
(smtps). Each record says whether its session ran over TLS ("tls") and which version.

It prints "READY <port>" once it accepts connections, and stops on SIGTERM or SIGINT; the test
kills it and starts it again on the same port to play a mail server outage.
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
import uuid
import warnings
from html.parser import HTMLParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class LinkCollector(HTMLParser):
    """Collects the href of every <a>, with HTML character references resolved."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.extend(value for name, value in attrs if name == "href" and value)


class Recorder:
    def __init__(self, directory, reject, tempfail, hold_while=None):
        self.directory = directory
        self.reject = set(reject)
        self.tempfail = set(tempfail)
        self.hold_while = hold_while

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        if address in self.tempfail:
            return f"451 4.3.0 <{address}>: mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.hold_while is not None and os.path.exists(self.hold_while):
            with open(self.hold_while + ".held", "w", encoding="utf-8"):
                pass
            while os.path.exists(self.hold_while):
                await asyncio.sleep(0.05)
        # After STARTTLS or on an implicit-TLS listener the transport is a TLS one.
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = None
        html = None
        for part in message.walk():
            if part.is_multipart():
                continue
            if part.get_content_type() == "text/plain" and text is None:
                text = part.get_content()
            elif part.get_content_type() == "text/html" and html is None:
                html = part.get_content()
        links = []
        if html is not None:
            collector = LinkCollector()
            collector.feed(html)
            links = collector.links
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "message_id": str(message.get("Message-ID", "")),
            "from": str(message.get("From", "")),
            "to": str(message.get("To", "")),
            "subject": str(message.get("Subject", "")),
            "auto_submitted": str(message.get("Auto-Submitted", "")),
            "content_type": message.get_content_type(),
            "text": text,
            "html": html,
            "html_links": links,
            "received_at": time.time(),
            "tls": ssl_object is not None,
            "tls_version": ssl_object.version() if ssl_object is not None else None,
        }
        name = uuid.uuid4().hex
        partial = os.path.join(self.directory, f".{name}.partial")
        with open(partial, "w", encoding="utf-8") as file:
            json.dump(record, file)
        os.replace(partial, os.path.join(self.directory, f"{name}.json"))
        return "250 2.0.0 OK: queued"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True, help="where the JSON records go")
    parser.add_argument("--reject", action="append", default=[], help="answer 550 for ADDR")
    parser.add_argument("--tempfail", action="append", default=[], help="answer 451 for ADDR")
    parser.add_argument("--auth", help="USER:PASS that clients must authenticate with")
    parser.add_argument("--hold-while", help="answer DATA only once this path is gone")
    parser.add_argument("--tls-cert", help="PEM certificate chain of the server")
    parser.add_argument("--tls-key", help="PEM private key of the server")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--starttls", action="store_true", help="offer and require STARTTLS")
    mode.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte")
    args = parser.parse_args()
    if (args.starttls or args.implicit_tls) != bool(args.tls_cert and args.tls_key):
        parser.error("--starttls/--implicit-tls need --tls-cert and --tls-key, and vice versa")
    os.makedirs(args.dir, exist_ok=True)

    options = {}
    # AUTH without TLS is what this loopback-only test server is for; aiosmtpd warns about it.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    if args.auth:
        user, _, password = args.auth.partition(":")

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            return AuthResult(success=ok)

        options = {
            "auth_required": True,
            "auth_require_tls": False,
            "authenticator": authenticate,
        }

    controller_options = {}
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.starttls:
            options.update(tls_context=context, require_starttls=True)
        else:
            controller_options["ssl_context"] = context

    controller = Controller(
        Recorder(args.dir, args.reject, args.tempfail, args.hold_while),
        hostname=args.host,
        port=args.port,
        ready_timeout=30,
        **controller_options,
        **options,
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"READY {args.port}", flush=True)
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
