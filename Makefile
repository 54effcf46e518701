# SPDX-License-Identifier: BSD-2-Clause
# shmkit: plain GNU Makefile.
#
#   make                 libshmkit.a, libshmkit.so and the shmkit command (build/rel)
#   make test            every Check suite, then the same suites under valgrind memcheck
#   make asan            the suites built with AddressSanitizer + UBSan (build/asan)
#   make tsan            the thread-applicable suites under ThreadSanitizer (build/tsan)
#   make clang           the whole tree with clang, -Werror (build/clang)
#   make fuzz            every libFuzzer target for FUZZ_S seconds (default 60)
#   make soak            a master and 4 workers killed at random for SOAK_S seconds (default 60)
#   make bench           every benchmark; make bench-<name> runs one (bench/bench_<name>.c)
#   make bench-chan      the pub/sub benchmark: the demo against nchan (bench/chan/, ~6 min)
#   make pubsub-client   the pub/sub load client (build/rel/pubsub-client, bench/README.md)
#   make demo            the demo walk-through (issue 6); make run: demo server in foreground
#   make examples        the examples, one per event loop (build/rel/examples, docs/examples.md)
#   make bench-plot      charts of the saved benchmark runs (bench/results, bench/plot)
#   make install         PREFIX=/usr/local DESTDIR= (LIBDIR, INCLUDEDIR, BINDIR) ;
#                        headers under include/shmkit/; builds only what it installs
#   make deb             the Debian packages (debian/, into build/deb; docs/packaging.md)
#   make check-deb       build them, install them with dpkg, build the tour, run lintian
#   make clean
#
# Build variants live side by side under build/<variant>: rel (default,
# benchmarks, install), dbg (tests: -DSHK_DEBUG junk-fills freed memory),
# asan, tsan, clang.

VERSION     := 0.1.0
SOVERSION   := 0
PREFIX      ?= /usr/local
DESTDIR     ?=
# Where make install puts each part (Debian's package: LIBDIR=/usr/lib/<multiarch>).
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
BINDIR      ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CC          ?= cc
ifeq ($(origin CC),default)
CC          := gcc
endif

VARIANT     ?= rel
B           := build/$(VARIANT)

# Modules from the bottom of the dependency chain to the top. A module may
# include headers only from itself and the modules before it (mk/check-layers.sh).
MODULES     := core rbtree shmtx slab shm bus chan redis stat proc

WARN        := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
               -Wpointer-arith -Wformat=2
CSTD        := -std=c11 -D_GNU_SOURCE
INCLUDES    := $(addprefix -I,$(MODULES)) -Iinclude
# Only the demo's objects and the tests of the demo see demo/'s headers.
DEMO_INC    := -Idemo

OPT_rel     := -O2 -g
OPT_dbg     := -O1 -g -DSHK_DEBUG
OPT_asan    := -O1 -g -DSHK_DEBUG -fsanitize=address,undefined -fno-omit-frame-pointer \
               -fno-sanitize-recover=all
OPT_tsan    := -O1 -g -fsanitize=thread -Wno-tsan
OPT_clang   := -O2 -g
OPT_fuzz    := -O1 -g -DSHK_DEBUG -fsanitize=fuzzer-no-link,address,undefined \
               -fno-sanitize-recover=all -fno-omit-frame-pointer
LDOPT_asan  := -fsanitize=address,undefined
LDOPT_fuzz  := -fsanitize=address,undefined
LDOPT_tsan  := -fsanitize=thread

CFLAGS      ?=
LDFLAGS     ?=
ALL_CFLAGS  := $(CSTD) $(WARN) $(OPT_$(VARIANT)) -pthread $(INCLUDES) $(CFLAGS)
LIB_CFLAGS  := $(ALL_CFLAGS) -fPIC -fvisibility=hidden
# redis/ speaks to Redis through hiredis (Debian libhiredis-dev): every
# program that links the library links it too.
REDIS_LIBS  := -lhiredis
ALL_LDFLAGS := -pthread $(LDOPT_$(VARIANT)) $(LDFLAGS) $(REDIS_LIBS)

CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)
EVENT_CFLAGS = $(shell pkg-config --cflags libevent 2>/dev/null)
EVENT_LIBS   = $(shell pkg-config --libs libevent 2>/dev/null || echo -levent)

