#!/bin/sh
# The examples compile and train a few steps; resnet18 has torchvision's size.
WTNC=${WTNC:-build/wtnc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL t_examples: $*"; fail=1; }

# run NAME ARGS...: compile examples/NAME.wtn, then train with ARGS
run() {
	name=$1; shift
	if ! "$WTNC" "examples/$name.wtn" -o "$tmp/$name" 2>"$tmp/err"; then
		bad "$name does not compile: $(head -3 "$tmp/err")"
		return 1
	fi
	"$tmp/$name" train --metrics "$tmp/$name.jsonl" "$@" >"$tmp/out" 2>"$tmp/err" ||
		bad "$name train $*: $(head -3 "$tmp/err")"
	grep -q '"test_acc"' "$tmp/$name.jsonl" 2>/dev/null || bad "$name wrote no metrics"
}

run lenet --steps 20 --epochs 1
run resnet20 --data synthetic --steps 3 --batch 16
run resnet18 --steps 2 --batch 2
# torchvision's resnet18: 11,689,512 parameters, 1.81 G multiply-adds a sample.
"$tmp/resnet18" info >"$tmp/info" || bad "resnet18 info failed"
grep -q '^parameters: 11689512 ' "$tmp/info" || bad "resnet18 parameters: $(grep '^parameters' "$tmp/info")"
grep -q 'multiply-adds per sample: 1814073344 ' "$tmp/info" ||
	bad "resnet18 multiply-adds: $(grep 'multiply-adds per' "$tmp/info")"
grep -q '^layer2.0.downsample.0 ' "$tmp/info" || bad "resnet18 lacks torchvision's name layer2.0.downsample.0"
run fashion_mlp --steps 10
run fashion_mlp_fa --steps 10
exit $fail
