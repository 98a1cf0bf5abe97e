#!/bin/sh
# make bench: training samples/s of examples/fashion_mlp.wtn with every layer
# on bp, at 1 and 2 threads, beside PyTorch training the same network on the
# same data (bench/torch_mlp.py) in the same run. Ratios > 1: wtn is faster.
set -e
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
epochs=${BENCH_EPOCHS:-1}
py=/usr/bin/python3   # Debian's python3-torch lives with the system python

build/wtnc examples/fashion_mlp.wtn --feedback h1=bp --feedback h2=bp --feedback out=bp -o "$tmp/mlp"

wtn_rate() {   # threads -> samples/s of the last epoch
	"$tmp/mlp" train --epochs "$epochs" --threads "$1" --metrics "$tmp/m$1.jsonl" >/dev/null
	tail -n 1 "$tmp/m$1.jsonl" | sed 's/.*"samples_per_sec": *\([0-9.]*\).*/\1/'
}
torch_rate() {   # torch.set_num_threads does not reach the BLAS: pin it too
	OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$1" OPENBLAS_NUM_THREADS="$1" "$py" bench/torch_mlp.py "$1" "$epochs" | sed 's/.*samples\/s=//'
}

echo "fashion_mlp 784-1000-1000-10, batch 128, sgd momentum, all bp; training samples/s"
printf '%-8s %12s %12s %8s\n' threads wtn pytorch ratio
for t in 1 2; do
	w=$(wtn_rate $t)
	p=$(torch_rate $t)
	printf '%-8s %12.0f %12.0f %7.2fx\n' "$t" "$w" "$p" "$(awk -v w="$w" -v p="$p" 'BEGIN{print w/p}')"
done
