# wtn: the compiler (wtnc), the runtime library, tests, demo and benchmarks.
# `make` builds build/wtnc and build/libwtnrt.a; `make test` runs the suite.

LLVM_CONFIG ?= $(shell command -v llvm-config-14 || command -v llvm-config)
CC       ?= cc
B        := build
CFLAGS   ?= -O2 -g
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

.PHONY: all test demo bench reproduce deps clean
all: $(B)/wtnc $(B)/libwtnrt.a $(B)/wtn_main.o

$(B)/grammar/parser.c $(B)/grammar/parser.h: grammar/parser.y
	@mkdir -p $(dir $@)
	bison -Wall --defines=$(B)/grammar/parser.h -o $(B)/grammar/parser.c $<

$(B)/grammar/lexer.c: grammar/lexer.re $(B)/grammar/parser.h
	@mkdir -p $(dir $@)
	re2c -W --no-generation-date -o $@ $<

$(B)/grammar/%.o: $(B)/grammar/%.c compiler/wtnc.h
	$(CC) $(CPPFLAGS) -I$(B)/grammar $(CFLAGS) -c -o $@ $<

# The compiler knows where the runtime it links against was built; WTN_HOME
# overrides it for an installed tree.
$(B)/compiler/%.o: compiler/%.c compiler/wtnc.h $(B)/grammar/parser.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -I$(B)/grammar $(LLVM_CFLAGS) $(CFLAGS) $(WARN) \
	  -DWTN_BUILD_DIR='"$(abspath $(B))"' -DWTN_RUNTIME_INCLUDE='"$(abspath runtime)"' -c -o $@ $<

$(B)/runtime/%.o: runtime/%.c runtime/wtnrt.h runtime/wtn_abi.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

$(B)/wtnc: $(COMPILER_OBJ)
	$(CC) -o $@ $^ $(LLVM_LIBS)

$(B)/runtime/mpi.o: runtime/mpi.c runtime/wtnrt.h runtime/wtn_abi.h $(B)/libwtnrt.libs
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(MPI_CFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

$(B)/libwtnrt.a: $(RUNTIME_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/wtn_main.o: runtime/main.c runtime/wtnrt.h runtime/wtn_abi.h
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

test: all
	tests/run.sh

# deps first, then a fresh make: the LLVM flags above are read when make
# starts, which on a new machine is before llvm-dev is installed.
demo: deps
	$(MAKE) all
	$(B)/wtnc examples/fashion_mlp.wtn -o $(B)/fashion_mlp
	$(B)/fashion_mlp train

bench:
	@tools/install-deps.sh bench
	$(MAKE) all
	bench/run.sh

reproduce: all
	tools/reproduce.sh

# Installs the Debian packages the project needs (as root, when missing).
deps:
	@tools/install-deps.sh

clean:
	rm -rf $(B)
