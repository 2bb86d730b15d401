#!/usr/bin/env bash
# Build, push and release Bellhop's images to its two Heroku apps through the
# Heroku Container Registry.
#
#   deploy/heroku/deploy.sh [options] GATEWAY_APP ORCHESTRATOR_APP
#
# The app names may come from BELLHOP_GATEWAY_APP and BELLHOP_ORCHESTRATOR_APP
# instead. images.conf (beside this script) lists the images. The gateway app
# gets `web`. The orchestrator app gets `web` and `worker`, which is the image
# of the one-off dynos it starts per session. docs/deploy.md has the
# walkthrough, including the one-time app setup this script expects.
#
# Before it changes anything, the script checks that docker and the heroku
# CLI are installed, Docker is running and you are logged in to Heroku. It
# then checks that both apps exist, that each has the config vars its
# *.env.example file requires, and that both share one REDIS_URL and one
# ORCHESTRATOR_TOKEN.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
IMAGES_FILE="$SCRIPT_DIR/images.conf"
REGISTRY="registry.heroku.com"
# Heroku's rule for app names.
APP_NAME_PATTERN='^[a-z][a-z0-9-]{1,28}[a-z0-9]$'

dry_run=0
check_config=1
only=""
gateway_app=""
orchestrator_app=""

usage() {
  cat <<'USAGE'
Usage: deploy/heroku/deploy.sh [options] GATEWAY_APP ORCHESTRATOR_APP

Builds every image in deploy/heroku/images.conf, pushes it to the Heroku
Container Registry and releases it. App names default to
$BELLHOP_GATEWAY_APP and $BELLHOP_ORCHESTRATOR_APP.

Options:
  --only ROLE            deploy one app only: gateway or orchestrator
  --skip-config-check    do not check the apps' config vars first
  -n, --dry-run          run the checks, then print the commands that would
                         build, push and release instead of running them
  -h, --help             show this help
USAGE
}

log() { printf 'deploy: %s\n' "$*" >&2; }

die() {
  printf 'deploy: error: %s\n' "$*" >&2
  exit 1
}

# Run a command that changes something, or only print it under --dry-run.
run() {
  if [ "$dry_run" -eq 1 ]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

parse_args() {
  local positional=()
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --only)
        [ "$#" -ge 2 ] || die "--only needs a role: gateway or orchestrator"
        only="$2"
        shift 2
        ;;
      --skip-config-check) check_config=0; shift ;;
      -n | --dry-run) dry_run=1; shift ;;
      -h | --help) usage; exit 0 ;;
      -*) usage >&2; die "unknown option $1" ;;
      *) positional+=("$1"); shift ;;
    esac
  done
  [ "${#positional[@]}" -le 2 ] || die "expected 2 app names, got ${#positional[@]}"
  gateway_app="${positional[0]:-${BELLHOP_GATEWAY_APP:-}}"
  orchestrator_app="${positional[1]:-${BELLHOP_ORCHESTRATOR_APP:-}}"
  case "$only" in
    "" | gateway | orchestrator) ;;
    *) die "--only takes gateway or orchestrator, got '$only'" ;;
  esac
}

# The roles to deploy, orchestrator first, because the gateway calls it.
selected_roles() {
  if [ -n "$only" ]; then
    echo "$only"
  else
    echo orchestrator gateway
  fi
}

app_for() {
  case "$1" in
    gateway) echo "$gateway_app" ;;
    orchestrator) echo "$orchestrator_app" ;;
  esac
}

check_app_names() {
  local role app
  for role in $(selected_roles); do
    app="$(app_for "$role")"
    [ -n "$app" ] || {
      usage >&2
      die "no $role app: pass it as an argument or set BELLHOP_$(echo "$role" | tr '[:lower:]' '[:upper:]')_APP"
    }
    [[ "$app" =~ $APP_NAME_PATTERN ]] || die "'$app' is not a valid Heroku app name"
  done
}

check_tools() {
  command -v docker >/dev/null 2>&1 ||
    die "docker not found on PATH; install Docker (https://docs.docker.com/get-docker/)"
  command -v heroku >/dev/null 2>&1 ||
    die "heroku not found on PATH; install the Heroku CLI (https://devcenter.heroku.com/articles/heroku-cli)"
  docker info >/dev/null 2>&1 ||
    die "the Docker daemon is not reachable; start Docker and retry"
  heroku auth:whoami >/dev/null 2>&1 ||
    die "not logged in to Heroku; run 'heroku login' and retry"
  [ -r "$IMAGES_FILE" ] || die "missing image list $IMAGES_FILE"
}

# Print "PROCESS_TYPE DOCKERFILE" for each image of a role in images.conf.
images_for() {
  local role="$1" line_role process_type dockerfile
  while read -r line_role process_type dockerfile; do
    case "$line_role" in "" | "#"*) continue ;; esac
    if [ "$line_role" = "$role" ]; then
      echo "$process_type $dockerfile"
    fi
  done <"$IMAGES_FILE"
}

