"""The baseline: a session worker that polls its queue, as the original design did.

Every interval it takes the whole queue in one transaction (MULTI, LRANGE 0
-1, LTRIM 1 0, EXEC), answers the items oldest first with the worker's own
JSON-RPC dispatcher and publishes each response, then sleeps. With no
--dataset it only polls, which is all an idle worker does.

    python bench/polling_worker.py --url URL --session ID [--dataset flights]
"""

from __future__ import annotations

import argparse
import time

import redis
from bellhop_shared.catalog import load_catalog, resolve
from bellhop_shared.keys import Keys
from bellhop_worker.dispatch import Dispatcher
from bellhop_worker.engine import Engine
from bellhop_worker.methods import build_methods
from bellhop_worker.status import WorkerStatus


def build_dispatcher(dataset: str | None, session_id: str) -> Dispatcher:
    """Return a dispatcher over the loaded dataset, or one with no methods."""
    if dataset is None:
        return Dispatcher({})
    spec = resolve(dataset, load_catalog())
    if spec is None:
        raise SystemExit(f"unknown dataset {dataset!r}; use a catalog name")
    engine = Engine.load(spec, None, lambda fraction: None)
    status = WorkerStatus("polling", session_id, dataset)
    return Dispatcher(build_methods(engine, status, lambda: None))


def poll_once(client: redis.Redis, queue: str) -> list[bytes]:
    """Take every queued item in one transaction; return them oldest first."""
    with client.pipeline(transaction=True) as pipe:
        pipe.lrange(queue, 0, -1)
        pipe.ltrim(queue, 1, 0)
        newest_first, _ = pipe.execute()
    return list(reversed(newest_first))


def serve(
    client: redis.Redis,
    keys: Keys,
    session_id: str,
    dispatcher: Dispatcher,
    interval_s: float,
) -> None:
    queue, results = keys.queue(session_id), keys.results(session_id)
    while True:
        for item in poll_once(client, queue):
            response = dispatcher.handle(item)
            if response is not None:
                client.publish(results, response)
        time.sleep(interval_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Redis URL (loopback)")
    parser.add_argument(
        "--session", required=True, help="session id whose queue to poll"
    )
    parser.add_argument("--dataset", default=None, help="dataset to load and serve")
    parser.add_argument("--interval-ms", type=float, default=50.0, help="poll interval")
    parser.add_argument("--ready-key", default=None, help="key to SET once serving")
    args = parser.parse_args()
    dispatcher = build_dispatcher(args.dataset, args.session)
    client = redis.Redis.from_url(args.url, socket_timeout=30.0)
    if args.ready_key:
        client.set(args.ready_key, "1")
    serve(client, Keys(), args.session, dispatcher, args.interval_ms / 1000)


if __name__ == "__main__":
    main()
