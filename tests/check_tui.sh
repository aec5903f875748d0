#!/bin/sh
# Screen tests of the workbench, in process: each tests/tui/NAME.keys
# replaces the keyboard (--keys) of `shears samples/fmnist-cnn.onnx --data
# fashion-mnist` on an invisible 100x30 screen; its @dump lines (and
# dump-screen commands) write screens, which must match the golden files
# tests/tui/NAME-*.txt. Pinned: TERM, locale, HOME, INPUTRC, XDG folders,
# one thread. NAME.config and NAME.history, when there, are the config
# and history files the run starts with. Times in the log (e.g. "in 0.00 s") are masked on both sides.
# Usage: tests/check_tui.sh BUILD_DIR [--update]   (--update rewrites the goldens)
set -u
build=${1:-build}
update=${2:-}
bin=$build/shears
dir=tests/tui
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
# Masked: durations, throughputs, measured speedups and float round-off
# that differs between optimized and sanitizer builds (verify's max error,
# preview's estimated loss and accuracy).
mask() {
    sed -E 's/[0-9]+(\.[0-9]+)? ?(ms|s)\b/<t>/g; s/[0-9]+ (images|img)\/s/<n> \1\/s/g;
            s/[0-9.]+x faster/<r>x faster/g; s/= [0-9.e+-]+ on a probe/= <e> on a probe/;
            s/(loss|accuracy) [0-9.]+%? (->|→) [0-9.]+%?( \([+-][0-9.]+\))?/\1 <v>/g' "$1"
}
fail=0
for keys in "$dir"/*.keys; do
    name=$(basename "$keys" .keys)
    out=$tmp/$name
    mkdir -p "$out" "$tmp/home-$name"
    sed "s|@OUT@|$out|g" "$keys" > "$tmp/$name.keys"
    hist=$tmp/home-$name/state/shears/history
    if [ -f "$dir/$name.config" ]; then
        mkdir -p "$tmp/home-$name/config/shears"
        cp "$dir/$name.config" "$tmp/home-$name/config/shears/config"
    fi
    if [ -f "$dir/$name.history" ]; then
        mkdir -p "$(dirname "$hist")"
        cp "$dir/$name.history" "$hist"
    fi
    locale=C.UTF-8
    [ "$name" = ascii ] && locale=C
    if ! env -i PATH="$PATH" HOME="$tmp/home-$name" XDG_STATE_HOME="$tmp/home-$name/state" \
        XDG_CONFIG_HOME="$tmp/home-$name/config" INPUTRC="$tmp/home-$name/inputrc" TERM=xterm-256color \
        LANG=$locale LC_ALL=$locale OPENBLAS_NUM_THREADS=1 ${ASAN_OPTIONS:+ASAN_OPTIONS=$ASAN_OPTIONS} \
        "$bin" samples/fmnist-cnn.onnx --data fashion-mnist --threads 1 --size 100x30 \
        --keys "$tmp/$name.keys" </dev/null >"$tmp/$name.stdout" 2>&1; then
        echo "FAIL $name: shears exited with an error:"; cat "$tmp/$name.stdout"; fail=1; continue
    fi
    n=0
    for got in "$out"/*.txt; do
        [ -f "$got" ] || continue
        n=$((n + 1))
        golden=$dir/$(basename "$got")
        sed "s|$out|@OUT@|g" "$got" > "$got.path" && mask "$got.path" > "$got.masked"
        if [ "$update" = --update ]; then
            cp "$got.masked" "$golden"
        elif [ ! -f "$golden" ]; then
            echo "FAIL $name: no golden file $golden"; fail=1
        elif ! diff -u "$golden" "$got.masked"; then
            echo "FAIL $name: $(basename "$got") differs from $golden"; fail=1
        fi
    done
    if [ -f "$dir/$name.history" ] && [ "$(tail -n 1 "$hist")" != groups ] ; then
        echo "FAIL $name: the line run was not appended to the history file:"; cat "$hist"; fail=1
    fi
    expected=$(grep -c '@OUT@' "$keys")
    if [ "$n" -ne "$expected" ]; then
        echo "FAIL $name: $n screens written, $expected expected"; fail=1
    fi
    [ $fail -eq 0 ] && echo "ok $name ($n screens)"
done
exit $fail
