#!/usr/bin/env python3
"""The hosted service's Python SDK (`ngrok` on PyPI, unchanged) as a real agent for
innergate's tunnel end-to-end tests. Same command line and output as the Rust agent
(test-agents/ngrok-rs):

  python_agent.py --server-addr HOST:PORT --ca-cert FILE --authtoken TOKEN \\
      --endpoint PROTO,URL,FORWARD[,internal][,pool] [--endpoint ...]

- stdout: one JSON line {"id", "url", "proto"} per endpoint once all are bound,
  then READY; CLOSED after the session was closed on request.
- It runs until SIGTERM, SIGINT or EOF on stdin (so it dies with a test that holds
  its stdin), then closes the session and exits 0.
- Connect, auth or bind refused or timed out: a message on stderr, exit 2 (argparse
  exits 2 on bad usage as well).
- SDK_AGENT_LOG=DEBUG (or ERROR, WARN, INFO, TRACE) shows the SDK's log on stderr.

Run it with the venv's python from scripts/sdk/install.sh.

Differences the SDK imposes (1.7.0, built on the ngrok crate 0.18):
- No binding() on its builders: an internal endpoint is asked for by its host
  alone (`*.internal`), so `internal` on any other host is refused here.
- Heartbeat settings are whole seconds; the millisecond flags are rounded up.
"""

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

EXIT_REFUSED = 2
PROTOS = ("http", "https", "tcp", "tls")


@dataclass
class EndpointSpec:
    """One --endpoint, parsed: what to bind and where its connections go."""

    proto: str
    host: str
    port: int | None  # only for tcp: the port of the endpoint's address
    internal: bool
    pool: bool
    forward: str


def parse_endpoint(text: str) -> EndpointSpec:
    """PROTO,URL,FORWARD[,internal][,pool], with the same checks as the Rust agent."""
    fields = text.split(",")
    if len(fields) < 3:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected PROTO,URL,FORWARD[,internal][,pool]"
        )
    proto, url, forward, *flags = fields
    if proto not in PROTOS:
        raise argparse.ArgumentTypeError(f"unknown PROTO {proto!r} (http, https, tcp, tls)")
    parts = urlsplit(url)
    if parts.scheme != proto:
        raise argparse.ArgumentTypeError(f"URL {url} does not have the {proto} scheme")
    if not parts.hostname:
        raise argparse.ArgumentTypeError(f"URL {url} has no host")
    try:
        port = parts.port
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"URL {url}: {e}") from None
    # The builders take a bare domain for http and tls endpoints (no port field in
    # the bind), so only the scheme's default port can be asked for.
    default_port = {"http": 80, "https": 443, "tls": 443}.get(proto)
    if proto == "tcp":
        if port is None:
            raise argparse.ArgumentTypeError(f"URL {url} needs a port")
    elif port not in (None, default_port):
        raise argparse.ArgumentTypeError(
            f"URL {url}: the SDK cannot bind a {proto} endpoint on port {port}, only on the default one"
        )
    else:
        port = None
    forward_scheme = urlsplit(forward).scheme
    if forward_scheme not in PROTOS:
        raise argparse.ArgumentTypeError(f"FORWARD {forward}: scheme must be http, https, tcp or tls")
    host = parts.hostname
    internal = host.endswith(".internal")
    pool = False
    for flag in flags:
        if flag == "internal":
            internal = True
        elif flag == "pool":
            pool = True
        else:
            raise argparse.ArgumentTypeError(f"unknown flag {flag!r} (internal, pool)")
    return EndpointSpec(proto, host, port, internal, pool, forward)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python_agent.py",
        description="The ngrok Python SDK as a test agent for innergate's tunnel listener",
    )
    p.add_argument("--server-addr", required=True, metavar="HOST:PORT",
                   help="the tunnel listener to dial (the SDK's server_addr)")
    p.add_argument("--ca-cert", required=True, metavar="FILE",
                   help="PEM file with the CA that signed the tunnel listener's certificate (ca_cert)")
    p.add_argument("--authtoken", default=os.environ.get("NGROK_AUTHTOKEN"),
                   help="an innergate authtoken [env: NGROK_AUTHTOKEN]")
    p.add_argument("--endpoint", dest="endpoints", action="append", required=True,
                   type=parse_endpoint, metavar="SPEC",
                   help="PROTO,URL,FORWARD[,internal][,pool]; PROTO is http, https, tcp or tls, "
                        "e.g. https,https://app.internal,http://127.0.0.1:9000. Repeatable")
    p.add_argument("--heartbeat-interval-ms", type=int, metavar="MS",
                   help="how often the SDK sends a heartbeat (rounded up to whole seconds)")
    p.add_argument("--heartbeat-tolerance-ms", type=int, metavar="MS",
                   help="how long the SDK waits for a heartbeat's answer before it reconnects "
                        "(rounded up to whole seconds)")
    p.add_argument("--timeout-secs", type=float, default=10, metavar="SECS",
                   help="bound on connecting (TCP, TLS, Auth) and on each Bind (default: 10)")
    p.add_argument("--ignore-stdin", action="store_true",
                   help="do not stop at EOF on stdin (for callers that start it with stdin closed)")
    args = p.parse_args(argv)
    if not args.authtoken:
        p.error("the following arguments are required: --authtoken (or NGROK_AUTHTOKEN)")
    for spec in args.endpoints:
        if spec.internal and not spec.host.endswith(".internal"):
            p.error(f"{spec.host}: this SDK has no binding(); only a *.internal host makes an internal endpoint")
    return args


