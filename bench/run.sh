#!/bin/sh
# make bench: training samples/s of wtn's binaries beside PyTorch training the
# same network on the same data (bench/torch_peer.py), in the same run, at 1
# and 2 threads. Ratios above 1 mean wtn is faster.
#   mlp      examples/fashion_mlp.wtn with every layer on bp
#   convnet  bench/convnet.wtn (bp), and its conv layers under every rule
# and, last, how long wtnc takes to compile the MLP and the ResNets.
# BENCH_MLP_STEPS (default 469, one epoch) and BENCH_CONV_STEPS (default 100)
# set the number of training steps of batch 128 timed in each run.
set -e
cd "$(dirname "$0")/.."
mkdir -p build && tmp=$(mktemp -d build/bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mlp_steps=${BENCH_MLP_STEPS:-469}
conv_steps=${BENCH_CONV_STEPS:-100}
py=/usr/bin/python3   # Debian's python3-torch lives with the system python

build/wtnc examples/fashion_mlp.wtn --feedback 'default=bp' --feedback '*=bp' -o "$tmp/mlp"
build/wtnc bench/convnet.wtn -o "$tmp/convnet"

wtn_rate() {   # binary threads steps -> training samples/s of the run
	"$tmp/$1" train --epochs 1 --steps "$3" --threads "$2" --metrics "$tmp/m.jsonl" >/dev/null
	tail -n 1 "$tmp/m.jsonl" | sed 's/.*"samples_per_sec": *\([0-9.]*\).*/\1/'
}
torch_rate() {   # torch.set_num_threads does not reach the BLAS: pin it too
	OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$2" OPENBLAS_NUM_THREADS="$2" \
		"$py" bench/torch_peer.py "$1" "$2" "$3" | sed 's/.*samples\/s=//'
}
ratio() { awk -v w="$1" -v p="$2" 'BEGIN { printf "%.2fx", w / p }'; }

printf '%-9s %-8s %12s %12s %8s\n' network threads wtn pytorch ratio
for net in mlp convnet; do
	e=$mlp_steps; [ "$net" = convnet ] && e=$conv_steps
	for t in 1 2; do
		w=$(wtn_rate "$net" "$t" "$e")
		p=$(torch_rate "$net" "$t" "$e")
		printf '%-9s %-8s %12.0f %12.0f %8s\n' "$net" "$t" "$w" "$p" "$(ratio "$w" "$p")"
	done
done

# What each rule costs over bp on the convnet's conv layers, 2 threads.
echo
echo "convnet, 2 threads: each rule on conv1 and conv2 against bp"
base=$(wtn_rate convnet 2 "$conv_steps")
for rule in fa usf frsf brsf kp wm dfa; do
	build/wtnc bench/convnet.wtn --feedback "conv*=$rule" -o "$tmp/rule"
	r=$(wtn_rate rule 2 "$conv_steps")
	printf '%-6s %10.0f samples/s  %s of bp\n' "$rule" "$r" "$(ratio "$r" "$base")"
done

# Compile time: wtnc from .wtn to a linked binary (wall seconds; the best of
# three, since other work on the machine only adds).
echo
echo "compile time (wtnc, best of 3)"
for f in examples/fashion_mlp.wtn examples/resnet18.wtn examples/resnet20.wtn; do
	best=""
	for i in 1 2 3; do
		s=$(date +%s.%N)
		build/wtnc "$f" -o "$tmp/compiled"
		e=$(date +%s.%N)
		best=$(echo "$s $e $best" | awk '{ t = $2 - $1; if ($3 != "" && $3 < t) t = $3; printf "%.2f", t }')
	done
	printf '%-28s %6s s\n' "$f" "$best"
done
