#!/bin/sh
# Interop with ONNX Runtime: shears loads a model, exports it, and both
# shears (running the exported model) and ONNX Runtime (loading the
# exported model) run it on the same inputs; every output must agree to
# |shears - ort| <= 1e-4 + 1e-4 * |ort|. A model ONNX Runtime cannot load
# means our exporter wrote something wrong, and fails the check.
#
# Models: every pytorch-converted, pytorch-operator and node case of
# Debian's libonnx-testdata (their first data set; random cases excluded),
# and samples/*.onnx and the models shears builds from samples/*.json
# (seeded random inputs). Cases shears cannot load
# (unsupported op, dtype, ...) are skipped. Where ONNX Runtime cannot run
# the original model either (it has no kernels for opset 1-6 versions of
# some ops) or is known to differ from the ONNX reference, shears' outputs
# on its exported model are compared with the reference outputs instead.
#
# Usage: tests/check_interop.sh BUILD_DIR
# Environment: INTEROP_FILTER=substring keeps matching case names only;
# INTEROP_VERBOSE=1 lists skipped cases and max diffs; ONNX_TESTDATA=DIR.
set -u
build=${1:-build}
bin=$build/shears
tools=$build/tests
root=${ONNX_TESTDATA:-/usr/share/libonnx-testdata/data}
ortdir=$(dirname "$0")/ort
filter=${INTEROP_FILTER:-}
verbose=${INTEROP_VERBOSE:-0}

for f in "$bin" "$tools/pb2npy" "$tools/npycmp"; do
    if [ ! -x "$f" ]; then
        echo "interop: $f is missing (make BUILD=$build all-tests)"
        exit 1
    fi
done
if ! command -v node >/dev/null 2>&1 || [ ! -d "$ortdir/node_modules/onnxruntime-node" ]; then
    echo "interop: ONNX Runtime for node is not installed (make ort-deps)"
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/shears-interop.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
jobs=$work/ort-jobs
failures=$work/failures
: >"$jobs"
: >"$failures"
n_cases=0 n_skip=0 n_fail=0 n_ok=0 n_ref=0

fail() { # case message
    echo "  FAIL $1: $2" >>"$failures"
    n_fail=$((n_fail + 1))
}

skip() { # case reason
    n_skip=$((n_skip + 1))
    [ "$verbose" = 1 ] && echo "  SKIP $1: $2"
    return 0
}

# Cases where ONNX Runtime knowingly differs from the ONNX reference.
known_ort_difference() { # case-name
    case $1 in
    # ORT recomputes the scale from the output size; the reference keeps
    # the given scale (intended, onnx/onnx#2462).
    node/test_resize_downsample_scales_cubic_align_corners) return 0 ;;
    node/test_resize_downsample_scales_linear_align_corners) return 0 ;;
    esac
    return 1
}

wanted() { # case-name
    [ -z "$filter" ] && return 0
    case $1 in *"$filter"*) return 0 ;; esac
    return 1
}

# Cases whose outputs depend on a random generator.
random_case() { # case-name
    case $1 in test_training_dropout*) return 0 ;; esac
    return 1
}

# "a b c" from the files dir/prefix_0.npy ... prefix_(n-1).npy, joined by sep.
file_list() { # dir prefix n sep
    l='' i=0
    while [ "$i" -lt "$3" ]; do
        l="$l${l:+$4}$1/$2_$i.npy"
        i=$((i + 1))
    done
    printf '%s' "$l"
}

# Prepares one case: inputs as NPY, shears' outputs, and an ORT job line.
prepare_case() { # name model data-set-dir-or---random
    name=$1 model=$2 data=$3
    n_cases=$((n_cases + 1))
    dir=$work/$n_cases
    mkdir -p "$dir"
    echo "$name" >"$dir/name"
    echo "$model" >"$dir/model"
    counts=$("$tools/pb2npy" "$model" "$data" "$dir" 2>"$dir/err")
    rc=$?
    if [ $rc -eq 2 ]; then
        skip "$name" "$counts"
        return
    elif [ $rc -ne 0 ]; then
        if grep -q 'not supported\|does not support\|supports' "$dir/err"; then
            skip "$name" "$(cat "$dir/err")"
        else
            fail "$name" "$(cat "$dir/err")"
        fi
        return
    fi
    n_in=$(echo "$counts" | sed 's/inputs \([0-9]*\) outputs.*/\1/')
    n_out=$(echo "$counts" | sed 's/.*outputs \([0-9]*\)/\1/')
    ins=$(file_list "$dir" in "$n_in" ,)
    outs=$(file_list "$dir" shears "$n_out" ,)
    "$bin" --json -c "load \"$model\"; export \"$dir/e.onnx\"; load \"$dir/e.onnx\"; run input=$ins output=$outs" \
        >"$dir/log" 2>&1
    if [ $? -ne 0 ]; then
        err=$(grep '"ok":false' "$dir/log" | sed 's/.*"error":"\(.*\)"}$/\1/')
        [ -n "$err" ] || err=$(head -3 "$dir/log")
        if [ "$(grep -c '"ok":true' "$dir/log")" -eq 0 ]; then
            skip "$name" "$err" # shears cannot load the original
        else
            case $err in
            *"not supported"* | *"does not support"*) skip "$name" "$err" ;;
            *) fail "$name" "shears on its exported model: $err" ;;
            esac
        fi
        return
    fi
    echo "$dir/e.onnx $(file_list "$dir" in "$n_in" ' ') --out $(file_list "$dir" ort "$n_out" ' ')" >>"$jobs"
    echo "$n_in" >"$dir/n_in"
    echo "$n_out" >"$dir/n_out"
}