LIB_SRCS    := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
LIB_OBJS    := $(patsubst %.c,$(B)/obj/%.o,$(LIB_SRCS))
PUB_HEADERS := $(filter-out %_internal.h,$(foreach m,$(MODULES),$(wildcard $(m)/shk_*.h))) \
               include/shmkit.h

STATIC_LIB  := $(B)/libshmkit.a
SHARED_LIB  := $(B)/libshmkit.so.$(VERSION)
SONAME      := libshmkit.so.$(SOVERSION)

TEST_SRCS   := $(wildcard test/test_*.c)
TEST_BINS   := $(patsubst test/%.c,$(B)/test/%,$(TEST_SRCS))
TEST_UTIL   := $(patsubst %.c,$(B)/obj/%.o,$(wildcard test/util_*.c))

BENCH_SRCS  := $(wildcard bench/bench_*.c)
BENCH_BINS  := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRCS))
BENCH_UTIL  := $(patsubst %.c,$(B)/obj/%.o,$(wildcard bench/util_*.c))

# Fuzz targets (fuzz/fuzz_<name>.c): libFuzzer binaries in the fuzz variant
# (make fuzz), and replayed on their corpora by test_fuzz in every other.
FUZZ_SRCS   := $(wildcard fuzz/fuzz_*.c)
FUZZ_BINS   := $(patsubst fuzz/%.c,build/fuzz/fuzz/%,$(FUZZ_SRCS))
FUZZ_REPLAY := $(patsubst %.c,$(B)/obj/%.o,$(FUZZ_SRCS))
FUZZ_S      ?= 60

# The pub/sub load client (bench/pubsub_*.c): no BENCH program, a tool the
# pub/sub benchmark drives the demo and the nchan baseline with. It speaks
# HTTP through http_parser and WebSocket through wslay (nettle for the
# handshake), and links nothing of the library.
PUBSUB_SRCS := $(wildcard bench/pubsub_*.c)
PUBSUB_BIN  := $(if $(PUBSUB_SRCS),$(B)/pubsub-client)
PUBSUB_LIBS  = -lhttp_parser -lwslay -lnettle

