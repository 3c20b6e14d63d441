# lop — build. `make` builds build/lop and build/liblop.a; `make test` runs the suite;
# `make demo` fetches SmolLM2 and generates from it. Dependencies are Debian packages,
# installed on demand by scripts/deps.sh (apt-get), so a fresh Debian machine needs nothing else.

CC      ?= cc
NVCC    ?= nvcc
BUILD   ?= build
PKGS    := libcjson openblas libpcre2-8
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread -Iinclude -Isrc \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS  ?=
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread -ldl
SAN     ?=
ifneq ($(SAN),)
  CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDLIBS += -fsanitize=address,undefined
endif

LIB_SRC  := $(sort $(shell find src -name '*.c'))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CU_SRC   := $(sort $(shell find src -name '*.cu' 2>/dev/null))
CLI_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tools/*.c)))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

.PHONY: all deps test demo cuda clean bench-cpu
all: $(BUILD)/lop $(BUILD)/liblop.a

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/liblop.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/lop: $(CLI_OBJ) $(BUILD)/liblop.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) $(BUILD)/liblop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -Itests -o $@ $< $(TEST_SUPPORT) $(BUILD)/liblop.a $(LDLIBS) -lcmocka

test: deps
	@$(MAKE) --no-print-directory all $(TEST_BIN)
	@scripts/run_tests.sh $(BUILD)

# CUDA backend: compiled whenever nvcc exists (CI compiles it; it runs only on a GPU machine).
cuda:
	@if [ -z "$(CU_SRC)" ]; then echo "no CUDA sources yet"; \
	 elif command -v $(NVCC) >/dev/null; then mkdir -p $(BUILD)/cu && \
	   for f in $(CU_SRC); do $(NVCC) -O3 -Iinclude -Isrc -gencode arch=compute_90,code=sm_90 \
	     -gencode arch=compute_90,code=compute_90 -c $$f -o $(BUILD)/cu/$$(basename $$f .cu).o || exit 1; done; \
	 else echo "nvcc not found: CUDA backend not built"; fi

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
