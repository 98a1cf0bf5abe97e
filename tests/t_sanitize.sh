#!/bin/sh
# t_sanitize.sh: wtnc and the runtime built with clang's AddressSanitizer
# and UndefinedBehaviorSanitizer (-fno-sanitize-recover: the first report
# fails), then the test groups that drive the C code of the compiler and
# the runtime hardest: every golden diagnostic (front end), the runtime's
# data, checkpoint and rule cases, the reliability cases, and a reduced
# reference run (a few random dense and conv nets through refcheck and
# the runtime's spec and buffers). The groups left out (examples, fashion,
# parallel, reproduce, rules) mostly time LLVM's optimiser, OpenBLAS or
# long training, which the sanitizers do not see, and would break the
# suite's time budget. Leaks are not checked: the compiler keeps its
# syntax tree until exit by design.
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
export WTN_REF_NETS=8 WTN_REF_CONV_NETS=6
failed=0
for t in diag runtime reliability reference; do
	if ! sh "tests/t_$t.sh" >"$log" 2>&1; then
		echo "FAIL t_sanitize: t_$t.sh under ASan+UBSan:"
		tail -30 "$log"
		failed=$((failed + 1))
	fi
done
[ "$failed" = 0 ] && echo "t_sanitize: t_diag, t_runtime, t_reliability, t_reference (14 nets) clean under ASan+UBSan"
[ "$failed" = 0 ]
