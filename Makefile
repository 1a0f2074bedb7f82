# Function Runner: one Makefile, no configure (docs/style.md §12).
#   make          bin/fnrun and bin/fnrun-worker
#   make check    every test, built with ASan+UBSan, then each fuzz corpus replayed
#   make run      install what is missing, build, serve the demo
#   make bench    the figures of docs/design.md §9
CC      ?= cc
PKGS    := libuv json-c yaml-0.1 sqlite3 libpq libcurl libssl zlib libpng
# pkg-config runs when a recipe first needs it, not when make reads this
# file: `make run` on a new machine installs the packages (deps) first.
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $(PKGS) 2>/dev/null))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $(PKGS) 2>/dev/null))$(PKG_LIBS)
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow
CFLAGS  ?= -O2 -g
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(PKG_CFLAGS) -MMD -MP
LDLIBS  = $(PKG_LIBS) -lwslay -lhttp_parser -lcrypto -ldl -lm -lpthread

# O=DIR puts every build output under DIR (parallel work trees, CI).
ifeq ($(SAN),1)
BUILD   := $(if $(O),$(O)/san,build/san)
BIN     := $(BUILD)/bin
CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else
BUILD   := $(if $(O),$(O)/rel,build/rel)
BIN     := $(if $(O),$(O)/bin,bin)
endif
SANDIR  := $(if $(O),$(O)/san,build/san)

LIB_SRC    := $(filter-out src/main.c,$(wildcard src/*.c))
WORKER_SRC := $(filter-out worker/main.c,$(wildcard worker/*.c))
TEST_SRC   := $(filter-out tests/fake_nvml.c,$(wildcard tests/*.c))
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o)
WORKER_OBJ := $(WORKER_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ   := $(TEST_SRC:%.c=$(BUILD)/%.o)

all: $(BIN)/fnrun $(BIN)/fnrun-worker

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) -Isrc -Iworker -Itests -I$(BUILD)/tests $(BASE_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libfnrun.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libworker.a: $(WORKER_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BIN)/fnrun: $(BUILD)/src/main.o $(BUILD)/libfnrun.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/fnrun-worker: $(BUILD)/worker/main.o $(BUILD)/libworker.a $(BUILD)/libfnrun.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The test runner lists every `Suite *suite_x(void)` found in tests/test_*.c.
$(BUILD)/tests/suites.h: $(wildcard tests/test_*.c)
	@mkdir -p $(dir $@)
	grep -ho 'Suite \*suite_[a-z0-9_]*(void)' $^ | sed 's/(void)//; s/Suite \*//' | \
		awk '{ print "SUITE(" $$1 ")" }' > $@

$(BUILD)/tests/main.o: $(BUILD)/tests/suites.h

$(BUILD)/tests/run: $(TEST_OBJ) $(BUILD)/libworker.a $(BUILD)/libfnrun.a | $(BUILD)/tests/libnvidia-ml.so.1
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs check libpng)

# The fake NVML test_nvml dlopens; no sanitizers in a dlopened library.
$(BUILD)/tests/libnvidia-ml.so.1: tests/fake_nvml.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g -shared -fPIC -o $@ $<

# Tests exec the binaries in FNRUN_BIN and read examples/ and tests/fixtures/.
# Like `run`, installs what is missing first (packages, npm, podman's API).
check: deps
	$(MAKE) SAN=1 all $(SANDIR)/tests/run
	FNRUN_BIN=$(SANDIR)/bin DOCKER_HOST=$${DOCKER_HOST:-unix:///run/podman/podman.sock} \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(SANDIR)/tests/run $(TESTS)
	$(if $(TESTS),,$(MAKE) fuzz-replay)

run: deps
	$(MAKE) all
	$(BIN)/fnrun serve

# The demo with a real Prometheus scraping it (scripts/metrics-demo; PROM_PORT=9091).
metrics-demo: deps
	$(MAKE) all
	scripts/metrics-demo $(BIN)

# A local PostgreSQL and two nodes (127.0.0.1:8180 and :8181) on the demo registry.
run-cluster: deps
	$(MAKE) all
	scripts/run-cluster $(BIN)

deps:
	@scripts/install-deps

$(BUILD)/bench/bench: $(BUILD)/bench/bench.o $(BUILD)/tests/testutil.o $(BUILD)/tests/tws.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs check)

# Figures of docs/design.md §9 on this machine, optimised build; prints only.
bench: all $(BUILD)/bench/bench
	FNRUN_BIN=$(BIN) FNRUN_ROOT=$(CURDIR) $(BUILD)/bench/bench

# Pre-warming judged on a replayed usage trace (bench/trace_gen.c, bench/trace_replay.c):
# three gateways (idle stop, always warm, predictive) replay one trace in compressed
# time; TRACE_DAYS (2), TRACE_SPEEDUP (360), TRACE_SEED (42), TRACE_SESSIONS (300 a day).
$(BUILD)/bench/trace: $(BUILD)/bench/trace_replay.o $(BUILD)/bench/trace_gen.o $(BUILD)/tests/testutil.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs check)

