#!/bin/sh
# Runs every test of a build folder: unit tests, tools-driven checks.
# Usage: tests/run_tests.sh BUILD_DIR
set -u
build=${1:-build}
fail=0
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t")"
    if ! "$t"; then
        echo "FAILED: $t"
        fail=1
    fi
done
for s in tests/check_*.sh; do
    [ -x "$s" ] || continue
    echo "== $(basename "$s")"
    if ! "$s" "$build"; then
        echo "FAILED: $s"
        fail=1
    fi
done
[ $fail -eq 0 ] && echo "all tests passed" || echo "SOME TESTS FAILED"
exit $fail