# Succeed when images.conf lists an image of PROCESS_TYPE for ROLE.
has_image() {
  local role="$1" wanted="$2" process_type dockerfile
  while read -r process_type dockerfile; do
    [ "$process_type" = "$wanted" ] && return 0
  done < <(images_for "$role")
  return 1
}

check_config_vars() {
  local role="$1" app="$2" name names=() missing=()
  local example="$SCRIPT_DIR/$role.env.example"
  [ -r "$example" ] || die "missing config var list $example"
  # The required names are those on the uncommented NAME=... lines.
  mapfile -t names < <(sed -n 's/^\([A-Z][A-Z0-9_]*\)=.*/\1/p' "$example")
  for name in "${names[@]}"; do
    if [ -z "$(heroku config:get "$name" -a "$app")" ]; then
      missing+=("$name")
    fi
  done
  [ "${#missing[@]}" -eq 0 ] ||
    die "app $app is missing config vars: ${missing[*]}; set them as deploy/heroku/$role.env.example describes"
  if [ "$role" = orchestrator ]; then
    check_orchestrator_config "$app"
  fi
}

# The values that must agree with this deployment, not only be present.
check_orchestrator_config() {
  local app="$1" provider heroku_app dyno_type
  provider="$(heroku config:get PROVIDER -a "$app")"
  [ "$provider" = heroku ] ||
    die "app $app has PROVIDER=$provider; set PROVIDER=heroku so workers run as one-off dynos"
  heroku_app="$(heroku config:get HEROKU_APP -a "$app")"
  [ "$heroku_app" = "$app" ] ||
    die "app $app has HEROKU_APP=$heroku_app; set it to $app, the app that runs the worker dynos"
  dyno_type="$(heroku config:get HEROKU_DYNO_TYPE -a "$app")"
  dyno_type="${dyno_type:-worker}"
  if [ "$dyno_type" = web ] || ! has_image orchestrator "$dyno_type"; then
    die "app $app has HEROKU_DYNO_TYPE=$dyno_type, which is not a worker image in images.conf"
  fi
}

# Both apps must use one Redis and one token; the values stay unprinted.
check_shared_config() {
  local name
  for name in REDIS_URL ORCHESTRATOR_TOKEN; do
    [ "$(heroku config:get "$name" -a "$gateway_app")" = \
      "$(heroku config:get "$name" -a "$orchestrator_app")" ] ||
      die "$name differs between $gateway_app and $orchestrator_app; both apps need the same value"
  done
}

check_apps() {
  local role app
  for role in $(selected_roles); do
    app="$(app_for "$role")"
    heroku apps:info -a "$app" >/dev/null 2>&1 ||
      die "Heroku app $app ($role) not found, or you have no access to it; create it with 'heroku create $app'"
    if [ "$check_config" -eq 1 ]; then
      check_config_vars "$role" "$app"
    fi
  done
  if [ "$check_config" -eq 1 ] && [ -z "$only" ]; then
    check_shared_config
  fi
}

# Heroku runs linux/amd64 images. --provenance=false: Heroku's registry
# rejects the provenance attestation BuildKit 0.11+ adds by default (the push
# fails with 405 Method Not Allowed).
build_and_push() {
  local app="$1" process_type="$2" dockerfile="$3"
  local tag="$REGISTRY/$app/$process_type"
  [ -f "$REPO_ROOT/$dockerfile" ] || die "images.conf names $dockerfile, which does not exist"
  log "building $tag from $dockerfile"
  run docker build --platform linux/amd64 --provenance=false \
    --file "$REPO_ROOT/$dockerfile" --tag "$tag" "$REPO_ROOT"
  run docker push "$tag"
}

deploy_role() {
  local role="$1" app image process_type images=() types=()
  app="$(app_for "$role")"
  mapfile -t images < <(images_for "$role")
  [ "${#images[@]}" -gt 0 ] || die "images.conf lists no image for $role"
  for image in "${images[@]}"; do
    # shellcheck disable=SC2086 # split "PROCESS_TYPE DOCKERFILE" in two
    build_and_push "$app" $image
    types+=("${image%% *}")
  done
  run heroku stack:set container -a "$app"
  log "releasing ${types[*]} to $app"
  run heroku container:release "${types[@]}" -a "$app"
  # Heroku restarts a formation dyno whenever it exits, so every image but
  # web serves one-off dynos only: keep its formation at zero.
  for process_type in "${types[@]}"; do
    if [ "$process_type" != web ]; then
      run heroku ps:scale "$process_type=0" -a "$app"
    fi
  done
}

main() {
  parse_args "$@"
  check_app_names
  check_tools
  check_apps
  run heroku container:login
  local role
  for role in $(selected_roles); do
    deploy_role "$role"
  done
  if [ "$dry_run" -eq 1 ]; then
    log "dry run: nothing was built, pushed or released"
  else
    log "done; check the apps with: heroku ps -a APP and heroku logs --tail -a APP"
  fi
}

main "$@"
