#!/bin/sh
# A short real run: examples/fashion_mlp.wtn, every layer on bp, one epoch
# of the real Fashion-MNIST; the test accuracy must pass 82%.
WTNC=${WTNC:-build/wtnc}
data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
	echo "t_fashion: Fashion-MNIST is not installed in $data (make deps)"
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$WTNC" examples/fashion_mlp.wtn --feedback default=bp --feedback h2=bp --feedback out=bp \
	-o "$tmp/mlp" || exit 1
"$tmp/mlp" train --epochs 1 --threads 2 --metrics "$tmp/m.jsonl" >"$tmp/out" 2>&1 || { cat "$tmp/out"; exit 1; }
acc=$(grep '^{"epoch"' "$tmp/m.jsonl" | sed 's/.*"test_acc": *\([0-9.]*\).*/\1/')
if ! awk -v a="$acc" 'BEGIN { exit !(a > 82) }'; then
	echo "t_fashion: test accuracy after one epoch is $acc, expected above 82%"
	cat "$tmp/out"
	exit 1
fi
