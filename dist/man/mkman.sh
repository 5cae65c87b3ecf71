#!/bin/sh
# mkman.sh BIN_DIR OUT_DIR VERSION
#
# Writes OUT_DIR/TOOL.1 for every program TOOL in BIN_DIR, by help2man from
# TOOL --help and the include files beside this script: common.h2m (the
# sections all tools share) and TOOL.h2m (its NAME, EXIT STATUS, FILES and
# any ENVIRONMENT of its own). A program without its TOOL.h2m, or one that
# help2man cannot read, is named and makes the script fail; the other pages
# are still written. Set SOURCE_DATE_EPOCH for a fixed date in the pages.
set -u

me=mkman.sh
if [ $# -ne 3 ]; then
    echo "usage: $me BIN_DIR OUT_DIR VERSION" >&2
    exit 2
fi
bin=$1 out=$2 version=$3
here=$(cd "$(dirname "$0")" && pwd) || exit 1

if [ ! -d "$bin" ]; then
    echo "$me: $bin: not a directory" >&2
    exit 1
fi
if ! command -v help2man >/dev/null 2>&1; then
    echo "$me: help2man is not installed (Debian: apt-get install help2man)" >&2
    exit 1
fi
if [ ! -f "$here/common.h2m" ]; then
    echo "$me: $here/common.h2m is missing" >&2
    exit 1
fi
mkdir -p "$out" || exit 1

status=0
made=0
for prog in "$bin"/*; do
    [ -f "$prog" ] && [ -x "$prog" ] || continue
    tool=${prog##*/}
    inc=$here/$tool.h2m
    if [ ! -f "$inc" ]; then
        echo "$me: $tool: no include file $inc (write one: NAME, EXIT STATUS, FILES)" >&2
        status=1
        continue
    fi
    # A page is replaced only by a complete one.
    if help2man -N --no-discard-stderr --version-string="$version" \
            -i "$here/common.h2m" -i "$inc" -o "$out/$tool.1.tmp" "$prog"; then
        mv -f "$out/$tool.1.tmp" "$out/$tool.1" || status=1
        made=$((made + 1))
    else
        echo "$me: $tool: help2man failed" >&2
        rm -f "$out/$tool.1.tmp"
        status=1
    fi
done
if [ "$made" -eq 0 ] && [ "$status" -eq 0 ]; then
    echo "$me: no programs in $bin" >&2
    status=1
fi
exit $status
