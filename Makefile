# wtn: the compiler (wtnc), the runtime library, tests, demo and benchmarks.
# `make` builds build/wtnc and build/libwtnrt.a; `make test` runs the suite.

LLVM_CONFIG ?= $(shell command -v llvm-config-14 || command -v llvm-config)
CC       ?= cc
B        := build
CFLAGS   ?= -O2 -g
LDFLAGS  ?=
WARN     := -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare
CPPFLAGS := -std=gnu11 -D_GNU_SOURCE -Icompiler -Iruntime -I$(B)
LLVM_CFLAGS := $(shell $(LLVM_CONFIG) --cflags 2>/dev/null)
LLVM_LIBS   := $(shell $(LLVM_CONFIG) --ldflags 2>/dev/null) $(shell $(LLVM_CONFIG) --libs 2>/dev/null)
RT_LIBS  := -lopenblas -lz -lm -lpthread
# MPI (Open MPI's mpicc --showme): when mpicc is found, runtime/mpi.c is
# built with MPI for data-parallel training and $(B)/libwtnrt.libs holds the
# link flags wtnc adds; MPICC= builds without. The file changes only when
# the flags do, and mpi.o depends on it, so installing MPI later rebuilds it.
MPICC    ?= $(shell command -v mpicc 2>/dev/null)
MPI_CFLAGS := $(if $(MPICC),-DWTN_MPI $(shell $(MPICC) --showme:compile 2>/dev/null))
MPI_LIBS   := $(if $(MPICC),$(shell $(MPICC) --showme:link 2>/dev/null))
$(shell mkdir -p $(B) && { echo '$(MPI_LIBS)' | cmp -s - $(B)/libwtnrt.libs || \
        echo '$(MPI_LIBS)' >$(B)/libwtnrt.libs; })