trace-bench: all $(BUILD)/bench/trace
	FNRUN_BIN=$(BIN) FNRUN_ROOT=$(CURDIR) $(BUILD)/bench/trace bench

format:
	clang-format -i src/*.[ch] worker/*.[ch] tests/*.[ch]

clean:
	rm -rf build bin

.PHONY: all check run metrics-demo run-cluster deps bench trace-bench format clean
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- containers: runtime docker (docs/registry.md), images built locally ----
#   make images                  every image under containers/, from $(BIN)/fnrun-worker
#   make build-model MODEL=x     one image, localhost/fnrun/x (x: a directory of containers/)
#   make model-shell MODEL=x     a shell in image x, as fnrun runs it (the host's busybox mounted)
#   make up-with-speech          install, build, serve examples/registry-docker.yaml
#   make up-with-video           the same; its Create Video runs in localhost/fnrun/video (ffmpeg)
#   make push-model MODEL=x REGISTRY=host[:port]/path   push image x to an image registry
IMAGES      := $(patsubst containers/%/Containerfile,%,$(wildcard containers/*/Containerfile))
IMAGE_TAG   ?= latest
IMAGE_WORK  := $(if $(O),$(O),build)/images
PODMAN_SOCK := unix:///run/podman/podman.sock
need_model   = @[ -n "$(MODEL)" ] && [ -f containers/$(MODEL)/Containerfile ] || { \
	echo "give MODEL=x, one of: $(IMAGES)" >&2; exit 2; }

images: all
	@for m in $(IMAGES); do \
		containers/build $$m $(BIN) localhost/fnrun/$$m:$(IMAGE_TAG) $(IMAGE_WORK) || exit 1; done

build-model: all
	$(need_model)
	containers/build $(MODEL) $(BIN) localhost/fnrun/$(MODEL):$(IMAGE_TAG) $(IMAGE_WORK)

model-shell:
	$(need_model)
	podman run --rm -it --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
		-v "$$(command -v busybox)":/usr/local/bin/busybox:ro --entrypoint /usr/local/bin/busybox \
		localhost/fnrun/$(MODEL):$(IMAGE_TAG) sh

up-with-speech: deps
	$(MAKE) images
	DOCKER_HOST=$${DOCKER_HOST:-$(PODMAN_SOCK)} $(BIN)/fnrun serve --config examples/registry-docker.yaml

# The same demo in containers; Create Video's models run in localhost/fnrun/video.
up-with-video: deps
	$(MAKE) images
	DOCKER_HOST=$${DOCKER_HOST:-$(PODMAN_SOCK)} $(BIN)/fnrun serve --config examples/registry-docker.yaml

push-model:
	$(need_model)
	@[ -n "$(REGISTRY)" ] || { echo "make push-model: name the image registry, REGISTRY=host[:port]/path" >&2; exit 2; }
	podman push localhost/fnrun/$(MODEL):$(IMAGE_TAG) docker://$(REGISTRY)/$(MODEL):$(IMAGE_TAG) || { \
		echo "make push-model: could not push to $(REGISTRY) (is it reachable from here?)" >&2; exit 1; }

# make bench also measures a sim container's cold start (bench/bench_docker.c).
$(BUILD)/bench/bench: $(BUILD)/bench/bench_docker.o
# ... and the cost of a /metrics scrape (bench/bench_metrics.c; renders metrics.c in-process too).
$(BUILD)/bench/bench: $(BUILD)/bench/bench_metrics.o $(BUILD)/libfnrun.a
# ... and how fast a model is adopted and a bad variant dropped (bench/bench_adoption.c).
$(BUILD)/bench/bench: $(BUILD)/bench/bench_adoption.o
# ... and several nodes on PostgreSQL beside one on SQLite (bench/bench_cluster.c).
$(BUILD)/bench/bench: $(BUILD)/bench/bench_cluster.o

.PHONY: images build-model model-shell up-with-speech up-with-video push-model

# ---- the seed's targets, by its names ----
#   make dev-lowmem | dev-mediummem | dev-highmem   the demo with a GPU budget of 8, 16, 24 GB
#   make test-containers   the docker runtime's tests (podman's Docker API)
#   make test-fallback     the fallback tests (every test case named "fallback")
#   make test-gpu          scripts/gpu-check on this machine's NVIDIA GPU, when it has one
#   make load              the locust load test, headless (LOAD_USERS, LOAD_SECONDS)
dev-lowmem:
	VRAM_LIMIT=8000 $(MAKE) run
dev-mediummem:
	VRAM_LIMIT=16000 $(MAKE) run
dev-highmem:
	VRAM_LIMIT=24000 $(MAKE) run

test-containers:
	$(MAKE) check TESTS=docker

test-fallback:
	CK_RUN_CASE=fallback $(MAKE) check TESTS="gateway lifecycle"