TOOL_SRCS   := $(wildcard tools/*.c)
TOOL_BIN    := $(if $(TOOL_SRCS),$(B)/shmkit)

# The demo: demo/demo.c is the libevent HTTP server; the other demo/*.c
# (directives, the request limiter) need no libevent and are shared with the
# tests and benchmarks of the demo (test/test_demo*.c, bench/bench_demo*.c).
# Nothing else links them: the shmkit
# command checks the library's directives only, the demo checks its own
# with shmkit-demo -t.
DEMO_MAIN   := demo/demo.c
# The server's own files beside demo.c: push-stream's handlers, on the HTTP
# layer (libevent); the rest of demo/push_*.c (directives, templates, paths)
# goes into libdemo.a with the limiter.
DEMO_SRV_SRCS := $(DEMO_MAIN) $(wildcard demo/push_pub.c demo/push_sub.c demo/push_stats.c \
                 demo/push_page.c demo/push_redis.c)
# The demo's HTTP/1.1 and WebSocket layer (demo/http*.c, docs/http.md) on
# libevent, with Debian's http_parser, wslay and nettle: its own archive,
# linked by what uses it (test_demo_http; the demo server).
HTTP_SRCS   := $(wildcard demo/http*.c)
HTTP_LIB    := $(if $(HTTP_SRCS),$(B)/libdemohttp.a)
HTTP_LIBS    = $(EVENT_LIBS) -lhttp_parser -lwslay -lnettle
DEMO_LIB_SRCS := $(filter-out $(DEMO_SRV_SRCS) $(HTTP_SRCS),$(wildcard demo/*.c))
DEMO_LIB    := $(if $(DEMO_LIB_SRCS),$(B)/libdemo.a)
HAVE_EVENT  := $(shell pkg-config --exists libevent 2>/dev/null && echo yes)
DEMO_BIN    := $(if $(and $(wildcard $(DEMO_MAIN)),$(HAVE_EVENT)),$(B)/shmkit-demo)
DEMO_TESTS  := $(patsubst test/%.c,$(B)/test/%,$(wildcard test/test_demo*.c))
DEMO_BENCHES := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/bench_demo*.c))

# The examples (examples/*.c, docs/examples.md): one small program per
# event loop, built as a program outside the tree is, against the public
# headers under <shmkit/...> (staged in $(B)/include/shmkit) and the
# library, each with its loop's library from pkg-config. An example whose
# library is not installed is left out (test_examples says so).
EX_SRCS     := $(wildcard examples/*.c)
EX_INC      := $(B)/include/shmkit/.staged
EX_PKG_epoll :=
EX_PKG_libevent := libevent
EX_PKG_libuv := libuv
EX_PKG_io_uring := liburing
EX_HAVE     = $(if $(EX_PKG_$(1)),$(shell pkg-config --exists $(EX_PKG_$(1)) 2>/dev/null && echo y),y)
EX_NAMES    := $(foreach e,$(patsubst examples/%.c,%,$(EX_SRCS)),$(if $(call EX_HAVE,$(e)),$(e)))
EX_BINS     := $(addprefix $(B)/examples/,$(EX_NAMES))

.PHONY: all lib tests benches test test-run asan tsan clang bench bench-% bench-chan bench-redis install uninstall \
        clean deps-lib deps-test deps-demo deps-bench pubsub-client fuzz soak check-layers \
        check-exports check-docs check-install check-spdx docs demo run examples examples-built \
        deps-examples bench-plot deb check-deb
.DEFAULT_GOAL := all
.SECONDARY:

all: lib $(TOOL_BIN) $(DEMO_BIN)

lib: $(STATIC_LIB) $(SHARED_LIB) $(B)/libshmkit.so

# hiredis's headers, before any object of the library (installed as root
# when missing, mk/deps.sh lib).
$(LIB_OBJS): | deps-lib

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) $(EXTRA_INC) $(CHECK_CFLAGS) -MMD -MP -c $< -o $@

$(B)/obj/demo/%.o: EXTRA_INC := $(DEMO_INC)
$(patsubst $(B)/test/%,$(B)/obj/test/%.o,$(DEMO_TESTS)): EXTRA_INC := $(DEMO_INC)
$(patsubst $(B)/bench/%,$(B)/obj/bench/%.o,$(DEMO_BENCHES)): EXTRA_INC := $(DEMO_INC)

$(STATIC_LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJS) mk/exports.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=mk/exports.map \
	    -o $@ $(LIB_OBJS) $(ALL_LDFLAGS)

$(B)/libshmkit.so: $(SHARED_LIB)
	ln -sf libshmkit.so.$(VERSION) $(B)/$(SONAME)
	ln -sf libshmkit.so.$(VERSION) $@

$(B)/test/%: $(B)/obj/test/%.o $(TEST_UTIL) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< $(TEST_UTIL) $(if $(filter $@,$(DEMO_TESTS)),$(DEMO_LIB)) $(STATIC_LIB) \
	    $(ALL_LDFLAGS) $(CHECK_LIBS) -lrt -lm

$(DEMO_TESTS): $(DEMO_LIB)

$(B)/obj/fuzz/%.o: fuzz/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Ifuzz $(if $(filter fuzz,$(VARIANT)),,-DSHK_FUZZ_REPLAY) -MMD -MP -c $< -o $@

$(B)/test/test_fuzz: $(B)/obj/test/test_fuzz.o $(FUZZ_REPLAY) $(TEST_UTIL) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< $(FUZZ_REPLAY) $(TEST_UTIL) $(STATIC_LIB) $(ALL_LDFLAGS) $(CHECK_LIBS) -lrt -lm

build/fuzz/fuzz/%: build/fuzz/obj/fuzz/%.o build/fuzz/libshmkit.a
	@mkdir -p $(dir $@)
	$(CC) -fsanitize=fuzzer -o $@ $^ $(ALL_LDFLAGS) -lrt -lm

$(B)/libdemo.a: $(patsubst %.c,$(B)/obj/%.o,$(DEMO_LIB_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(patsubst %.c,$(B)/obj/%.o,$(HTTP_SRCS)): $(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(EVENT_CFLAGS) -MMD -MP -c $< -o $@

$(B)/libdemohttp.a: $(patsubst %.c,$(B)/obj/%.o,$(HTTP_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(B)/test/test_demo_http: $(B)/obj/test/test_demo_http.o $(TEST_UTIL) $(HTTP_LIB) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< $(TEST_UTIL) $(HTTP_LIB) $(STATIC_LIB) $(ALL_LDFLAGS) $(HTTP_LIBS) \
	    $(CHECK_LIBS) -lrt -lm

$(patsubst %.c,$(B)/obj/%.o,$(DEMO_SRV_SRCS)): $(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(DEMO_INC) $(EVENT_CFLAGS) -MMD -MP -c $< -o $@

$(B)/shmkit-demo: $(patsubst %.c,$(B)/obj/%.o,$(DEMO_SRV_SRCS)) $(HTTP_LIB) $(DEMO_LIB) $(STATIC_LIB)
	$(CC) -o $@ $(patsubst %.c,$(B)/obj/%.o,$(DEMO_SRV_SRCS)) $(HTTP_LIB) $(DEMO_LIB) $(STATIC_LIB) \
	    $(ALL_LDFLAGS) $(HTTP_LIBS) -lrt -lm

$(B)/bench/%: $(B)/obj/bench/%.o $(BENCH_UTIL) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< $(BENCH_UTIL) $(if $(filter $@,$(DEMO_BENCHES)),$(DEMO_LIB)) $(STATIC_LIB) \
	    $(ALL_LDFLAGS) -lrt -lm

$(DEMO_BENCHES): $(DEMO_LIB)

$(B)/pubsub-client: $(patsubst %.c,$(B)/obj/%.o,$(PUBSUB_SRCS))
	$(CC) -o $@ $^ $(ALL_LDFLAGS) $(PUBSUB_LIBS)

$(B)/shmkit: $(patsubst %.c,$(B)/obj/%.o,$(TOOL_SRCS)) $(STATIC_LIB)
	$(CC) -o $@ $(filter %.o,$^) $(STATIC_LIB) $(ALL_LDFLAGS) -lrt -lm

$(EX_INC): $(PUB_HEADERS)
	@mkdir -p $(dir $@)
	cp $(PUB_HEADERS) $(dir $@)
	@touch $@

$(B)/obj/examples/%.o: examples/%.c $(EX_INC)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT_$(VARIANT)) -pthread -I$(B)/include \
	    $(if $(EX_PKG_$*),$(shell pkg-config --cflags $(EX_PKG_$*))) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/examples/%: $(B)/obj/examples/%.o $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< $(STATIC_LIB) $(ALL_LDFLAGS) \
	    $(if $(EX_PKG_$*),$(shell pkg-config --libs $(EX_PKG_$*))) -lrt

examples:
	@$(MAKE) --no-print-directory deps-examples
	@$(MAKE) --no-print-directory VARIANT=rel examples-built

examples-built: $(EX_BINS)
	@echo "examples: $(or $(EX_BINS),none)"

tests: $(TEST_BINS) $(TOOL_BIN) $(DEMO_BIN) $(EX_BINS)
benches: $(BENCH_BINS) $(DEMO_BIN) $(PUBSUB_BIN)

# ---- tests -----------------------------------------------------------------

deps-lib:
	@mk/deps.sh lib

deps-test:
	@mk/deps.sh test

deps-demo:
	@mk/deps.sh demo

deps-examples:
	@mk/deps.sh examples

deps-bench:
	@mk/deps.sh bench

# ---- the demo ------------------------------------------------------------------

demo:
	@$(MAKE) --no-print-directory deps-demo
	@$(MAKE) --no-print-directory VARIANT=rel all $(if $(DEMO_BIN),build/rel/shmkit-demo)
	@demo/walkthrough.sh build/rel conf/demo.conf

run:
	@$(MAKE) --no-print-directory deps-demo
	@$(MAKE) --no-print-directory VARIANT=rel all build/rel/shmkit-demo
	build/rel/shmkit-demo -c conf/demo.conf

test:
	@$(MAKE) --no-print-directory deps-test deps-demo
	@$(MAKE) --no-print-directory VARIANT=rel check-exports check-layers check-docs check-install check-spdx
	@$(MAKE) --no-print-directory VARIANT=dbg tests
	@mk/run-tests.sh build/dbg both

check-layers:
	@mk/check-layers.sh $(MODULES)

check-install:
	@mk/check-install.sh

check-spdx:
	@mk/spdx.sh

# The folders docs/architecture.md's "which file holds what" covers.
FILE_DIRS   := $(MODULES) include tools demo examples bench fuzz test mk

docs:
	@mk/gen-api.sh $(MODULES) > docs/api.md
	@mk/gen-files.sh $(FILE_DIRS) | mk/splice.sh docs/architecture.md files > docs/architecture.md.new
	@mv docs/architecture.md.new docs/architecture.md
	@echo "docs/api.md and docs/architecture.md's file tables regenerated"

check-docs:
	@mk/gen-api.sh $(MODULES) | cmp -s - docs/api.md || \
	    { echo "docs/api.md is stale: run make docs" >&2; exit 1; }
	@mk/gen-files.sh $(FILE_DIRS) | mk/splice.sh docs/architecture.md files | \
	    cmp -s - docs/architecture.md || \
	    { echo "docs/architecture.md's file tables are stale: run make docs" >&2; exit 1; }
	@echo "docs: api.md and architecture.md's file tables match the tree"

check-exports: $(SHARED_LIB)
	@mk/check-exports.sh $(SHARED_LIB)

asan:
	@$(MAKE) --no-print-directory deps-test
	@$(MAKE) --no-print-directory VARIANT=asan tests
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	    mk/run-tests.sh build/asan native

tsan:
	@$(MAKE) --no-print-directory deps-test
	@$(MAKE) --no-print-directory VARIANT=tsan tests
	@TSAN_OPTIONS=halt_on_error=1 SHK_TEST_ONLY_THREADS=1 mk/run-tests.sh build/tsan native

clang:
	@$(MAKE) --no-print-directory VARIANT=clang CC=clang all tests benches

# libFuzzer targets, each run for FUZZ_S seconds on a copy of its corpus.
fuzz:
	@mk/deps.sh fuzz
	@$(MAKE) --no-print-directory VARIANT=fuzz CC=clang $(FUZZ_BINS)
	@mk/run-fuzz.sh build/fuzz $(FUZZ_S) $(FUZZ_BINS)

# The soak (test/soak_master.c): a real master with 4 workers exchanging
# alerts, taking a zone lock and churning a slab, SIGKILLed at random for
# SOAK_S seconds; prints SOAK lines and fails on any loss, corruption or leak.
SOAK_S      ?= 60

$(B)/test/soak_%: $(B)/obj/test/soak_%.o $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< $(STATIC_LIB) $(ALL_LDFLAGS) -lrt -lm

soak:
	@$(MAKE) --no-print-directory VARIANT=dbg build/dbg/test/soak_master
	@build/dbg/test/soak_master $(SOAK_S)

# ---- benchmarks --------------------------------------------------------------

# make bench prints every figure as it comes and, when every benchmark
# passed, keeps the run's BENCH lines in bench/results/<date>-<host>.txt
# (-2, -3 ... for a second run the same day), headed by '#' lines naming the
# commit, the kernel and the CPUs; make bench-plot charts the kept runs
# (bench/plot/plot.sh: one PNG per module for the latest run, and the
# history of every ratio across the runs, into bench/results/png).
BENCH_RESULTS := bench/results

bench:
	@$(MAKE) --no-print-directory VARIANT=rel benches
	@tmp=$$(mktemp /tmp/shmkit-bench.XXXXXX) || exit 1; \
	for b in $(BENCH_BINS); do \
	    echo "== $$b"; \
	    { $$b || echo "$$b" >> $$tmp.failed; } | tee -a $$tmp; \
	    if [ -e $$tmp.failed ]; then rm -f $$tmp $$tmp.failed; exit 1; fi; \
	done; \
	mkdir -p $(BENCH_RESULTS); \
	base=$(BENCH_RESULTS)/$$(date +%Y-%m-%d)-$$(hostname -s 2>/dev/null || echo host); \
	out=$$base.txt; i=2; while [ -e $$out ]; do out=$$base-$$i.txt; i=$$((i + 1)); done; \
	{ echo "# shmkit make bench, $$(date '+%Y-%m-%d %H:%M:%S %z')"; \
	  echo "# commit $$(git describe --always --dirty 2>/dev/null || echo unknown)"; \
	  echo "# kernel $$(uname -r), $$(nproc) CPUs, $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"; \
	  grep '^BENCH ' $$tmp; } > $$out; \
	rm -f $$tmp; echo "bench: saved $$(grep -c '^BENCH ' $$out) figures in $$out"

bench-plot:
	@mk/deps.sh plot
	@bench/plot/plot.sh $(BENCH_RESULTS) $(BENCH_RESULTS)/png

pubsub-client:
	@$(MAKE) --no-print-directory deps-bench
	@$(MAKE) --no-print-directory VARIANT=rel build/rel/pubsub-client

# The pub/sub benchmark (bench/chan/run.sh, bench/README.md "make
# bench-chan"): the demo server against nchan, both driven by the load
# client; about 10 minutes. A complete run keeps its BENCH lines and RESULT
# log in bench/results/<date>-chan.txt. BENCH_CHAN=--quick: one round with
# fewer messages, nothing kept (a smoke run, about 2 minutes).
bench-chan:
	@$(MAKE) --no-print-directory deps-bench deps-demo
	@$(MAKE) --no-print-directory VARIANT=rel build/rel/shmkit-demo build/rel/shmkit build/rel/pubsub-client
	@bench/chan/run.sh --results $(BENCH_RESULTS) $(BENCH_CHAN)

bench-%:
	@$(MAKE) --no-print-directory VARIANT=rel build/rel/bench/bench_$* $(if $(DEMO_BIN),build/rel/shmkit-demo)
	@build/rel/bench/bench_$*

# make bench-redis: the library's figures (bench_redis, redis.lib_*) then
# the HTTP ones (bench/redis_http.sh: two demo instances on one Redis
# against two nchan nginx on it, and the floor without Redis; redis.*
# with nchan as the baseline), ~4 minutes; the BENCH lines are kept in
# bench/results/<date>-redis.txt (-2, -3 ... for a second run that day).
bench-redis:
	@$(MAKE) --no-print-directory deps-bench
	@$(MAKE) --no-print-directory VARIANT=rel build/rel/bench/bench_redis build/rel/shmkit-demo \
	    build/rel/pubsub-client
	@tmp=$$(mktemp /tmp/shmkit-bench-redis.XXXXXX) || exit 1; \
	{ build/rel/bench/bench_redis && bench/redis_http.sh build/rel || touch $$tmp.failed; } | \
	    tee $$tmp; \
	if [ -e $$tmp.failed ]; then rm -f $$tmp $$tmp.failed; exit 1; fi; \
	mkdir -p $(BENCH_RESULTS); base=$(BENCH_RESULTS)/$$(date +%Y-%m-%d)-redis; \
	out=$$base.txt; i=2; while [ -e $$out ]; do out=$$base-$$i.txt; i=$$((i + 1)); done; \
	{ echo "# shmkit make bench-redis, $$(date '+%Y-%m-%d %H:%M:%S %z')"; \
	  echo "# commit $$(git describe --always --dirty 2>/dev/null || echo unknown)"; \
	  echo "# kernel $$(uname -r), $$(nproc) CPUs, $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"; \
	  grep '^BENCH ' $$tmp; } > $$out; \
	rm -f $$tmp; echo "bench-redis: saved $$(grep -c '^BENCH ' $$out) figures in $$out"

# ---- install -----------------------------------------------------------------

# install copies what lib and the shmkit command built (building them first
# only when they are missing or stale, never the demo); the .pc file names
# the directories it installed into.
install: lib $(TOOL_BIN)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/shmkit $(DESTDIR)$(PKGCONFIGDIR) \
	    $(if $(TOOL_BIN),$(DESTDIR)$(BINDIR))
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/
	ln -sf libshmkit.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf libshmkit.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libshmkit.so
	install -m 644 $(PUB_HEADERS) $(DESTDIR)$(INCLUDEDIR)/shmkit/
	$(if $(TOOL_BIN),install -m 755 $(TOOL_BIN) $(DESTDIR)$(BINDIR)/)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' mk/shmkit.pc.in \
	    > $(DESTDIR)$(PKGCONFIGDIR)/shmkit.pc

uninstall:
	rm -rf $(DESTDIR)$(INCLUDEDIR)/shmkit
	rm -f $(DESTDIR)$(LIBDIR)/libshmkit.* $(DESTDIR)$(PKGCONFIGDIR)/shmkit.pc
	rm -f $(DESTDIR)$(BINDIR)/shmkit

# ---- Debian packages (debian/, docs/packaging.md) ------------------------------

deb:
	@mk/deps.sh deb
	@mk/check-deb.sh --build-only build/deb

check-deb:
	@mk/deps.sh deb
	@mk/check-deb.sh

clean:
	rm -rf build

-include $(shell find build/$(VARIANT) -name '*.d' 2>/dev/null)
