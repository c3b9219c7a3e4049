#!/usr/bin/env python3
"""A real SMTP server on 127.0.0.1 for the integration tests: aiosmtpd's SMTP
protocol behind an asyncio server, storing every accepted message.

    sink.py --dir DIR [--port PORT] [--mode plain|starttls|implicit]
            [--tls-cert FILE --tls-key FILE] [--auth USER:PASSWORD]
            [--drop-first-reply]

Every accepted message is written to DIR as <n>.eml (n counting from 1; the
exact bytes after the DATA dot-unstuffing, CRLF line ends as sent), first to
a temporary name and then renamed, so a reader never sees half a file.

--mode plain (default) speaks cleartext SMTP. --mode starttls offers
STARTTLS and refuses everything but EHLO, NOOP, STARTTLS and QUIT before it
(530). --mode implicit speaks TLS from the first byte, like port 465. Both
TLS modes need --tls-cert and --tls-key (PEM).

--auth USER:PASSWORD requires AUTH (PLAIN or LOGIN) with exactly these
credentials before MAIL (530 otherwise, 535 on wrong ones). AUTH is
advertised in plain mode and implicit TLS from the start, and in starttls
mode only after STARTTLS. Without --auth no AUTH is advertised.

--drop-first-reply: the first message is stored as usual, but its
connection is then cut without the reply to the final "." (a lost reply:
the client retries and the message arrives twice).

stdout: one line `listening <port>` once the socket accepts, then one JSON
line per stored message: {"file": ..., "mail_from": ..., "rcpt_tos": [...]}.
The reply to the final "." is `250 OK queued as <n>`. Runs until SIGTERM or
SIGINT, then exits 0. Diagnostics go to stderr.
"""

import argparse
import asyncio
import hmac
import json
import logging
import os
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOSTNAME = "sink.test"
DATA_SIZE_LIMIT = 1024 * 1024


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Sink:
    """aiosmtpd handler: stores messages, optionally drops the first reply."""

    def __init__(self, directory: str, drop_first_reply: bool, auth: bool):
        self.directory = directory
        self.drop_first_reply = drop_first_reply
        self.auth = auth
        self.count = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # The hook replaces aiosmtpd's own bookkeeping, so record the name.
        session.host_name = hostname
        if not self.auth:
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        return responses

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        n = self.count
        name = os.path.join(self.directory, f"{n}.eml")
        temp = os.path.join(self.directory, f".{n}.eml.tmp")
        with open(temp, "wb") as f:
            f.write(envelope.original_content)
        os.replace(temp, name)
        emit(json.dumps({
            "file": name,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
        }))
        if n == 1 and self.drop_first_reply:
            # Cut the connection before the 250 goes out. abort() closes the
            # socket at once (through the TLS layer too, without close_notify);
            # aiosmtpd's connection_lost then cancels this coroutine, so the
            # reply below is never written.
            server.transport.abort()
            await asyncio.sleep(60)
            return "421 4.4.2 connection dropped"
        return f"250 OK queued as {n}"


def authenticator(user: bytes, password: bytes):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and hmac.compare_digest(auth_data.login, user)
            and hmac.compare_digest(auth_data.password, password)
        )
        return AuthResult(success=ok)
    return check


async def serve(args) -> None:
    loop = asyncio.get_running_loop()
    os.makedirs(args.dir, exist_ok=True)
    directory = os.path.abspath(args.dir)

    tls = None
    if args.mode != "plain":
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)

    smtp_options = dict(
        hostname=HOSTNAME,
        data_size_limit=DATA_SIZE_LIMIT,
        loop=loop,
    )
    if args.mode == "starttls":
        smtp_options.update(tls_context=tls, require_starttls=True)
    if args.auth is not None:
        user, _, password = args.auth.partition(":")
        smtp_options.update(
            auth_required=True,
            authenticator=authenticator(user.encode(), password.encode()),
            # aiosmtpd counts only STARTTLS as encryption: implicit TLS and
            # plain loopback must allow AUTH without it.
            auth_require_tls=(args.mode == "starttls"),
        )

    handler = Sink(directory, args.drop_first_reply, args.auth is not None)
    server = await loop.create_server(
        lambda: SMTP(handler, **smtp_options),
        host="127.0.0.1",
        port=args.port,
        ssl=tls if args.mode == "implicit" else None,
    )
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    emit(f"listening {port}")
    await stop.wait()
    server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=["plain", "starttls", "implicit"],
                        default="plain")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--auth", metavar="USER:PASSWORD")
    parser.add_argument("--drop-first-reply", action="store_true")
    args = parser.parse_args()
    if args.mode != "plain" and not (args.tls_cert and args.tls_key):
        parser.error(f"--mode {args.mode} needs --tls-cert and --tls-key")
    if args.auth is not None and ":" not in args.auth:
        parser.error("--auth takes USER:PASSWORD")

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="sink.py: %(levelname)s %(name)s: %(message)s")
    # AUTH over plain loopback or implicit TLS is intended here.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").addFilter(
        lambda record: "auth_require_tls == False" not in record.getMessage())

    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
