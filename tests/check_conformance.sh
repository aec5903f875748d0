#!/bin/sh
# Debian's ONNX conformance data through shears (with the export/import
# round trip). Any failing case fails the test; so does a drop in the
# number of passing cases below the floor (a change that turns passes into
# skips is a regression too).
set -u
build=${1:-build}
floor=680
out=$("$build"/tests/conformance) ; rc=$?
echo "$out" | grep -E '^(FAIL|SKIP)' | sed 's/^/  /' | head -${CONFORMANCE_LIST:-400}
summary=$(echo "$out" | tail -1)
echo "$summary"
passed=$(echo "$summary" | sed -n 's/^conformance: \([0-9]*\) passed.*/\1/p')
if [ "$rc" -ne 0 ]; then
    echo "conformance: failing cases (listed above)"
    exit 1
fi
if [ "${passed:-0}" -lt $floor ]; then
    echo "conformance: only ${passed:-0} cases passed; at least $floor did before"
    exit 1
fi
