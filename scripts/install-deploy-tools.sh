#!/usr/bin/env bash
# What the deployment tests run (tests/test_deploy.py, tests/test_topology.py):
# Debian's nginx (the topology test's proxy), docker-compose (validates
# docker/compose.yaml without a Docker daemon), caddy (validates docker/Caddyfile) and
# openssl (the topology test's certificate); and wrk, which the benchmark's phone-ingest
# test drives (tests/test_bench.py). Under CI the missing ones are installed
# with apt; elsewhere the tests that need them skip with a reason.
set -euo pipefail
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v caddy >/dev/null || missing+=(caddy)
command -v openssl >/dev/null || missing+=(openssl)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "${CI:-}" != "" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's ${missing[*]} for the deployment tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No recommends: docker-compose would bring a Docker engine it does not need here.
  # The tests start nginx themselves; a package's service, if any, is not used.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "note: ${missing[*]} not found; the deployment tests that need them will be skipped (apt-get install ${missing[*]})"
fi
