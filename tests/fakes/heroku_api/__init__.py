"""A local fake of the Heroku Platform API's dyno endpoints, for tests.

Run it as its own process from the repository root:

    python -m tests.fakes.heroku_api --port 5500

and point the orchestrator at it with HEROKU_API_URL=http://127.0.0.1:5500.
It behaves like the real API where the orchestrator depends on it: the Accept
header (406), bearer auth (401), create-body validation (422 invalid_params),
a token-bucket rate limit (429 rate_limit, no Retry-After), the per-app one-off
limit (422 cannot_run_above_limit), Range pagination (206 + Next-Range), and
Request-Id and RateLimit-Remaining headers. Each dyno runs as a local process
(`sh -c <command>`) with the fake's environment, the configured config vars
and the dyno's env; it starts as `starting`, turns `up`, and disappears when
the process exits or its time_to_live passes. Stop sends SIGTERM to the
dyno's process group, then SIGKILL after a grace period.

Settings come from FAKE_HEROKU_* variables (see settings.py). Test-only admin
endpoints under /_fake need no auth and cost no rate-limit tokens:

- POST /_fake/faults  {"status": 429, "count": 3, "method": "POST",
  "path_contains": "/dynos", "after": false}: the next `count` matching calls
  fail with `status`; with "after": true the call takes effect first (a lost
  response).
- POST /_fake/config  {"rate_capacity", "rate_refill_per_s", "tokens",
  "one_off_limit", "info_404_count"}: change limits while running.
- GET /_fake/dynos: every dyno with its pid and env.
- GET /_fake/stats: call counts per method and path, and dynos created.
- POST /_fake/reset: kill every dyno and restore the settings.
"""
