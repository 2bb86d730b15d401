"""Logging setup: key=value lines by default, JSON lines with LOG_FORMAT=json.

Every formatted line passes through `redact`, so a URL with a password or a
bearer token that slips into a message is masked before it is written.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from typing import Any

_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRET_FIELD = re.compile(
    r"(?i)\b(token|secret|password|authorization|api_key)=([^\s]+)"
)

# uvicorn adds color_message, a copy of the message with terminal colours.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}


def redact(text: str) -> str:
    """Mask credentials in URLs, bearer tokens and secret-named fields."""
    text = _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)
    text = _BEARER.sub(r"\1***", text)
    return _SECRET_FIELD.sub(r"\1=***", text)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


class KeyValueFormatter(logging.Formatter):
    """Format `time level logger message key=value...`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"{stamp}.{int(record.msecs):03d}Z",
            record.levelname,
            record.name,
            record.getMessage(),
        ]
        parts += [f"{k}={v}" for k, v in _extra_fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """Format one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(_extra_fields(record))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


def configure_logging(level: str = "INFO", fmt: str = "kv") -> None:
    """Send every logger's records to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; route its records through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True


def describe_error(exc: BaseException) -> str:
    """Return an error's class name and message, for log lines.

    redis-py 8 makes repr() of its errors a category and a class name
    ("network:ConnectionError"), which leaves out the message.
    """
    message = str(exc)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


class LogThrottle:
    """Lets one log line through per interval and counts the ones held back."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last_s = -math.inf
        self._held_back = 0

    @property
    def is_active(self) -> bool:
        """Whether a line went through since the last `end`."""
        return self._last_s != -math.inf

    def allow(self) -> int | None:
        """Return None to hold this line back, else how many were held back."""
        now = time.monotonic()
        if now - self._last_s < self._interval_s:
            self._held_back += 1
            return None
        held_back, self._held_back = self._held_back, 0
        self._last_s = now
        return held_back

    def end(self) -> int:
        """End the run of repeats; return how many were held back since the last line.

        The next line goes through at once, so a new run is not hidden.
        """
        held_back, self._held_back = self._held_back, 0
        self._last_s = -math.inf
        return held_back
