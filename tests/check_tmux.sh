#!/bin/sh
# End-to-end test of the workbench in a real terminal (tmux, 100x30):
# keys in, capture-pane polled for the expected text (with a timeout, no
# fixed sleeps). Checks: marking, preview and apply through keys and the
# console; `record FILE` replays headless (`shears FILE`) to the same plan
# and model; a mouse click; a resize while a fine-tune runs; Esc cancels it; q asks and quits with the
# terminal restored (no alternate screen, stty sane); kill -9 during a
# fine-tune, then `shears --recover` restores the model and the plan.
# Usage: tests/check_tmux.sh BUILD_DIR
set -u
build=${1:-build}
bin=$(cd "$(dirname "$build/shears")" && pwd)/shears
if ! command -v tmux >/dev/null 2>&1; then
    echo "check_tmux: tmux is not installed (make deps installs it)"; exit 1
fi
tmp=$(mktemp -d)
sock=shears-test-$$
T() { tmux -L "$sock" "$@"; }
cleanup() { T kill-server 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
# Generous timeouts: sanitizer builds are several times slower.
timeout=${TMUX_TEST_TIMEOUT:-60}
export HOME="$tmp/home" XDG_STATE_HOME="$tmp/home/state" XDG_CONFIG_HOME="$tmp/home/config" INPUTRC="$tmp/home/inputrc"
mkdir -p "$HOME"
envs="HOME=$HOME XDG_STATE_HOME=$XDG_STATE_HOME XDG_CONFIG_HOME=$XDG_CONFIG_HOME INPUTRC=$INPUTRC TERM=xterm-256color LANG=C.UTF-8 LC_ALL=C.UTF-8 OPENBLAS_NUM_THREADS=1"

fail() { echo "FAIL: $*"; echo "--- screen:"; T capture-pane -p -t main 2>/dev/null; exit 1; }
# wait_for TEXT [SECONDS]: polls the screen until it shows TEXT.
wait_for() {
    end=$(( $(date +%s) + ${2:-$timeout} ))
    while ! T capture-pane -p -t main 2>/dev/null | grep -qF -- "$1"; do
        [ "$(date +%s)" -ge "$end" ] && fail "timed out waiting for '$1'"
        sleep 0.05
    done
}
# cmd LINE EXPECTED: runs a console line and waits for EXPECTED.
cmd() { T send-keys -t main ':' "$1" Enter; wait_for "$2"; }
start() {
    T new-session -d -s main -x 100 -y 30 -c "$PWD" \
        "env $envs $bin samples/fmnist-cnn.onnx --data fashion-mnist --threads 1; echo \"SHEARS-EXIT=\$?\"; stty -a | tr '\\n' ' '; echo; echo ALT-DONE; exec sleep 600"
    T set-option -t main remain-on-exit on >/dev/null
    wait_for "test: 10000 samples"
}

# ---- a session: record, mark, preview, apply, replay ----
start
cmd "record $tmp/session.shears" "recording to $tmp/session.shears"
T send-keys -t main s;                wait_for "scored 4 groups with l1"
cmd "mark conv5 ratio=0.25"           "conv5: 16 of 64 units marked"
T send-keys -t main p;                wait_for "preview: 16 units"
T send-keys -t main a;                wait_for "applied: 16 units"
# Space on the selected unit of conv12 (found with / in the layers pane, opened with Enter).
T send-keys -t main / conv12 Enter;   wait_for "group conv12: 128 channels"
T send-keys -t main Enter Space;      wait_for "conv12: 1 of 128 units marked"
cmd "mark conv12 5-23"               "conv12: 20 of 128 units marked"
cmd "record off"                      "recording stopped"
cmd "plan save $tmp/plan-tui.json"    "wrote $tmp/plan-tui.json"
cmd "export $tmp/model-tui.onnx"      "$tmp/model-tui.onnx"
grep -q "^mark conv12" "$tmp/session.shears" || fail "the recorded script misses the marking: $(cat "$tmp/session.shears")"
# `shears FILE -c ...` runs the script, then the commands, in one workspace.
OPENBLAS_NUM_THREADS=1 "$bin" --threads 1 "$tmp/session.shears" \
    -c "plan save $tmp/plan-replay.json; export $tmp/model-replay.onnx" >"$tmp/replay.log" 2>&1 ||
    { cat "$tmp/replay.log"; fail "the recorded script does not replay headless"; }
cmp -s "$tmp/plan-tui.json" "$tmp/plan-replay.json" || { diff "$tmp/plan-tui.json" "$tmp/plan-replay.json"; fail "the replayed plan differs"; }
cmp -s "$tmp/model-tui.onnx" "$tmp/model-replay.onnx" || fail "the replayed model differs from the workbench's"
[ -n "${VERBOSE:-}" ] && cat "$tmp/session.shears"
echo "ok record: the script replays headless to the same plan and model"

# ---- the mouse (SGR reports, as xterm sends them): a click selects conv9's row ----
T send-keys -t main -l "$(printf '\033[<0;6;14M\033[<0;6;14m')"
wait_for "units: conv9, 128 channels"
echo "ok mouse: a click selected a layer"

# ---- a fine-tune: resize while it runs, Esc cancels, the UI answers ----
T send-keys -t main ':' "finetune epochs=1 limit=20000" Enter
wait_for "Esc cancels"
T resize-window -t main -x 80 -y 24
wait_for "units: conv9, 128 channels, 0 mar"   # the 80-column layout
T capture-pane -p -t main | grep -qF "Esc cancels" || fail "the job's progress line vanished after the resize"
T send-keys -t main Tab j j;           # keys answered while the job runs
T resize-window -t main -x 100 -y 30
wait_for "units: conv9, 128 channels, 0 marked"
T send-keys -t main Escape;           wait_for "training cancelled"
echo "ok job: resized mid-fine-tune, still live, Esc cancelled it"

# ---- quit: asks (unsaved work), y quits, terminal restored ----
T send-keys -t main q;                wait_for "(y/n)"
T send-keys -t main y;                wait_for "ALT-DONE"
screen=$(T capture-pane -p -t main)
echo "$screen" | grep -q "SHEARS-EXIT=0" || fail "shears did not exit with 0"
echo "$screen" | grep -q " icanon" && echo "$screen" | grep -q " echo " || fail "the terminal modes were not restored"
[ "$(T display-message -p -t main '#{alternate_on}')" = 0 ] || fail "the alternate screen is still on"
echo "ok quit: asked, exited 0, terminal restored"
T kill-session -t main

# ---- kill -9 during a fine-tune, then --recover ----
start
T send-keys -t main s;                wait_for "scored 4 groups with l1"
cmd "mark conv9 ratio=0.5"            "conv9: 64 of 128 units marked"
T send-keys -t main a;                wait_for "applied: 64 units"
cmd "mark conv5 1,2,3"                "conv5: 3 of 64 units marked"
T send-keys -t main f;                wait_for "Esc cancels"
pid=$(pgrep -P "$(T display-message -p -t main '#{pane_pid}')" -x shears)
[ -n "$pid" ] || fail "no shears process in the pane"
kill -9 "$pid"
wait_for "SHEARS-EXIT=137"
OPENBLAS_NUM_THREADS=1 "$bin" --threads 1 --recover -c "info; plan" >"$tmp/recover.log" 2>&1 ||
    { cat "$tmp/recover.log"; fail "--recover failed"; }
grep -q "conv5 .* 3 of  *64 units" "$tmp/recover.log" || { cat "$tmp/recover.log"; fail "--recover lost the plan"; }
grep -q "conv9 .*\[N,64," "$tmp/recover.log" || { cat "$tmp/recover.log"; fail "--recover lost the applied pruning"; }
echo "ok recover: kill -9 mid-fine-tune, --recover restored the pruned model and the plan"
exit 0
