#!/usr/bin/env bash
# Makes a Docker engine available for `make images` and the kind path, and stops only what it started.
#
#   hack/docker.sh up      a reachable daemon is used as it is; otherwise Debian's docker.io is
#                          installed with apt if dockerd is missing, dockerd is started in the
#                          background and awaited, and its pid is recorded
#   hack/docker.sh down    stops that dockerd, and only that one (a daemon started by anything
#                          else is left running)
#   hack/docker.sh status  exit status 0 when a daemon answers
#
# dockerd's log and the record of what was started live in ${XDG_CACHE_HOME:-~/.cache}/kubeforge/docker.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE_DIR=$KUBEFORGE_CACHE/docker
STARTED=$STATE_DIR/dockerd.pid
LOG=$STATE_DIR/dockerd.log
WAIT_S=${KUBEFORGE_DOCKER_WAIT_S:-60}

daemon_answers() { docker info >/dev/null 2>&1; }

install_engine() {
  [ "$(id -u)" -eq 0 ] || die "dockerd is not installed and installing it needs root (apt-get install docker.io)"
  command -v apt-get >/dev/null || die "dockerd is not installed and there is no apt-get to install docker.io with"
  echo "kubeforge: installing Debian's docker.io with apt (first time only)" >&2
  apt-get update -qq >"$STATE_DIR/apt.log" 2>&1 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io \
      >>"$STATE_DIR/apt.log" 2>&1 ||
    die "installing docker.io failed (read $STATE_DIR/apt.log)"
}

up() {
  mkdir -p "$STATE_DIR"
  daemon_answers && return 0
  command -v docker >/dev/null && command -v dockerd >/dev/null || install_engine
  # The package's own init scripts may have started one while installing.
  daemon_answers && return 0
  [ "$(id -u)" -eq 0 ] || die "no Docker daemon answers and starting dockerd needs root"
  setsid dockerd >"$LOG" 2>&1 </dev/null &
  echo $! >"$STARTED"
  local waited=0
  until daemon_answers; do
    kill -0 "$(cat "$STARTED")" 2>/dev/null || { rm -f "$STARTED"; die "dockerd exited at start (read $LOG)"; }
    [ "$waited" -lt "$WAIT_S" ] || die "dockerd did not answer within ${WAIT_S} s (read $LOG)"
    sleep 1
    waited=$((waited + 1))
  done
  echo "kubeforge: started dockerd (pid $(cat "$STARTED"), log $LOG)" >&2
}

down() {
  local pid
  pid=$(cat "$STARTED" 2>/dev/null) || { echo "kubeforge: no dockerd started by kubeforge" >&2; return 0; }
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
    kill "$pid"
    # dockerd stops its containers and its containerd before it exits.
    while kill -0 "$pid" 2>/dev/null; do sleep 1; done
    echo "kubeforge: stopped dockerd (pid $pid)" >&2
  fi
  rm -f "$STARTED"
}

case ${1:-up} in
up) up ;;
down) down ;;
status) daemon_answers ;;
*) die "usage: hack/docker.sh [up|down|status]" ;;
esac