for folder in pytorch-converted pytorch-operator node; do
    for d in "$root/$folder"/test_*; do
        [ -f "$d/model.onnx" ] || continue
        name=$(basename "$d")
        random_case "$name" && continue
        wanted "$folder/$name" || continue
        prepare_case "$folder/$name" "$d/model.onnx" "$d/test_data_set_0"
    done
done
for m in samples/*.onnx; do
    [ -f "$m" ] || continue
    wanted "$m" || continue
    prepare_case "$m" "$m" --random
done
# Sample architectures: shears builds the model, then as above.
for a in samples/*.json; do
    [ -f "$a" ] || continue
    wanted "$a" || continue
    built=$work/built-$(basename "$a" .json).onnx
    if ! "$bin" -c "build \"$a\"; export \"$built\"" >"$work/build.log" 2>&1; then
        n_cases=$((n_cases + 1))
        fail "$a" "build: $(grep -v '^loaded\|^built\|^wrote' "$work/build.log" | head -2 | tr '\n' ' ')"
        continue
    fi
    prepare_case "$a" "$built" --random
done

# ONNX Runtime, one process for every exported model.
case_of() { # an ORT error line -> the number of the case it names, or ""
    case $1 in
    *"$work/"[0-9]*/*) echo "$1" | sed "s|.*$work/\([0-9]*\)/.*|\1|" ;;
    esac
}
if [ -s "$jobs" ]; then
    node "$ortdir/run.js" --batch "$jobs" 2>"$work/ort-err"
    # A model ONNX Runtime cannot run is our exporter's fault only if ORT
    # runs the original (it has no kernels for some opset-1..6 ops).
    : >"$work/orig-jobs"
    while IFS= read -r line; do
        num=$(case_of "$line")
        if [ -z "$num" ] || [ ! -d "$work/$num" ]; then
            fail ort "$line"
            continue
        fi
        d=$work/$num
        [ -f "$d/ort-err" ] && continue
        echo "$line" | sed 's/^run.js: //' >"$d/ort-err"
        echo "$(cat "$d/model") $(file_list "$d" in "$(cat "$d/n_in")" ' ') --out $d/orig_0.npy" >>"$work/orig-jobs"
    done <"$work/ort-err"
    [ -s "$work/orig-jobs" ] && node "$ortdir/run.js" --batch "$work/orig-jobs" 2>/dev/null
fi

# Compare.
i=1
while [ "$i" -le "$n_cases" ]; do
    dir=$work/$i
    i=$((i + 1))
    [ -f "$dir/n_out" ] || continue
    name=$(cat "$dir/name")
    # Where ORT is known to differ from the ONNX reference, or cannot run
    # the original model either, shears must match the reference outputs
    # of the test data instead.
    ref=ort
    known_ort_difference "$name" && ref=want
    if [ -f "$dir/ort-err" ]; then
        if [ -f "$dir/orig_0.npy" ]; then
            fail "$name" "ONNX Runtime runs the original but not our export: $(cat "$dir/ort-err")"
            continue
        fi
        ref=want
        [ "$verbose" = 1 ] && echo "  $name: ONNX Runtime cannot run the original either: $(sed 's|^[^:]*: ||' "$dir/ort-err")"
    fi
    n_out=$(cat "$dir/n_out") k=0 ok=1
    while [ "$k" -lt "$n_out" ]; do
        if [ ! -f "$dir/${ref}_$k.npy" ]; then
            fail "$name" "no $ref output $k"
            ok=0
            break
        fi
        res=$("$tools/npycmp" --atol 1e-4 --rtol 1e-4 "$dir/shears_$k.npy" "$dir/${ref}_$k.npy" 2>&1)
        if [ $? -ne 0 ]; then
            fail "$name" "output $k vs $ref: $res"
            ok=0
        else
            [ "$verbose" = 1 ] && echo "  ok $name output $k vs $ref: $res"
        fi
        k=$((k + 1))
    done
    if [ $ok = 1 ] && [ $ref = want ]; then
        n_ref=$((n_ref + 1))
    elif [ $ok = 1 ]; then
        n_ok=$((n_ok + 1))
    fi
done

cat "$failures"
echo "interop: $n_ok matched ONNX Runtime, $n_ref matched the ONNX reference where ORT differs or cannot run the original, $n_fail failed, $n_skip skipped (of $n_cases models)"
[ "$n_fail" -eq 0 ] && [ "$n_ok" -gt 0 ]