# The seed's load test (locust/locustfile.py) headless against a demo of its own.
LOAD_USERS   ?= 20
LOAD_SECONDS ?= 60
load: deps
	$(MAKE) all
	FNRUN_BIN=$(BIN) scripts/load $(LOAD_USERS) $(LOAD_SECONDS)

test-gpu:
	@if ! { command -v nvidia-smi >/dev/null 2>&1 || ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml\.so\.1'; }; then \
		echo "make test-gpu: this machine has no NVIDIA GPU (no NVML library, no nvidia-smi): nothing to check."; \
		echo "The GPU logic is tested without one by make check (a fake libnvidia-ml); see scripts/gpu-check."; \
		exit 0; \
	fi; \
	$(MAKE) deps && scripts/gpu-bundle && build/gpu-bundle/gpu-check build/gpu-bundle

.PHONY: dev-lowmem dev-mediummem dev-highmem test-containers test-fallback test-gpu load

# ---- fuzzing: libFuzzer targets in fuzz/, built with clang (README "Fuzzing") ----
#   make fuzz          builds every target into $(FUZZDIR)/bin and fuzzes each for
#                      FUZZ_SECONDS (FUZZ_TARGETS="a b" for some): new inputs go to
#                      $(FUZZDIR)/corpus/<t>, crashes to $(FUZZDIR)/crashes/
#   make fuzz-replay   runs each target once over every file of fuzz/corpus/<t> and
#                      fuzz/regressions/<t>, no mutation; make check runs it
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZDIR      := $(if $(O),$(O)/fuzz,build/fuzz)
FUZZ_TARGETS ?= $(patsubst fuzz/%.c,%,$(filter-out fuzz/fuzz_util.c,$(wildcard fuzz/*.c)))
# clang (not gcc) warns about the {NULL} ends of the registry's key tables.
FUZZ_CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined -Wno-missing-field-initializers
# Largest input per target, bytes: a little over the limits each harness sets.
FUZZ_MAXLEN_http_request  := 8192
FUZZ_MAXLEN_generate      := 4096
FUZZ_MAXLEN_registry      := 16384
FUZZ_MAXLEN_comfy_ws      := 8192
FUZZ_MAXLEN_comfy_history := 8192
FUZZ_MAXLEN_worker_prompt := 8192

$(FUZZDIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -Isrc -Iworker -Ifuzz $(BASE_CFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link \
		-c $< -o $@

$(FUZZDIR)/libfnrun.a: $(LIB_SRC:%.c=$(FUZZDIR)/%.o)
	rm -f $@ && ar rcs $@ $^

$(FUZZDIR)/libworker.a: $(WORKER_SRC:%.c=$(FUZZDIR)/%.o)
	rm -f $@ && ar rcs $@ $^

$(FUZZDIR)/bin/%: $(FUZZDIR)/fuzz/%.o $(FUZZDIR)/fuzz/fuzz_util.o $(FUZZDIR)/libworker.a \
		$(FUZZDIR)/libfnrun.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

.SECONDARY: $(FUZZ_TARGETS:%=$(FUZZDIR)/fuzz/%.o) $(FUZZDIR)/fuzz/fuzz_util.o

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZDIR)/bin/%)

fuzz: $(FUZZ_TARGETS:%=fuzz-run-%)

fuzz-replay: $(FUZZ_TARGETS:%=fuzz-replay-%)

# stdin is /dev/null: the registry target opens the files its inputs name.
fuzz-run-%: $(FUZZDIR)/bin/%
	@mkdir -p $(FUZZDIR)/corpus/$* $(FUZZDIR)/crashes
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=$(or $(FUZZ_MAXLEN_$*),4096) -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 $(if $(wildcard fuzz/$*.dict),-dict=fuzz/$*.dict) \
		-artifact_prefix=$(FUZZDIR)/crashes/$*- \
		$(FUZZDIR)/corpus/$* fuzz/corpus/$* $(wildcard fuzz/regressions/$*) </dev/null

# Each file once, given as arguments: no mutation (with none libFuzzer would
# fuzz, so none is an error). A crash, leak or UBSan report fails; its log shows.
fuzz_inputs = $(sort $(wildcard fuzz/corpus/$*/* fuzz/regressions/$*/*))
fuzz-replay-%: $(FUZZDIR)/bin/%
	@echo "fuzz-replay $*: $(words $(fuzz_inputs)) inputs"
	@$(if $(fuzz_inputs),true,echo "fuzz-replay: fuzz/corpus/$* is empty" >&2; exit 1)
	@$< $(fuzz_inputs) </dev/null >$(FUZZDIR)/replay-$*.log 2>&1 || \
		{ tail -n 60 $(FUZZDIR)/replay-$*.log; exit 1; }

.PHONY: fuzz fuzz-build fuzz-replay
-include $(shell find $(FUZZDIR) -name '*.d' 2>/dev/null)
