#!/bin/sh
# t_sanitize.sh: wtnc and the runtime built with clang's AddressSanitizer
# and UndefinedBehaviorSanitizer (-fno-sanitize-recover: the first report
# fails; make sanitize, in build-san/), then the test suite again with that
# compiler, runtime and C compiler: every group that takes WTNC (diag,
# examples, fashion, parallel, reference, reliability, rules, runtime).
# Left out: t_reproduce (tools/reproduce.sh uses build/ by design), t_fuzz
# (its harnesses are sanitized already) and this file. t_reference runs 20
# dense and 12 conv nets instead of 60 and 40, to keep make test within its
# time budget; the kernels it checks are LLVM's output, which the
# sanitizers do not see anyway. Leaks are not checked: the compiler keeps
# its syntax tree until exit by design.
cd "$(dirname "$0")/.." || exit 1
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
if ! make -s sanitize >"$log" 2>&1; then
	echo "FAIL t_sanitize: the sanitizer build (make sanitize) failed:"
	tail -20 "$log"
	exit 1
fi
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
export WTNC=build-san/wtnc WTNLIB=build-san/libwtnrt.a WTNMAIN=build-san/wtn_main.o
export CC="clang -fsanitize=address,undefined -fno-sanitize-recover=all" WTN_SANITIZED=1
export WTN_REF_NETS=20 WTN_REF_CONV_NETS=12
failed=0
for t in diag examples fashion parallel reference reliability rules runtime; do
	if ! sh "tests/t_$t.sh" >"$log" 2>&1; then
		echo "FAIL t_sanitize: t_$t.sh under ASan+UBSan:"
		tail -30 "$log"
		failed=$((failed + 1))
	fi
done
[ "$failed" = 0 ] && echo "t_sanitize: 8 test groups clean under ASan+UBSan"
[ "$failed" = 0 ]
