#!/bin/sh
# t_fuzz.sh: builds the libFuzzer harnesses (make fuzz, fuzz/) and runs
# each for a few seconds from its seed corpus and dictionary; any crash,
# sanitizer report, timeout or memory blow-up fails. Longer sessions: see
# fuzz/README.md. FUZZ_SECONDS sets the time per harness.
cd "$(dirname "$0")/.." || exit 1
secs=${FUZZ_SECONDS:-4}
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
if ! make -s fuzz >"$T/build.log" 2>&1; then
	echo "FAIL t_fuzz: make fuzz failed (clang and libclang-rt-14-dev needed):"
	tail -20 "$T/build.log"
	exit 1
fi
failed=0
runs=""
# fuzz NAME DICT SEED_DIR...: new inputs go to a scratch corpus, not the repo
fuzz() {
	name=$1 dict=$2
	shift 2
	mkdir -p "$T/$name"
	if ! build-fuzz/fuzz_$name -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	     -close_fd_mask=2 -print_final_stats=1 ${dict:+-dict=$dict} \
	     -artifact_prefix="$T/$name-" "$T/$name" "$@" >"$T/$name.log" 2>&1; then
		echo "FAIL t_fuzz: fuzz_$name found a problem:"
		grep -v '^#\|^INFO\|^\s*NEW_FUNC' "$T/$name.log" | tail -25
		failed=$((failed + 1))
	fi
	runs="$runs $name $(sed -n 's/^stat::number_of_executed_units: *//p' "$T/$name.log")"
}
fuzz frontend fuzz/wtn.dict fuzz/corpus/frontend examples tests/diag tests/runtime
fuzz idx fuzz/idx.dict fuzz/corpus/idx
fuzz cifar "" fuzz/corpus/cifar
fuzz checkpoint fuzz/safetensors.dict fuzz/corpus/checkpoint
[ "$failed" = 0 ] && echo "t_fuzz: inputs run:$runs; no crash"
[ "$failed" = 0 ]
