# shears — build, test, run. `make run` and `make test` set everything up.
#   make            build the shears binary
#   make run        set up, then open the workbench on the bundled sample
#                   (on a terminal; otherwise the headless main job)
#   make test       set up, build and pass every test
#   make SAN=1 test the same under AddressSanitizer + UBSan
#   make CC=clang   build with clang
#   make bench      benchmarks beside ONNX Runtime, and the workbench's (not part of test)
#   make fuzz       libFuzzer targets (clang; not part of test)

CC ?= cc
SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-san
else
BUILD ?= build
endif

APT_PACKAGES := build-essential pkg-config libopenblas-dev libprotobuf-c-dev protobuf-c-compiler \
	libonnx-dev libcjson-dev zlib1g-dev libncurses-dev libreadline-dev libcmocka-dev \
	dataset-fashion-mnist libonnx-testdata tmux
# Node.js and npm (test tooling: ONNX Runtime) come from Debian only when the
# machine has no npm already (some images ship NodeSource's nodejs, which
# bundles npm and conflicts with Debian's npm package).
NODE_PACKAGES := $(if $(shell command -v npm 2>/dev/null),,nodejs npm)
PKGS := openblas libprotobuf-c libcjson zlib
ONNX_PROTO := /usr/include/onnx/onnx.proto

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
OPT ?= -O3 -march=x86-64-v3 -fno-trapping-math -g
ifeq ($(SAN),1)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
SANLD := -fsanitize=address,undefined
endif
CFLAGS_ALL = -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) $(OPT) -I. -I$(BUILD)/gen $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL = $(SANLD) $(PKG_LIBS) -lpthread -lm -ldl $(LDLIBS)

