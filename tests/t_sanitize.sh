#!/bin/sh
# t_sanitize.sh: wtnc and the runtime built with clang's AddressSanitizer
# and UndefinedBehaviorSanitizer (-fno-sanitize-recover: the first report
# fails; make sanitize, in build-san/), then the test suite again with that
# compiler, runtime and C compiler: the groups that take WTNC (diag,
# fashion, parallel, reference, reliability, resume, rules, runtime). Left out, to
# keep make test within its time budget: t_examples (about 75 s here, most
# of it LLVM compiling the ResNets, which the sanitizers do not see; conv
# nets, batchnorm and adds still pass through codegen.c in t_reference and
# t_parallel), t_reproduce (tools/reproduce.sh uses build/ by design),
# t_fuzz (its harnesses are sanitized already) and this file. t_reference
# runs 6 dense and 4 conv nets instead of 60 and 40, and finite differences
# on 2 random dense and 1 random conv net instead of 6 and 4 (the fixed
# nets all run). Leaks are not
# checked: the compiler keeps its syntax tree until exit by design.
cd "$(dirname "$0")/.." || exit 1
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
if ! make -s sanitize >"$T/build.log" 2>&1; then
	echo "FAIL t_sanitize: the sanitizer build (make sanitize) failed:"
	tail -20 "$T/build.log"
	exit 1
fi
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
export WTNC=build-san/wtnc WTNLIB=build-san/libwtnrt.a WTNMAIN=build-san/wtn_main.o
export CC="clang -fsanitize=address,undefined -fno-sanitize-recover=all" WTN_SANITIZED=1
export WTN_REF_NETS=6 WTN_REF_CONV_NETS=4 WTN_REF_FD_SEEDS="101 102" WTN_REF_FD_CONV_SEEDS=201
# group NAME: runs tests/t_NAME.sh; its output in $T/NAME.log, its status
# and seconds in $T/NAME.rc
group() {
	start=$(date +%s)
	sh "tests/t_$1.sh" >"$T/$1.log" 2>&1
	echo "$? $(($(date +%s) - start))" >"$T/$1.rc"
}
# Most of it is one process at a time (wtnc, a harness): t_reference, the
# longest, runs beside the others, so both cores work.
group reference &
for t in diag fashion parallel reliability resume rules runtime; do
	group "$t"
done
wait
failed=0
times=""
for t in diag fashion parallel reference reliability resume rules runtime; do
	read -r rc secs <"$T/$t.rc" || rc=1
	if [ "$rc" != 0 ]; then
		echo "FAIL t_sanitize: t_$t.sh under ASan+UBSan:"
		tail -30 "$T/$t.log"
		failed=$((failed + 1))
	fi
	times="$times $t ${secs}s"
done
[ "$failed" = 0 ] && echo "t_sanitize: clean under ASan+UBSan:$times"
[ "$failed" = 0 ]
