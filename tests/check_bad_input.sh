#!/bin/sh
# Bad input: every way a user can hand shears something wrong (corrupt or
# unsupported models, wrong data files, mistyped commands, unsafe exports)
# must give exactly ONE line on stderr naming the file, node, op or
# argument, exit status 1 in batch mode, and no crash; nothing is lost (a
# failed load keeps the model, a refused export leaves the file as it was).
# The bad files live in tests/bad/ (see tests/bad/README.md).
#
# Usage: tests/check_bad_input.sh BUILD_DIR   (works with the SAN build
# too: any ASan/UBSan/LeakSanitizer report breaks the one-line rule or the
# exit status, and fails the case)
set -u
build=${1:-build}
bad=$(cd "$(dirname "$0")/bad" && pwd) || exit 1
bin=$(cd "$build" 2>/dev/null && pwd)/shears
if [ ! -x "$bin" ]; then
    echo "bad input: $build/shears is missing (make BUILD=$build)"
    exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/shears-bad.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export ASAN_OPTIONS UBSAN_OPTIONS
good=$bad/good.onnx
x=$bad/x_1x3x8x8.npy
n_cases=0 n_failed=0

failed() { # case message
    echo "  FAIL $1: $2"
    n_failed=$((n_failed + 1))
}

# expect CASE STATUS 'WANT1|WANT2|...' SHEARS-ARGS...
# Runs shears; it must exit with STATUS and print exactly one stderr line
# beginning with "shears: " and holding every WANT (fixed strings).
expect() {
    name=$1 want_status=$2 wants=$3
    shift 3
    n_cases=$((n_cases + 1))
    (cd "$work" && "$bin" "$@") >"$work/out" 2>"$work/err"
    status=$?
    lines=$(wc -l <"$work/err")
    line=$(head -1 "$work/err")
    if [ "$status" -ne "$want_status" ]; then
        failed "$name" "exit status $status, expected $want_status ($(head -3 "$work/err" | tr '\n' ' '))"
        return 1
    fi
    if [ "$lines" -ne 1 ]; then
        failed "$name" "$lines lines on stderr, expected 1: $(head -5 "$work/err" | tr '\n' '|')"
        return 1
    fi
    case $line in
    "shears: "*) ;;
    *) failed "$name" "stderr line does not begin with 'shears: ': $line"; return 1 ;;
    esac
    rest=$wants
    while [ -n "$rest" ]; do
        w=${rest%%|*}
        case $rest in *"|"*) rest=${rest#*|} ;; *) rest='' ;; esac
        case $line in
        *"$w"*) ;;
        *) failed "$name" "stderr does not mention '$w': $line"; return 1 ;;
        esac
    done
    [ "${VERBOSE:-0}" = 1 ] && echo "  ok $name: $line"
    return 0
}

# check CASE CONDITION-DESCRIPTION COMMAND...: a follow-up condition.
check() {
    name=$1 what=$2
    shift 2
    n_cases=$((n_cases + 1))
    if ! "$@"; then
        failed "$name" "$what"
    fi
}

stdout_has() { grep -q -- "$1" "$work/out"; }
stdout_lacks() { ! grep -q -- "$1" "$work/out"; }
no_temp_files() { # dir
    [ -z "$(find "$1" -name '*.tmp-*' 2>/dev/null)" ]
}

# ---- models that cannot be loaded ----
expect truncated 1 'truncated.onnx|corrupt or truncated' -c "load $bad/truncated.onnx"
"$bin" -c "load $good; export $work/exported.onnx" >/dev/null 2>&1
size=$(wc -c <"$work/exported.onnx")
dd if="$work/exported.onnx" of="$work/half.onnx" bs=$((size / 2)) count=1 2>/dev/null
expect truncated-export 1 'half.onnx|corrupt or truncated' -c "load half.onnx"
expect random-bytes 1 'random.onnx|not an ONNX model' -c "load $bad/random.onnx"
expect png-as-onnx 1 'png.onnx|not an ONNX model' -c "load $bad/png.onnx"
expect text-as-onnx 1 'text.onnx|not an ONNX model' -c "load $bad/text.onnx"
expect empty-file 1 'empty.onnx|empty' -c "load $bad/empty.onnx"
expect directory 1 "$bad|not a regular file" -c "load $bad"
expect missing-file 1 'missing.onnx|No such file' -c "load $bad/missing.onnx"
expect missing-file-arg 1 'missing.onnx|No such file' "$bad/missing.onnx"
expect unknown-op 1 "unknown_op.onnx|'act'|FooBar" -c "load $bad/unknown_op.onnx"
expect opset-99 1 'opset99.onnx|opset 99' -c "load $bad/opset99.onnx"
expect conv-channels 1 "conv_channels.onnx|'conv'|channels" -c "load $bad/conv_channels.onnx"
expect reshape-size 1 "reshape_impossible.onnx|'reshape'|[-1,5,7]" -c "load $bad/reshape_impossible.onnx"
expect add-broadcast 1 "add_mismatch.onnx|'add'|[3] and [4]" -c "load $bad/add_mismatch.onnx"
expect nan-weight 1 "nan_weight.onnx|conv.bias|nan" -c "load $bad/nan_weight.onnx"
expect external-data 1 "external_data.onnx|conv.weight|external" -c "load $bad/external_data.onnx"
expect control-flow 1 "if_node.onnx|'branch'|If" -c "load $bad/if_node.onnx"
expect float64-weight 1 "float64_weight.onnx|conv.bias|float64" -c "load $bad/float64_weight.onnx"
# --json: the error is a JSON object on stdout, and stderr stays empty.
(cd "$work" && "$bin" --json -c "load $bad/text.onnx") >"$work/out" 2>"$work/err"
status=$?
n_cases=$((n_cases + 1))
if [ $status -ne 1 ] || [ -s "$work/err" ] || [ "$(wc -l <"$work/out")" -ne 1 ] ||
    ! grep -q '"ok":false,"error":"[^"]*text.onnx: not an ONNX model' "$work/out"; then
    failed json-mode "expected one JSON error object on stdout, nothing on stderr, status 1 (got $status: $(head -2 "$work/out") / $(head -2 "$work/err"))"
