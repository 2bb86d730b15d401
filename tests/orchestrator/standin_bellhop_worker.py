"""A stand-in for bellhop-worker that follows its process contract cheaply.

It writes the heartbeat key (`{prefix}session:{sid}:worker`, JSON with a TTL)
every WORKER_HEARTBEAT_INTERVAL_S and exits 0 on SIGTERM after deleting the
key, without loading any data. Test switches, from the environment:
STANDIN_IGNORE_SIGTERM=1 ignores SIGTERM (only SIGKILL stops it),
STANDIN_NO_HEARTBEAT=1 never writes a heartbeat, and STANDIN_HEARTBEAT_FOR_S=N
stops writing it after N seconds but keeps running, as a hung worker would.
Its file name contains `bellhop_worker`, so the local provider's /proc scan
recognises it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time

import redis


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--session", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--user")
    # Session ids may start with "-", which argparse takes for an option
    # unless the value is attached with "=", as the real worker does too.
    argv = sys.argv[1:]
    for index, arg in enumerate(argv[:-1]):
        if arg == "--session":
            argv[index : index + 2] = [f"--session={argv[index + 1]}"]
            break
    args = parser.parse_args(argv)

    stop = {"requested": False}
    if os.environ.get("STANDIN_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))

    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    prefix = os.environ.get("BELLHOP_KEY_PREFIX", "bellhop:")
    key = f"{prefix}session:{args.session}:worker"
    interval_s = float(os.environ.get("WORKER_HEARTBEAT_INTERVAL_S", "1"))
    ttl_s = float(os.environ.get("WORKER_HEARTBEAT_TTL_S", "5"))
    beat = os.environ.get("STANDIN_NO_HEARTBEAT") != "1"
    beat_for_s = float(os.environ.get("STANDIN_HEARTBEAT_FOR_S", "inf"))
    started = time.time()
    while not stop["requested"]:
        if beat and time.time() - started < beat_for_s:
            payload = {
                "worker_id": os.environ.get("WORKER_ID", "w-standin"),
                "session_id": args.session,
                "dataset": args.dataset,
                "state": "ready",
                "progress": 1.0,
                "message": "",
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
                "started_at": started,
                "updated_at": time.time(),
                "requests": 0,
            }
            client.set(key, json.dumps(payload), px=int(ttl_s * 1000))
        time.sleep(interval_s)
    client.delete(key)
    sys.exit(0)


if __name__ == "__main__":
    main()
