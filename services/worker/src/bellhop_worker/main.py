"""Command line entry point: `bellhop-worker --session ID --dataset NAME [--user ID]`.

Settings come from the environment (REDIS_URL, WORKER_ID, WORKER_IDLE_TIMEOUT_S,
WORKER_HEARTBEAT_INTERVAL_S, WORKER_HEARTBEAT_TTL_S, BELLHOP_CATALOG, ...). The
exit status is 0 after terminate, idle or SIGTERM, 2 when the dataset cannot
be loaded and 1 on any other error.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bellhop_shared.logging import configure_logging
from pydantic import ValidationError

from bellhop_worker.runtime import Assignment, ExitCode, WorkerRuntime
from bellhop_worker.settings import WorkerSettings

logger = logging.getLogger(__name__)


def _session_id(value: str) -> str:
    if not value or len(value) > 128 or not value.isprintable() or " " in value:
        raise argparse.ArgumentTypeError(
            f"invalid session id {value[:40]!r}: use 1 to 128 printable characters "
            "without spaces"
        )
    return value


_VALUE_OPTIONS = ("--session", "--dataset", "--user")


def _join_option_values(argv: list[str]) -> list[str]:
    """Rewrite `--session VALUE` as `--session=VALUE`.

    Session ids are URL-safe base64 and may start with "-", which argparse
    would otherwise read as an option instead of the value.
    """
    joined: list[str] = []
    position = 0
    while position < len(argv):
        arg = argv[position]
        if arg in _VALUE_OPTIONS and position + 1 < len(argv):
            joined.append(f"{arg}={argv[position + 1]}")
            position += 2
        else:
            joined.append(arg)
            position += 1
    return joined


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bellhop-worker",
        description="Serve one Bellhop session: load its dataset into memory and "
        "answer the JSON-RPC requests queued for it in Redis.",
    )
    parser.add_argument(
        "--session", required=True, type=_session_id, help="session id to serve"
    )
    parser.add_argument(
        "--dataset", required=True, help="dataset name from the catalog, e.g. flights"
    )
    parser.add_argument(
        "--user", default=None, help="user id, bound in per-user dataset queries"
    )
    return parser.parse_args(
        _join_option_values(sys.argv[1:] if argv is None else argv)
    )


def main(argv: list[str] | None = None) -> None:
    """Run one worker and exit with its status."""
    args = parse_args(argv)
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        configure_logging()
        logger.error("worker settings are invalid, not starting: %s", exc)
        sys.exit(ExitCode.ERROR)
    configure_logging(settings.log_level, settings.log_format)
    assignment = Assignment(args.session, args.dataset, args.user)
    sys.exit(WorkerRuntime(settings, assignment).run())


if __name__ == "__main__":
    main()