COMPILER_OBJ := $(patsubst compiler/%.c,$(B)/compiler/%.o,$(wildcard compiler/*.c)) \
                $(B)/grammar/lexer.o $(B)/grammar/parser.o
RUNTIME_OBJ  := $(patsubst runtime/%.c,$(B)/runtime/%.o,$(filter-out runtime/main.c,$(wildcard runtime/*.c)))

.PHONY: all test demo bench reproduce crosscheck deps clean fuzz fuzzers sanitize
all: $(B)/wtnc $(B)/libwtnrt.a $(B)/wtn_main.o

$(B)/grammar/parser.c $(B)/grammar/parser.h: grammar/parser.y
	@mkdir -p $(dir $@)
	bison -Wall --defines=$(B)/grammar/parser.h -o $(B)/grammar/parser.c $<

$(B)/grammar/lexer.c: grammar/lexer.re $(B)/grammar/parser.h
	@mkdir -p $(dir $@)
	re2c -W --no-generation-date -o $@ $<

$(B)/grammar/%.o: $(B)/grammar/%.c compiler/wtnc.h runtime/wtn_model.h
	$(CC) $(CPPFLAGS) -I$(B)/grammar $(CFLAGS) -c -o $@ $<

# The compiler knows where the runtime it links against was built (WTN_HOME
# overrides it for an installed tree) and links binaries with the compiler,
# the sanitizer flags and the LDFLAGS the runtime was built with.
WTN_LINK_CC := $(strip $(CC) $(filter -fsanitize% -fno-sanitize%,$(CFLAGS)) $(LDFLAGS))
$(B)/compiler/%.o: compiler/%.c compiler/wtnc.h runtime/wtn_model.h runtime/wtn_version.h $(B)/grammar/parser.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -I$(B)/grammar $(LLVM_CFLAGS) $(CFLAGS) $(WARN) \
	  -DWTN_BUILD_DIR='"$(abspath $(B))"' \
	  -DWTN_LINK_CC='"$(WTN_LINK_CC)"' -c -o $@ $<

$(B)/runtime/%.o: runtime/%.c runtime/wtnrt.h runtime/wtn_abi.h runtime/wtn_model.h runtime/wtn_version.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<
# noise.c's vector helpers are always inlined: no vector crosses a call,
# so GCC's note on the AVX calling convention does not apply.
$(B)/runtime/noise.o: WARN += -Wno-psabi

# The sweep report reads metrics files with the runtime's JSON parser.
$(B)/wtnc: $(COMPILER_OBJ) $(B)/runtime/json.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LLVM_LIBS) -lm

$(B)/runtime/mpi.o: runtime/mpi.c runtime/wtnrt.h runtime/wtn_abi.h runtime/wtn_model.h $(B)/libwtnrt.libs
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(MPI_CFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

$(B)/libwtnrt.a: $(RUNTIME_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/wtn_main.o: runtime/main.c runtime/wtnrt.h runtime/wtn_abi.h runtime/wtn_model.h runtime/wtn_version.h
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

test: all
	tests/run.sh

# Sanitizer and fuzzing builds live in their own trees, built by this same
# Makefile with clang (libclang-rt-14-dev brings the sanitizer runtimes).
SAN_B      := build-san
SAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
sanitize:
	$(MAKE) B=$(SAN_B) CC=clang CFLAGS='$(SAN_CFLAGS)' all

# make fuzz: libFuzzer harnesses (fuzz/*.c) in build-fuzz/, see fuzz/README.md.
FUZZ_B      := build-fuzz
FUZZ_CFLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
FUZZERS     := frontend idx cifar checkpoint
fuzz:
	$(MAKE) B=$(FUZZ_B) CC=clang CFLAGS='$(FUZZ_CFLAGS)' fuzzers

fuzzers: $(FUZZERS:%=$(B)/fuzz_%)

FRONT_END_OBJ := $(filter-out $(B)/compiler/main.o $(B)/compiler/codegen.o $(B)/compiler/sweep.o $(B)/compiler/sweep_report.o,$(COMPILER_OBJ))
$(B)/fuzz_frontend: fuzz/frontend.c $(FRONT_END_OBJ)
	$(CC) $(CPPFLAGS) -I$(B)/grammar $(CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LLVM_LIBS) -lm

$(B)/fuzz_idx $(B)/fuzz_cifar: $(B)/fuzz_%: fuzz/%.c fuzz/memfile.h $(B)/libwtnrt.a
	$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/libwtnrt.a $(RT_LIBS)

# The checkpoint reader checks files against a real network: cnn.wtn's
# (conv, batchnorm statistics, dense, a feedback matrix).
$(B)/fuzz_cnn.o: tests/runtime/cnn.wtn $(B)/wtnc
	ASAN_OPTIONS=detect_leaks=0 $(B)/wtnc $< -O1 -c -o $@

$(B)/fuzz_checkpoint: fuzz/checkpoint.c fuzz/memfile.h $(B)/fuzz_cnn.o $(B)/libwtnrt.a
	$(CC) $(CPPFLAGS) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/fuzz_cnn.o $(B)/libwtnrt.a $(RT_LIBS)

# deps first, then a fresh make: the LLVM flags above are read when make
# starts, which on a new machine is before llvm-dev is installed.
demo: deps
	$(MAKE) all
	$(B)/wtnc examples/fashion_mlp.wtn -o $(B)/fashion_mlp
	$(B)/fashion_mlp train

bench:
	@tools/install-deps.sh bench
	$(MAKE) all $(B)/sgemm_bound
	bench/run.sh

# The MLP step's matrix products alone, timed (bench/run.sh feeds it them).
$(B)/sgemm_bound: bench/sgemm_bound.c
	$(CC) $(CFLAGS) $(WARN) -o $@ $< -lopenblas

reproduce: all
	tools/reproduce.sh

# Every rule against an independent PyTorch implementation (not in `make test`).
crosscheck:
	@tools/install-deps.sh bench
	$(MAKE) all
	tools/crosscheck.py

# Installs the Debian packages the project needs (as root, when missing).
deps:
	@tools/install-deps.sh

clean:
	rm -rf $(B) $(SAN_B) $(FUZZ_B) build-debug
