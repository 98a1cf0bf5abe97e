#!/bin/sh
# t_parallel: the kernels' parallel loops (wtn_parallel_for: convs, pools,
# batchnorm, adds, activations) give the same training at 1, 2, 3 and 8
# threads (8: more threads than cores, and 16 parts, two each), up to the
# order in which the parts' sums are added. Conv nets
# with batchnorm, residual adds, strides, padding, both pools and every
# rule on the conv layers.
cd "$(dirname "$0")/.." || exit 1
WTNC=${WTNC:-build/wtnc}
# the loops split only when OpenBLAS's idle threads sleep promptly (pool.c)
export OPENBLAS_THREAD_TIMEOUT=4
T=$(mktemp -d "${TMPDIR:-/tmp}/t_parallel.XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "t_parallel: $*"; fails=$((fails + 1)); }

loss_of() {   # binary threads -> last train_loss
	"$1" train --steps 12 --threads "$2" --metrics "$T/m.jsonl" >/dev/null 2>"$T/err" ||
		{ echo fail; return; }
	tail -n 1 "$T/m.jsonl" | sed 's/.*"train_loss": *\([-0-9.e+]*\).*/\1/'
}

check() {   # name file [wtnc args]
	name=$1 src=$2
	shift 2
	if ! $WTNC "$src" -o "$T/$name" "$@" >"$T/$name.log" 2>&1; then
		fail "$name: wtnc failed: $(head -3 "$T/$name.log")"
		return
	fi
	one=$(loss_of "$T/$name" 1)
	[ -n "$VERBOSE" ] && echo "$name $one"
	for t in 2 3 8; do
		many=$(loss_of "$T/$name" $t)
		if [ "$one" = fail ] || [ "$many" = fail ]; then
			fail "$name: training failed at 1 or $t threads: $(head -3 "$T/err")"
			return
		fi
		if ! awk -v a="$one" -v b="$many" 'BEGIN { d = a - b; if (d < 0) d = -d;
		        m = a < 0 ? -a : a; exit !(a == a && d <= 1e-4 * (m > 1 ? m : 1)) }'; then
			fail "$name: loss $one at 1 thread, $many at $t threads"
		fi
	done
}

check fd_conv tests/reference/fd_conv.wtn
check resblock tests/reference/resblock.wtn
check lenet examples/lenet.wtn
check conv_dfa tests/rules/conv_dfa.wtn
check conv_kp tests/rules/conv_kp.wtn
check conv_wm tests/rules/conv_wm.wtn
for rule in fa usf frsf brsf; do
	check "conv_$rule" tests/rules/conv_kp.wtn --feedback "c*=$rule"
done
[ "$fails" -eq 0 ] || exit 1
echo "t_parallel: conv nets train alike at 1, 2, 3 and 8 threads"
