"""The responder half of the bare Redis round trip: BLPOP, then PUBLISH.

It answers every item popped from the queue by publishing a fixed response
text, read once from a file, on the channel. It does no JSON work, so a round
trip through it is the floor of Bellhop's queue path.

    python bench/redis_responder.py --url URL --queue KEY --channel NAME \
        --response-file PATH
"""

from __future__ import annotations

import argparse
from pathlib import Path

import redis

BLOCK_TIMEOUT_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Redis URL (loopback)")
    parser.add_argument("--queue", required=True, help="list to BLPOP")
    parser.add_argument("--channel", required=True, help="channel to PUBLISH on")
    parser.add_argument("--response-file", required=True, type=Path)
    args = parser.parse_args()
    response = args.response_file.read_bytes()
    client = redis.Redis.from_url(args.url, socket_timeout=30.0)
    while True:
        if client.blpop([args.queue], BLOCK_TIMEOUT_S) is not None:
            client.publish(args.channel, response)


if __name__ == "__main__":
    main()
