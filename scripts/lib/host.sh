# Host preparation steps shared by scripts/setup, sourced (not run). Each step decides by what actually works on
# this machine, not by a name on the PATH: some machines ship a Docker *client* binary and no daemon.

host_log() { printf '[setup] %s\n' "$*" >&2; }

# host_missing_packages: print the Debian packages this host still needs, one per line.
host_missing_packages() {
  # docker.io brings dockerd. A client that answers `docker info` (a local or remote daemon) is enough;
  # otherwise the daemon binary must be here to be started, whatever `docker` binary the PATH holds.
  if ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; then echo docker.io; fi
  command -v debootstrap >/dev/null 2>&1 || echo debootstrap
  command -v dpkg-deb >/dev/null 2>&1 || echo dpkg-dev
  [ -x /usr/lib/postgresql/15/bin/initdb ] || echo postgresql
  command -v git >/dev/null 2>&1 || echo git
  python3 -c 'import venv, ensurepip' 2>/dev/null || echo python3-venv
}

# host_install_packages PACKAGE...: apt-get install, quietly; nothing to do without arguments.
host_install_packages() {
  [ $# -gt 0 ] || return 0
  host_log "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# host_ensure_docker_daemon [WAIT_SECONDS]: a daemon answering `docker info`, started here when none answers.
host_ensure_docker_daemon() {
  local wait=${1:-60} log=${DOCKERD_LOG:-/var/log/dockerd.log}
  docker info >/dev/null 2>&1 && return 0
  if ! command -v dockerd >/dev/null 2>&1; then
    echo "no Docker daemon answers and dockerd is not installed. Fix: apt-get install -y docker.io" >&2
    return 1
  fi
  host_log "starting dockerd (log: $log)"
  nohup dockerd >"$log" 2>&1 &
  local _
  for _ in $(seq "$wait"); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  echo "dockerd did not answer within ${wait}s: see $log" >&2
  return 1
}
