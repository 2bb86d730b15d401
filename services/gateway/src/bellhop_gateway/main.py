"""`bellhop-gateway`: run the gateway with uvicorn.

Settings come from the environment (see GatewaySettings); --host and --port
override GATEWAY_HOST and PORT.
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from bellhop_shared.logging import configure_logging
from pydantic import ValidationError

from bellhop_gateway.app import create_app
from bellhop_gateway.settings import GatewaySettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bellhop-gateway",
        description="Socket.IO gateway that attaches browser sessions to workers.",
    )
    parser.add_argument("--host", help="interface to bind (default: GATEWAY_HOST)")
    parser.add_argument("--port", type=int, help="TCP port (default: PORT or 8000)")
    return parser.parse_args(argv)


def load_settings(args: argparse.Namespace) -> GatewaySettings:
    overrides: dict[str, object] = {}
    if args.host:
        overrides["gateway_host"] = args.host
    if args.port:
        overrides["port"] = args.port
    try:
        return GatewaySettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        sys.exit(f"bellhop-gateway: invalid settings:\n{describe_errors(exc)}")


def describe_errors(exc: ValidationError) -> str:
    """List each invalid setting without its value, which may be a secret."""
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        lines.append(f"  {name.upper()}: {error['msg']}")
    return "\n".join(lines)


def quiet_libraries() -> None:
    """Keep library loggers at INFO or above, whatever LOG_LEVEL is.

    At DEBUG, uvicorn logs every websocket frame, connect auth included (JWTs,
    resume tokens), and httpx logs every orchestrator call at INFO.
    """
    for name in ("uvicorn.error", "httpcore", "redis", "websockets"):
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(parse_args(argv))
    configure_logging(settings.log_level, settings.log_format)
    quiet_libraries()
    uvicorn.run(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.port,
        log_config=None,
        access_log=False,
        ws_max_size=settings.engine_max_bytes,
        # Compressing every frame costs the gateway more CPU than the filter
        # costs the worker; Socket.IO's own server leaves it off too.
        ws_per_message_deflate=settings.gateway_ws_compression,
    )


if __name__ == "__main__":
    main()
