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
# the words are the command's own and nothing in them is expanded. Quotes
# would need a shell to honour them, so a quoted command is rejected instead
# of being split wrongly.
# NOTE: Heroku documents that CMD runs through /bin/sh -c unless ENTRYPOINT is
# set, but not how it passes a one-off dyno's command to an ENTRYPOINT; this
# branch covers the case where the command arrives unsplit.
if [ "$#" -eq 1 ]; then
  case "$1" in
    *[\'\"\\]*)
      printf 'worker-entrypoint: cannot split the quoted command %s; %s\n' \
        "$1" "pass its words as separate arguments" >&2
      exit 2
      ;;
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
