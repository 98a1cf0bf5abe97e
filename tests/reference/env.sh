# Sourced by t_reference.sh and t_rules.sh: the compiler and runtime under
# test (WTNC, WTNLIB pick others) and the refcheck harness's objects.
# harness_env TEST FILE...: checks FILEs exist; harness_objects TEST DIR:
# compiles refcheck.o and refmath.o into DIR.
WTNC=${WTNC:-build/wtnc}
LIB=${WTNLIB:-build/libwtnrt.a}
CC=${CC:-cc}
CFLAGS="-std=gnu11 -D_GNU_SOURCE -O1 -Iruntime -Icompiler"
# plus MPI's libraries when the runtime was built with MPI (the Makefile's list)
LIBS="-lopenblas -lz -lm -lpthread $(cat "$(dirname "$LIB")/libwtnrt.libs" 2>/dev/null)"
R=tests/reference

harness_env() {
	test=$1
	shift
	for f in "$@"; do
		[ -e "$f" ] || { echo "$test: $f is missing (run make all)"; exit 1; }
	done
}

harness_objects() {
	$CC $CFLAGS -c -o "$2/refcheck.o" $R/refcheck.c &&
	$CC $CFLAGS -c -o "$2/refmath.o" $R/refmath.c ||
		{ echo "$1: building the harness failed"; exit 1; }
}
