#!/bin/sh
# ENTRYPOINT of the worker image: run bellhop-worker with whatever the
# container was given, in any of the three shapes that reach it.
#
#   docker run IMAGE --session ID --dataset NAME
#       Arguments only, the usual `docker run` form: prepend bellhop-worker.
#   docker run IMAGE bellhop-worker --session ID --dataset NAME
#       A full command as separate words, which is what Heroku's one-off
#       dyno `command` ("bellhop-worker --session ...") amounts to when the
#       runtime splits it: run it as given.
#   docker run IMAGE "bellhop-worker --session ID --dataset NAME"
#       The same command as one word, in case a runtime passes it unsplit:
#       split it on blanks (never through a shell) and run that.
#
# exec replaces this shell, so the worker is the process that receives
# SIGTERM from `docker stop` or the Heroku dyno manager.
set -eu

# One word that contains a blank: split it on blanks, with globbing off, so
# the words are the command's own and nothing in them is expanded.
if [ "$#" -eq 1 ]; then
  case "$1" in
    *" "*)
      set -f
      # shellcheck disable=SC2086 # word splitting is the point here
      set -- $1
      set +f
      ;;
  esac
fi

# No arguments means no session: a misconfigured run (for example a Heroku
# `worker` formation scaled above 0), not something to start.
if [ "$#" -eq 0 ]; then
  echo "worker-entrypoint: missing arguments;" \
    "usage: IMAGE --session ID --dataset NAME [--user ID]" >&2
  exit 2
fi

case "$1" in
  -*) exec bellhop-worker "$@" ;;
  *) exec "$@" ;;
esac
