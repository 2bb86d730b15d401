#!/bin/sh
# A shell stand-in for bellhop-worker, for tests that start many workers and
# need none of their behaviour: it runs until SIGTERM and writes no heartbeat.
trap 'exit 0' TERM
while :; do
  sleep 1 &
  wait $!
done
