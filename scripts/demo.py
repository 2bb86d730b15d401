"""Filter a dataset through a running Bellhop gateway, from the command line.

Connects over Socket.IO (websocket transport) and prints the session's
progress while its worker loads the dataset. Then it sends one filter, or the
same filter --repeat times, and prints the count, the top facet values, the
worker's time and the round trip measured here.

    python scripts/demo.py
    python scripts/demo.py --filter '{"where": {"origin": ["JFK"]}}' --repeat 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import socketio

DEFAULT_FILTER = {"where": {"carrier": ["UA", "DL"], "origin": ["JFK"], "month": [7]}}
TOP_FACET_VALUES = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # `make run` reads GATEWAY_PORT too, so the two agree without --url.
    port = os.environ.get("GATEWAY_PORT", "8000")
    parser.add_argument(
        "--url",
        default=f"ws://127.0.0.1:{port}",
        help="gateway URL (default: port GATEWAY_PORT, else 8000, on 127.0.0.1)",
    )
    parser.add_argument("--dataset", default="flights", help="catalog name")
    parser.add_argument(
        "--filter",
        default=None,
        help="filter params as JSON (where, exclude, range, limit, ...); by "
        "default UA and DL from JFK in July for flights, and the most common "
        "value of the first facet field for other datasets",
    )
    parser.add_argument("--token", help="signed token, for a gateway with a secret")
    parser.add_argument(
        "--repeat", type=int, default=1, help="times to send the filter"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for ready"
    )
    return parser.parse_args(argv)


def http_url(url: str) -> str:
    """Return url with ws/wss turned into http/https, which the client expects."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit(parts._replace(scheme=scheme))


class Session:
    """A Socket.IO connection that prints session events until a final state."""

    def __init__(self) -> None:
        self.sio = socketio.Client(reconnection=False)
        self.final: dict[str, Any] | None = None
        self.rejection: Any = None
        self._done = threading.Event()
        self._started = time.monotonic()
        self.sio.on("session", self._on_session)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)

    def _on_session(self, event: dict[str, Any]) -> None:
        elapsed_s = time.monotonic() - self._started
        percent = f"{event.get('progress', 0) * 100:3.0f}%"
        print(f"[{elapsed_s:6.2f} s] {event['state']:<12} {percent} {event['message']}")
        if event["state"] in ("ready", "failed", "ended"):
            self.final = event
            self._done.set()

    def _on_connect_error(self, data: Any) -> None:
        self.rejection = data

    def _on_disconnect(self, *reason: Any) -> None:
        self._done.set()

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(timeout_s)


def print_result(result: dict[str, Any], round_trip_ms: float) -> None:
    print(f"count: {result['count']:,} rows")
    for field, counts in result.get("facets", {}).items():
        top = sorted(counts.items(), key=lambda item: -item[1])[:TOP_FACET_VALUES]
        shown = ", ".join(f"{value} {count:,}" for value, count in top if count)
        print(f"  {field}: {shown or '-'}")
    print(f"worker took {result['took_ms']:.2f} ms, round trip {round_trip_ms:.1f} ms")


class DemoError(Exception):
    """A step of the demo failed; the message names the step and the reason."""


def default_filter(session: Session, dataset: str) -> dict[str, Any]:
    """Return the demo filter for flights, else one built from `describe`."""
    if dataset == "flights":
        return DEFAULT_FILTER
    request = {"jsonrpc": "2.0", "id": 0, "method": "describe"}
    response = session.sio.call("rpc", request, timeout=60)
    if "error" in response:
        raise DemoError(f"describe failed: {response['error']['message']}")
    for name, info in response["result"]["fields"].items():
        values = info.get("values")
        if info.get("kind") == "facet" and values:
            # The worker accepts a number as its key text ("7" for month 7).
            return {"where": {name: [max(values, key=values.get)]}}
    print(f"dataset {dataset} has no facet field, so the filter has no conditions")
    return {}


def run_filters(session: Session, params: dict[str, Any], repeat: int) -> int:
    round_trips_ms: list[float] = []
    for n in range(1, repeat + 1):
        request = {"jsonrpc": "2.0", "id": n, "method": "filter", "params": params}
        started = time.perf_counter()
        response = session.sio.call("rpc", request, timeout=60)
        round_trips_ms.append((time.perf_counter() - started) * 1000)
        if "error" in response:
            print(f"error {response['error']['code']}: {response['error']['message']}")
            return 1
    print_result(response["result"], round_trips_ms[-1])
    if repeat > 1:
        print(
            f"round trip over {repeat} requests: min {min(round_trips_ms):.1f} ms, "
            f"median {statistics.median(round_trips_ms):.1f} ms, "
            f"max {max(round_trips_ms):.1f} ms"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    params: dict[str, Any] | None = None
    if args.filter is not None:
        try:
            params = json.loads(args.filter)
        except ValueError as exc:
            print(f"--filter is not valid JSON: {exc}", file=sys.stderr)
            return 2
    auth = {"dataset": args.dataset} | ({"token": args.token} if args.token else {})
    session = Session()
    print(f"connecting to {args.url} for dataset {args.dataset}")
    try:
        session.sio.connect(
            http_url(args.url), auth=auth, transports=["websocket"], wait_timeout=10
        )
    except socketio.exceptions.ConnectionError as exc:
        # The gateway's rejections carry a reason object; a bare string is the
        # client's own report of a network failure.
        if isinstance(session.rejection, dict):
            print(f"connection rejected: {session.rejection}", file=sys.stderr)
        else:
            print(
                f"cannot connect to the gateway at {args.url} ({exc}); "
                "start it with `make run` or pass --url",
                file=sys.stderr,
            )
        return 1
    try:
        if not session.wait(args.timeout) or session.final is None:
            print(
                f"the session was not ready within {args.timeout:g} s", file=sys.stderr
            )
            return 1
        if session.final["state"] != "ready":
            return 1
        if params is None:
            try:
                params = default_filter(session, args.dataset)
            except DemoError as exc:
                print(str(exc), file=sys.stderr)
                return 1
        print(f"filter: {json.dumps(params)}")
        return run_filters(session, params, max(1, args.repeat))
    finally:
        session.sio.disconnect()


if __name__ == "__main__":
    sys.exit(main())
