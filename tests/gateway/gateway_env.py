"""Settings of the test gateways, importable by name from any test module.

They live outside conftest.py because `from conftest import ...` may load
another directory's conftest when the whole suite runs.
"""

from __future__ import annotations

ORCHESTRATOR_TOKEN = "orchestrator-test-token"
GATEWAY_SECRET = "gateway-test-secret-of-at-least-32-bytes"

# Small limits and short timeouts, so each test reaches them quickly.
TEST_SETTINGS = {
    "GATEWAY_HOST": "127.0.0.1",
    "GATEWAY_RESUME_GRACE_S": "5",
    "GATEWAY_RPC_TIMEOUT_S": "5",
    "GATEWAY_MAX_MESSAGE_BYTES": "4096",
    "GATEWAY_RATE_LIMIT": "5",
    "GATEWAY_RATE_BURST": "10",
    "GATEWAY_MAX_QUEUE": "5",
    "GATEWAY_STATE_POLL_S": "0.2",
    "LOG_LEVEL": "DEBUG",
}
