#!/bin/bash
# Runs every tests/t_*.sh, WTN_TEST_JOBS groups at a time (default 2: most
# groups run one process at a time, so two keep both cores of a small
# machine busy); fails if any fails. A group's output is shown when it
# ends, with its status and seconds. The longest groups start first, so the
# short ones fill in beside them. `tests/run.sh t_diag t_rules` runs those.
cd "$(dirname "$0")/.." || exit 1
jobs=${WTN_TEST_JOBS:-2}
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT

if [ $# -gt 0 ]; then
	groups=("$@")
else
	groups=(t_sanitize t_reference t_fuzz t_examples)   # longest first
	for t in tests/t_*.sh; do
		t=${t#tests/}
		t=${t%.sh}
		[[ " ${groups[*]} " == *" $t "* ]] || groups+=("$t")
	done
fi

# run NAME: the group, its output in $T/NAME.log, "status seconds" in $T/NAME.rc
run() {
	local start=$SECONDS status=ok
	sh "tests/$1.sh" >"$T/$1.log" 2>&1 || status=FAIL
	echo "$status $((SECONDS - start))" >"$T/$1.rc"
}

# show NAME: prints a finished group's output and its line
show() {
	local status secs
	read -r status secs <"$T/$1.rc"
	cat "$T/$1.log"
	printf '%-4s tests/%s.sh (%ss)\n' "$status" "$1" "$secs"
	[ "$status" = ok ] || failed=$((failed + 1))
}

failed=0
running=()
for g in "${groups[@]}"; do
	if [ ! -f "tests/$g.sh" ]; then
		echo "FAIL tests/$g.sh: no such test group"
		failed=$((failed + 1))
		continue
	fi
	while [ "${#running[@]}" -ge "$jobs" ]; do
		wait -n
		left=()
		for r in "${running[@]}"; do
			if [ -f "$T/$r.rc" ]; then show "$r"; else left+=("$r"); fi
		done
		running=("${left[@]}")
	done
	run "$g" &
	running+=("$g")
done
wait
for r in "${running[@]}"; do
	show "$r"
done
[ "$failed" = 0 ] && echo "all test groups passed" || echo "$failed test group(s) failed"
[ "$failed" = 0 ]
