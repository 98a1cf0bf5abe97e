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
# runs 12 dense and 8 conv nets instead of 60 and 40. Leaks are not
# checked: the compiler keeps its syntax tree until exit by design.
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
export WTN_REF_NETS=12 WTN_REF_CONV_NETS=8
failed=0
times=""
for t in diag fashion parallel reference reliability resume rules runtime; do
	start=$(date +%s)
	if ! sh "tests/t_$t.sh" >"$log" 2>&1; then
		echo "FAIL t_sanitize: t_$t.sh under ASan+UBSan:"
		tail -30 "$log"
		failed=$((failed + 1))
	fi
	times="$times $t $(($(date +%s) - start))s"
done
[ "$failed" = 0 ] && echo "t_sanitize: clean under ASan+UBSan:$times"
[ "$failed" = 0 ]
