#!/bin/sh
# Installs the Debian packages the build and the tests need, when missing.
# Usage: mk/deps.sh [build|fuzz|package]. Idempotent; does nothing when all is there.
set -eu

# help2man: the manual pages, which `make install` installs.
want="pkg-config libvirt-dev libxml2-dev uthash-dev gcc make perl help2man"
# The libxl backend and its tests; `make LIBXL=no` builds without them.
[ "${LIBXL:-}" = no ] || want="$want libxen-dev"
case "${1:-build}" in
    fuzz) want="$want clang libclang-rt-dev" ;;
    # The Debian package and its checks (tests/t/72-package.t): its build
    # dependencies, lintian, systemd-analyze, man.
    package) want="$want debhelper dpkg-dev fakeroot lintian systemd man-db bash" ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$missing (run as root, or: apt-get install$missing)" >&2
    exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >&2
