#!/usr/bin/env bash
# The newcomer's proof (docs/testing.md): `make test` from a fresh clone of this checkout's HEAD,
# with no PostgreSQL or Redis reachable (a network namespace of its own: only loopback, nothing
# listening on 5432 or 6379) and no java, chromium or prometheus on PATH.
#
#   bash tests/newcomer.sh [DIR]     # as root (unshare -n); DIR: where to clone (default: a temp dir)
#
# The venv is installed first, with the package index (the only thing a newcomer needs), then
# `make test` runs cut off from everything else. Expected: every test passes except those that
# need Chromium or Prometheus, which are skipped and named in one line at the end.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$(mktemp -d /tmp/feast-parity-newcomer.XXXXXX)}"
hidden="java chromium chromium-browser prometheus promtool prometheus-node-exporter node_exporter"

git clone -q "$src" "$dir/clone"
cd "$dir/clone"
git log -1 --format='clone of %h: %s'
make install

# PATH: every program of the current PATH, except the hidden ones
bin="$dir/bin"
mkdir -p "$bin"
IFS=: read -ra path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    name="$(basename "$f")"
    [ -x "$f" ] && [ ! -e "$bin/$name" ] || continue
    case " $hidden " in *" $name "*) continue ;; esac
    ln -s "$f" "$bin/$name"
  done
done

exec unshare -n env -u JAVA_HOME -u FEAST_PARITY_TEST_PG -u FEAST_PARITY_TEST_REDIS \
  -u FEAST_PARITY_TEST_STRICT PATH="$bin" bash -c '
  set -euo pipefail
  ip link set lo up
  for p in java chromium prometheus promtool; do
    if command -v "$p" >/dev/null; then echo "$p is still on PATH" >&2; exit 1; fi
  done
  if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then echo "5432 answers" >&2; exit 1; fi
  if (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then echo "6379 answers" >&2; exit 1; fi
  echo "isolated: loopback only, nothing on 5432/6379, no java/chromium/prometheus on PATH"
  cat /proc/loadavg
  start=$(date +%s)
  status=0
  /usr/bin/time -f "make test: %e s wall, %U s user, %S s sys" make test || status=$?
  cat /proc/loadavg
  echo "make test exited $status after $(( $(date +%s) - start )) s"
  exit $status
'
