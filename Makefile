# lop — build. `make` builds build/lop and build/liblop.a; `make test` runs the suite;
# `make demo` runs the main job on SmolLM2 (scripts/demo.sh). Dependencies are Debian packages,
# installed on demand by scripts/deps.sh (apt-get), so a fresh Debian machine needs nothing else.

CC      ?= cc
NVCC    ?= nvcc
BUILD   ?= build
PKGS    := libcjson openblas libpcre2-8
# Flags of the Debian -dev packages; override both (e.g. scripts/gpu_check.sh) where pkg-config
# or the packages live elsewhere.
DEP_CFLAGS ?= $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEP_LIBS   ?= $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread -Iinclude -Isrc $(DEP_CFLAGS)
CFLAGS  ?=
LDLIBS  := $(DEP_LIBS) -lm -lpthread -ldl
SAN     ?=
ifneq ($(SAN),)
  CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDLIBS += -fsanitize=address,undefined
endif

LIB_SRC  := $(sort $(shell find src -name '*.c'))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CU_SRC   := $(sort $(shell find src -name '*.cu' 2>/dev/null))
CLI_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tools/*.c)))
CU_HDR   := $(sort $(shell find src -name "*.cuh" 2>/dev/null) $(wildcard src/runtime/cuda/*.h))

# CUDA backend: built into liblop.a whenever nvcc exists, unless CUDA=0. The toolkit is found
# from nvcc's location; binaries link cudart / cuBLASLt / cuBLAS with an rpath to it.
CUDA    ?= auto
ifeq ($(CUDA),0)
  HAVE_NVCC :=
else
  HAVE_NVCC := $(shell command -v $(NVCC) 2>/dev/null)
endif
ifneq ($(HAVE_NVCC),)
  CUDA_HOME   ?= $(abspath $(dir $(realpath $(HAVE_NVCC)))/..)
  CUDA_LIBDIR := $(firstword $(wildcard $(CUDA_HOME)/lib64/libcudart.so $(CUDA_HOME)/targets/x86_64-linux/lib/libcudart.so))
  CUDA_LIBDIR := $(dir $(CUDA_LIBDIR))
  NVCCFLAGS   ?= -O3 -std=c++17 -lineinfo -Xcompiler -Wall -DLOP_HAVE_CUDA -Iinclude -Isrc $(DEP_CFLAGS) \
                 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
  CU_OBJ      := $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
  CFLAGS_BASE += -DLOP_HAVE_CUDA
  LDLIBS      += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublasLt -lcublas -lcudart -lstdc++
else
  CU_OBJ      :=
endif

# Rebuild everything when the configuration (CUDA on/off, sanitizers) changes.
# TIMELINE=1: a diagnostic build whose kernels stamp a device timeline (src/runtime/cuda/timeline.cuh).
TIMELINE ?=
ifeq ($(TIMELINE),1)
  NVCCFLAGS += -DLOP_TIMELINE
endif
CONFIG_ID := cuda=$(if $(HAVE_NVCC),1,0) san=$(SAN) timeline=$(TIMELINE)
$(shell mkdir -p $(BUILD); echo '$(CONFIG_ID)' | cmp -s - $(BUILD)/config.stamp 2>/dev/null || echo '$(CONFIG_ID)' > $(BUILD)/config.stamp)
# The commit the CLI reports in benchmark metadata: a generated header rewritten only when it
# changes, so only the files that include it rebuild.
LOP_COMMIT := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(shell mkdir -p $(BUILD)/gen; echo '#define LOP_COMMIT "$(LOP_COMMIT)"' | cmp -s - $(BUILD)/gen/commit.h 2>/dev/null || echo '#define LOP_COMMIT "$(LOP_COMMIT)"' > $(BUILD)/gen/commit.h)
$(CLI_OBJ): CFLAGS_BASE += -I$(BUILD)/gen

TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

.PHONY: all deps test demo cuda clean bench-cpu
all: $(BUILD)/lop $(BUILD)/liblop.a

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c $(BUILD)/config.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.cu.o: %.cu $(CU_HDR) $(BUILD)/config.stamp
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/liblop.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/lop: $(CLI_OBJ) $(BUILD)/liblop.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) $(BUILD)/liblop.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -Itests -o $@ $< $(TEST_SUPPORT) $(BUILD)/liblop.a $(LDLIBS) -lcmocka

# lop's own GEMV launches timed alone (bench/tools/gemv_iso.cu; GPU machine: scripts/gpu_check.sh iso)
$(BUILD)/gemv_iso: $(BUILD)/bench/tools/gemv_iso.cu.o $(BUILD)/liblop.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $^ $(LDLIBS)

# lop's sampler timed alone (bench/tools/sample_iso.cu; GPU machine: scripts/gpu_check.sh iso)
$(BUILD)/sample_iso: $(BUILD)/bench/tools/sample_iso.cu.o $(BUILD)/liblop.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $^ $(LDLIBS)

test: deps
	@$(MAKE) --no-print-directory all $(TEST_BIN)
	@scripts/run_tests.sh $(BUILD)

# CUDA backend, compile only (CI compiles it; it runs only on a GPU machine). `make` builds it too
# whenever nvcc exists.
cuda:
ifneq ($(HAVE_NVCC),)
	@$(MAKE) --no-print-directory $(CU_OBJ)
	@echo "CUDA backend compiled: $(words $(CU_OBJ)) objects (sm_90 + compute_90 PTX)"
else
	@echo "nvcc not found (or CUDA=0): CUDA backend not built"
endif

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
