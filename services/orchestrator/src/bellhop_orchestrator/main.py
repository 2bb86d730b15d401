"""Console entry point: `bellhop-orchestrator` (settings from the environment)."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from bellhop_shared.logging import configure_logging
from pydantic import ValidationError

from bellhop_orchestrator.app import create_app
from bellhop_orchestrator.settings import OrchestratorSettings, get_settings

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bellhop-orchestrator",
        description="Run the Bellhop orchestrator REST API. Settings come from the "
        "environment (PORT, REDIS_URL, PROVIDER, ORCHESTRATOR_TOKEN, ...).",
    )
    parser.add_argument("--host", help="interface to bind (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default: PORT or 8100)")
    return parser.parse_args(argv)


def load_settings() -> OrchestratorSettings:
    """Read the settings, or exit with status 2 and one line per problem."""
    try:
        return get_settings()
    except ValidationError as exc:
        # Report location and message only: the input values may be secrets.
        for error in exc.errors(include_url=False, include_input=False):
            location = ".".join(str(part) for part in error["loc"]) or "settings"
            print(f"bellhop-orchestrator: {location}: {error['msg']}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    host = args.host or settings.host
    port = args.port or settings.port
    logger.info("orchestrator listening host=%s port=%d", host, port)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        access_log=settings.log_level.upper() == "DEBUG",
    )


if __name__ == "__main__":
    main()
