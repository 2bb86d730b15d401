#!/usr/bin/env bash
# Install Debian's chromium for the browser tests, when /usr/bin/chromium is
# missing. Playwright drives this browser; it never downloads one of its own,
# so never run `playwright install`.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "install-browser: /usr/bin/chromium is already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-browser: root is needed to apt-get install chromium; run it with sudo" >&2
  exit 1
fi

apt-get update -qq
# Read the policy into a variable first: with pipefail, grep -q closing the
# pipe early would fail the whole pipeline.
policy="$(apt-cache policy chromium)"
if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
  echo "install-browser: no chromium package in the apt sources; add Debian's main repository" >&2
  exit 1
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation
/usr/bin/chromium --version