GEN_C := $(BUILD)/gen/onnx.pb-c.c
GEN_H := $(BUILD)/gen/onnx.pb-c.h
CORE_SRC := $(wildcard core/*.c core/ops/*.c core/criteria/*.c)
CMD_SRC := $(wildcard commands/*.c)
LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CORE_SRC) $(CMD_SRC)) $(BUILD)/obj/gen/onnx.pb-c.o
LIB := $(BUILD)/libshears.a
BIN := $(BUILD)/shears
# The workbench (tui/): ncurses (wide) and GNU readline, only in the binary.
TUI_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tui/*.c))
TUI_LIBS = $(shell pkg-config --libs ncursesw readline 2>/dev/null || echo -lncursesw -ltinfo -lreadline)

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BINS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_SUPPORT := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/support/*.c))
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tests/%,$(TOOL_SRC))
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.SECONDARY:
.PHONY: all deps run test bench-ui unit-tests conformance interop bench bench-deps fuzz clean check-deps ort-deps
all: $(BIN)

# ---- setup --------------------------------------------------------------
deps:
	@missing=""; for p in $(APT_PACKAGES) $(NODE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "make deps: installing$$missing"; \
	    (apt-get install -y --no-install-recommends $$missing || \
	     (apt-get update && apt-get install -y --no-install-recommends $$missing)) >/dev/null || exit 1; \
	  else echo "make deps: missing packages; run: sudo apt-get install -y$$missing"; exit 1; fi; \
	fi

ORT_DIR := tests/ort
ORT_STAMP := $(ORT_DIR)/node_modules/onnxruntime-node/package.json
ort-deps: $(ORT_STAMP)
$(ORT_STAMP): $(ORT_DIR)/package.json
	cd $(ORT_DIR) && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

# ---- build --------------------------------------------------------------
$(GEN_C) $(GEN_H): $(ONNX_PROTO)
	@mkdir -p $(BUILD)/gen
	@echo "  PROTOC-C $<"
	@protoc-c --proto_path=$(dir $(ONNX_PROTO)) --c_out=$(BUILD)/gen $(notdir $(ONNX_PROTO))

$(BUILD)/obj/gen/onnx.pb-c.o: $(GEN_C)
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) -std=c11 $(OPT) -w -I$(BUILD)/gen $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BIN): $(TUI_OBJ) $(LIB)
	@echo "  LD $@"
	@$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) $(TUI_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_SUPPORT) $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD $@"
	@$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL) -lcmocka

$(BUILD)/tests/%: $(BUILD)/obj/tests/tools/%.o $(TEST_SUPPORT) $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD $@"
	@$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	@echo "  LD $@"
	@$(CC) $(OPT) -o $@ $^ $(LDLIBS_ALL)

# Criterion plugins (plugins/shears_plugin.h): the example, and two test
# fixtures (a data-driven one and one built for another ABI version).
PLUGINS := $(BUILD)/plugins/example_plugin.so $(BUILD)/plugins/act_plugin.so $(BUILD)/plugins/wrong_abi_plugin.so
$(BUILD)/plugins/example_plugin.so: plugins/example_plugin.c plugins/shears_plugin.h
$(BUILD)/plugins/act_plugin.so: tests/fixtures/plugin_act.c plugins/shears_plugin.h
$(BUILD)/plugins/wrong_abi_plugin.so: tests/fixtures/plugin_wrong_abi.c plugins/shears_plugin.h
$(PLUGINS):
	@mkdir -p $(dir $@)
	@echo "  SO $@"
	@$(CC) -std=c11 $(WARN) $(OPT) -fPIC -shared -I. -o $@ $< -lm

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- run and test -------------------------------------------------------
run: deps $(BIN)
	./tests/run_main_job.sh $(BIN)

# Tests run with one BLAS thread so results are reproducible.
test: deps
	$(MAKE) --no-print-directory all-tests
	$(MAKE) --no-print-directory ort-deps
	OPENBLAS_NUM_THREADS=1 ./tests/run_tests.sh $(BUILD)

all-tests: $(BIN) $(TEST_BINS) $(TOOL_BINS) $(PLUGINS)

bench-deps: deps ort-deps
bench: bench-deps $(BIN) $(TOOL_BINS) $(BENCH_BINS)
	./bench/run.sh $(BUILD)
	./bench/train.sh $(BUILD)
	./bench/prune.sh $(BUILD)
	$(MAKE) --no-print-directory bench-ui

# The workbench: keystroke to redraw on a generated 1,000-node model, and
# the longest UI stall while jobs run (tui/bench_ui.c).
bench-ui: $(BIN)
	OPENBLAS_NUM_THREADS=1 $(BIN) --bench-ui

# ---- fuzzing: libFuzzer targets in fuzz/ (clang; not part of test) -----
# make fuzz [FUZZ_TIME=seconds per target] builds the library with clang's
# fuzzer instrumentation in $(FUZZ_BUILD) and runs each target in turn,
# starting from the seeds in fuzz/corpus/<target>. See fuzz/README.md.
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME ?= 60
FUZZ_TARGETS := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_OPT := -O1 -g -march=x86-64-v3 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
fuzz:
	@printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' | \
	  clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null || \
	  { echo "make fuzz: clang with libFuzzer is missing; run: sudo apt-get install -y clang libclang-rt-14-dev"; exit 1; }
	@$(MAKE) --no-print-directory CC=clang BUILD=$(FUZZ_BUILD) OPT="$(FUZZ_OPT)" $(FUZZ_BUILD)/libshears.a
	@mkdir -p $(FUZZ_BUILD)/fuzz
	@for t in $(FUZZ_TARGETS); do echo "  LD $(FUZZ_BUILD)/fuzz/$$t"; \
	  clang -std=c11 -D_POSIX_C_SOURCE=200809L $(WARN) $(subst fuzzer-no-link,fuzzer,$(FUZZ_OPT)) -I. -I$(FUZZ_BUILD)/gen $(PKG_CFLAGS) \
	    fuzz/$$t.c $(FUZZ_BUILD)/libshears.a $(PKG_LIBS) -lpthread -lm -ldl -o $(FUZZ_BUILD)/fuzz/$$t || exit 1; done
	@for t in $(FUZZ_TARGETS); do mkdir -p $(FUZZ_BUILD)/corpus/$$t; echo "== $$t ($(FUZZ_TIME) s)"; \
	  OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 $(FUZZ_BUILD)/fuzz/$$t -max_total_time=$(FUZZ_TIME) \
	    -artifact_prefix=$(FUZZ_BUILD)/ $$(cat fuzz/$$t.options 2>/dev/null) $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t || exit 1; done

clean:
	rm -rf build build-san build-*