class Refused(Exception):
    """Connecting, authenticating or binding failed: exit 2 with this message."""


def whole_seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


async def guarded(what: str, awaitable, limit: float):
    """Awaits an SDK call with a deadline, turning any failure into Refused."""
    try:
        return await asyncio.wait_for(awaitable, limit)
    except asyncio.TimeoutError:
        raise Refused(f"{what}: timed out after {limit} s") from None
    except Exception as e:  # the SDK raises plain Exceptions with the server's message
        raise Refused(f"{what}: {describe(e)}") from None


def describe(e: BaseException) -> str:
    """The SDK's exceptions carry (summary, cause) tuples; print them as a chain."""
    if len(e.args) > 1 and all(isinstance(a, str) for a in e.args):
        return ": ".join(e.args)
    return str(e)


async def bind(session, spec: EndpointSpec):
    """Binds one endpoint and starts forwarding its connections to spec.forward."""
    if spec.proto in ("http", "https"):
        b = session.http_endpoint().scheme(spec.proto.upper()).domain(spec.host)
    elif spec.proto == "tcp":
        b = session.tcp_endpoint().remote_addr(f"{spec.host}:{spec.port}")
    else:
        # No termination(): the endpoint is TLS passthrough, so the SDK's forwarder
        # hands a tls:// upstream the client's bytes unchanged.
        b = session.tls_endpoint().domain(spec.host)
    b = b.pooling_enabled(spec.pool)
    # Should a later SDK grow binding(), use it; 1.7.0 has none (see the module doc).
    if spec.internal and hasattr(b, "binding"):
        b = b.binding("internal")
    return await b.listen_and_forward(spec.forward)


async def wait_for_stop(ignore_stdin: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not ignore_stdin:
        # A daemon thread, so that a blocked read does not hold up the exit.
        def read_to_eof():
            try:
                while sys.stdin.buffer.read1(256):
                    pass
            except (OSError, ValueError):
                pass  # stdin closed outright counts as EOF
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=read_to_eof, daemon=True).start()
    await stop.wait()


async def run(args: argparse.Namespace, ngrok) -> None:
    limit = args.timeout_secs
    try:
        with open(args.ca_cert, "rb") as f:
            ca = f.read()
    except OSError as e:
        raise Refused(f"reading --ca-cert {args.ca_cert}: {e}") from None

    try:
        builder = ngrok.SessionBuilder().authtoken(args.authtoken)
        # server_addr panics (PanicException, a BaseException) on an address it
        # cannot parse.
        builder.server_addr(args.server_addr).ca_cert(bytearray(ca))
        if args.heartbeat_interval_ms is not None:
            builder.heartbeat_interval(whole_seconds(args.heartbeat_interval_ms))
        if args.heartbeat_tolerance_ms is not None:
            builder.heartbeat_tolerance(whole_seconds(args.heartbeat_tolerance_ms))
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise Refused(f"configuring the session: {describe(e)}") from None

    session = await guarded(f"connecting to {args.server_addr}", builder.connect(), limit)
    listeners = []
    for spec in args.endpoints:
        listener = await guarded(f"binding {spec.proto} endpoint {spec.host}", bind(session, spec), limit)
        listeners.append(listener)

    for listener in listeners:
        line = {"id": listener.id(), "url": listener.url(), "proto": listener.proto()}
        print(json.dumps(line), flush=True)
    print("READY", flush=True)

    await wait_for_stop(args.ignore_stdin)
    await guarded("closing the session", session.close(), limit)
    print("CLOSED", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        import ngrok
    except ImportError as e:
        print(f"python_agent: {e}; run scripts/sdk/install.sh and use the python it prints",
              file=sys.stderr)
        return EXIT_REFUSED
    level = os.environ.get("SDK_AGENT_LOG")
    if level:
        logging.basicConfig(stream=sys.stderr, level=logging.DEBUG)
        ngrok.log_level(level.upper())
    try:
        asyncio.run(run(args, ngrok))
    except Refused as e:
        print(f"python_agent: {e}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def exit_now(code: int) -> None:
    """Exits without the interpreter's finalization: once a session ran, the SDK's
    own threads crash it there (`Fatal Python error: PyGILState_Release ...`,
    SIGBUS or SIGABRT instead of the exit status)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