fi

# ---- data files ----
expect missing-data 1 'missing.npy|No such file' -c "load $good; run input=$bad/missing.npy"
expect wrong-shape 1 "input 'x'|[1,3,7,8]" -c "load $good; run input=$bad/x_1x3x7x8.npy"
expect wrong-dtype 1 "x_1x3x8x8_i64.npy|int64|'x'" -c "load $good; run input=$bad/x_1x3x8x8_i64.npy"
expect input-count 1 'input=|2 files|1 input' -c "load $good; run input=$x,$x"
expect labels-count 1 'data_y_3.npy|3 labels|4 images' -c "data npy x=$bad/data_x_4.npy y=$bad/data_y_3.npy"

# ---- commands ----
expect unknown-command 1 "'lod'|did you mean 'load'" -c "lod $good"
expect unknown-key 1 "'forse'|did you mean 'force'" -c "load $good; export out.onnx forse=on"
expect bad-value 1 "force|'maybe'" -c "load $good; export out.onnx force=maybe"
expect bad-number 1 "batch|'abc'" -c "set batch abc"
expect missing-argument 1 'usage: load FILE.onnx' -c "load"
expect unterminated-quote 1 'unterminated quote' -c 'echo "abc'
expect no-model 1 'no model loaded' -c "info"
printf 'echo first\nlod x\n' >"$work/script.shears"
expect script-line 1 "script.shears:2|'lod'" script.shears
expect missing-script 1 'missing.shears|No such file' missing.shears
expect option-without-value 2 "-c needs a value" -c

# ---- exports and outputs that must not clobber ----
printf 'precious\n' >"$work/precious.onnx"
cp "$work/precious.onnx" "$work/precious.copy"
expect export-existing 1 'precious.onnx|already exists|force=on' -c "load $good; export precious.onnx"
check export-existing "the existing file changed" cmp -s "$work/precious.onnx" "$work/precious.copy"
check export-existing "a temporary file was left behind" no_temp_files "$work"
expect export-missing-dir 1 'nodir/sub/m.onnx|No such file' -c "load $good; export nodir/sub/m.onnx"
check export-missing-dir "something was created" test ! -e "$work/nodir"
check export-missing-dir "a temporary file was left behind" no_temp_files "$work"
mkdir "$work/adir"
expect export-onto-dir 1 'adir|is a directory' -c "load $good; export adir force=on"
check export-onto-dir "a temporary file was left behind" no_temp_files "$work"
cp "$work/precious.copy" "$work/precious.npy"
expect run-output-existing 1 'precious.npy|already exists' -c "load $good; run input=$x output=precious.npy"
check run-output-existing "the existing file changed" cmp -s "$work/precious.npy" "$work/precious.copy"

# ---- a failed load keeps the model ----
expect load-stops 1 'text.onnx|not an ONNX model' -c "load $good; load $bad/text.onnx; info"
check load-stops "the script went on after the failing command" stdout_lacks 'total:'
expect load-keeps-model 1 'text.onnx|not an ONNX model' -c "set keep-going on; load $good; load $bad/text.onnx; info; export kept.onnx"
check load-keeps-model "info did not show the first model" stdout_has 'conv'
check load-keeps-model "info did not run" stdout_has 'total:'
check load-keeps-model "the kept model does not export and load again" \
    "$bin" -c "load $work/kept.onnx; run input=$x" >/dev/null 2>&1

# ---- inputs the fuzzers found (tests/bad/fuzz-*): once they crashed ----
# Each must load cleanly or fail with one line; then info, a run at batch 1
# on zeros when the model has one float input, and an export.
for f in "$bad"/fuzz-*; do
    [ -f "$f" ] || continue
    n_cases=$((n_cases + 1))
    case_name=$(basename "$f")
    (cd "$work" && "$bin" -c "set keep-going on; load $f; info; export fuzz-export.onnx force=on") \
        >"$work/out" 2>"$work/err"
    status=$?
    lines=$(wc -l <"$work/err")
    if [ $status -gt 1 ] || { [ $status -eq 1 ] && [ "$lines" -lt 1 ]; } || { [ $status -eq 0 ] && [ "$lines" -ne 0 ]; } ||
        grep -q 'Sanitizer\|runtime error' "$work/err"; then
        failed "$case_name" "exit status $status: $(head -5 "$work/err" | tr '\n' '|')"
    elif [ "$lines" -gt 0 ] && grep -v -q '^shears: ' "$work/err"; then
        failed "$case_name" "stderr lines that are not shears errors: $(head -5 "$work/err" | tr '\n' '|')"
    fi
done

# An unloadable model left behind no temporary or partial files.
check cleanup "a temporary file was left behind" no_temp_files "$work"

echo "bad input: $((n_cases - n_failed)) of $n_cases checks passed, $n_failed failed"
[ "$n_failed" -eq 0 ]
