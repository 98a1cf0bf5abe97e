#!/bin/sh
# t_runtime.sh: the runtime library seen through a compiled network: data
# validation, checkpoint validation, a non-finite loss, save/eval round trip,
# every learning rule, delta angles, weight-mirror scheduling and the mirror
# command; conv nets: CIFAR-10 files, batchnorm statistics in checkpoints,
# input shapes against the data.
cd "$(dirname "$0")/.." || exit 1
WTNC=${WTNC:-build/wtnc}   # WTNC: another compiler, for runtime development
T=$(mktemp -d /tmp/wtn_rt.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL t_runtime: $*"; fail=1; }

if ! $WTNC tests/runtime/tiny.wtn -o "$T/tiny" >"$T/cc.out" 2>&1; then
	echo "FAIL t_runtime: $WTNC cannot compile tests/runtime/tiny.wtn:"
	head -5 "$T/cc.out"
	exit 1
fi
NET=tiny   # the binary net and expect run
net() { "$T/$NET" --threads 1 "$@"; }

# expect STATUS TEXT1 TEXT2 -- ARGS...: runs the network with ARGS; checks
# the exit status and that stderr contains both texts (fixed strings).
expect() {
	want=$1 t1=$2 t2=$3
	shift 4
	net "$@" >"$T/out" 2>"$T/err"
	got=$?
	[ "$got" = "$want" ] || bad "$*: exit $got, expected $want ($(head -c 300 "$T/err"))"
	for t in "$t1" "$t2"; do
		[ -z "$t" ] || grep -qF -- "$t" "$T/err" || bad "$*: stderr lacks '$t': $(head -c 300 "$T/err")"
	done
	[ "$(wc -l <"$T/err")" -le 1 ] || bad "$*: more than one line on stderr"
}

# ---- IDX files written byte by byte ----
byte() { printf "\\$(printf %03o "$1")"; }
be32() { byte $(($1 >> 24 & 255)); byte $(($1 >> 16 & 255)); byte $(($1 >> 8 & 255)); byte $(($1 & 255)); }
# images FILE COUNT ROWS COLS [PIXEL_BYTES] [MAGIC]
images() {
	{ be32 "${6:-2051}"; be32 "$2"; be32 "$3"; be32 "$4"
	  head -c "${5:-$(($2 * $3 * $4))}" /dev/zero | tr '\0' '\200'; } >"$1"
}
# labels FILE COUNT [MAX_LABEL]: labels cycle through 0..MAX_LABEL
labels() {
	{ be32 2049; be32 "$2"; i=0
	  while [ $i -lt "$2" ]; do byte $((i % (${3:-2} + 1))); i=$((i + 1)); done; } >"$1"
}
# dataset DIR: a valid 4x4, three-class data set (train labels gzipped)
dataset() {
	mkdir -p "$1"
	images "$1/train-images-idx3-ubyte" 64 4 4
	labels "$1/train-labels-idx1-ubyte" 64
	gzip -n "$1/train-labels-idx1-ubyte"
	images "$1/t10k-images-idx3-ubyte" 32 4 4
	labels "$1/t10k-labels-idx1-ubyte" 32
}

dataset "$T/good"
expect 0 "" "" -- --data "$T/good" --epochs 1
grep -q "epoch 1/1 .*test loss" "$T/out" || bad "training on an IDX directory printed no epoch line"

expect 1 "$T/nope" "not found" -- --data "$T/nope"

mkdir -p "$T/partial" && cp "$T/good/t10k-"* "$T/good/train-images-idx3-ubyte" "$T/partial/"
expect 1 "$T/partial/train-labels-idx1-ubyte" "missing data file" -- --data "$T/partial"

cp -r "$T/good" "$T/trunc" && images "$T/trunc/train-images-idx3-ubyte" 64 4 4 10
expect 1 "$T/trunc/train-images-idx3-ubyte" "truncated: expected 1024 bytes of pixels, found 10" -- --data "$T/trunc"

cp -r "$T/good" "$T/magic" && images "$T/magic/t10k-images-idx3-ubyte" 32 4 4 512 2052
expect 1 "$T/magic/t10k-images-idx3-ubyte" "bad magic" -- --data "$T/magic"

cp -r "$T/good" "$T/size" && images "$T/size/train-images-idx3-ubyte" 64 5 5
expect 1 "$T/size/train-images-idx3-ubyte" "input has 16 units" -- --data "$T/size"

cp -r "$T/good" "$T/count" && labels "$T/count/t10k-labels-idx1-ubyte" 30
expect 1 "$T/count/t10k-labels-idx1-ubyte" "30 labels, but" -- --data "$T/count"

cp -r "$T/good" "$T/class" && labels "$T/class/t10k-labels-idx1-ubyte" 32 7
expect 1 "$T/class/t10k-labels-idx1-ubyte" "not below the network's 3 classes" -- --data "$T/class"

# ---- usage errors ----
expect 2 "unknown option --bogus" "--help" -- --bogus
expect 2 "--epochs x" "" -- --epochs x
expect 2 "eval needs --init" "" -- eval

# ---- save, metrics, eval round trip ----
CK="$T/tiny.safetensors"
expect 0 "" "" -- --save "$CK" --metrics "$T/m.jsonl"
NUM='-*[0-9][0-9.e+-]*'
[ "$(grep -c '^{"epoch":[12],"lr":.*"layers":\[{"name":"h","rule":"bp","angle":null,"norm_ratio":null,"delta":'"$NUM"'},{"name":"out","rule":"fa","angle":'"$NUM"',"norm_ratio":'"$NUM"',"delta":0}\]}$' "$T/m.jsonl")" = 2 ] ||
	bad "--metrics did not write two JSON lines: $(head -c 300 "$T/m.jsonl")"
trained=$(grep '^epoch 2/2' "$T/out" | grep -o 'test loss [0-9.]* acc [0-9.]*%')
[ -n "$trained" ] || bad "no epoch 2 line: $(cat "$T/out")"
net eval --init "$CK" >"$T/eval" 2>&1 || bad "eval --init of a saved checkpoint failed: $(cat "$T/eval")"
grep -qF "$trained" "$T/eval" || bad "eval gives '$(cat "$T/eval")', training reported '$trained'"

# safetensors layout: 8-byte little-endian header length, JSON header, data
# (4 * (8*16 + 8 + 3*8 + 3 + 3*8) = 748 bytes of F32).
hlen=$(od -An -tu8 -N8 "$CK" | tr -d ' ')
size=$(wc -c <"$CK")
[ "$((8 + hlen + 748))" = "$size" ] || bad "checkpoint: header length $hlen does not fit file size $size"
[ "$(dd if="$CK" bs=1 skip=8 count=1 2>/dev/null)" = "{" ] || bad "checkpoint: header is not a JSON object"
head -c $((8 + hlen)) "$CK" | grep -qF '"h.weight":{"dtype":"F32","shape":[8,16],"data_offsets":[0,512]}' ||
	bad "checkpoint: no h.weight entry in the header"
ls "$T" | grep -q 'tmp' && bad "checkpoint: a temporary file was left behind"

# ---- corrupt checkpoints ----
tail -c 748 "$CK" >"$T/data"
le64() { n=$1; i=0; while [ $i -lt 8 ]; do byte $((n & 255)); n=$((n >> 8)); i=$((i + 1)); done; }
# mkst FILE HEADER: a safetensors file with this header and the saved data
mkst() { { le64 ${#2}; printf '%s' "$2"; cat "$T/data"; } >"$1"; }
F32='"dtype":"F32"'
HW='"h.weight":{'$F32',"shape":[8,16],"data_offsets":[0,512]}'
HB='"h.bias":{'$F32',"shape":[8],"data_offsets":[512,544]}'
OW='"out.weight":{'$F32',"shape":[3,8],"data_offsets":[544,640]}'
OB='"out.bias":{'$F32',"shape":[3],"data_offsets":[640,652]}'
OF='"out.feedback":{'$F32',"shape":[3,8],"data_offsets":[652,748]}'

mkst "$T/ok.st" "{$HW,$HB,$OW,$OB,$OF}"
expect 0 "" "" -- eval --init "$T/ok.st"
grep -qF "$trained" "$T/out" || bad "a hand-built copy of the checkpoint evaluates differently"

printf 'abc' >"$T/short.st"
expect 1 "$T/short.st" "file too short" -- eval --init "$T/short.st"
{ le64 100000; printf '{}'; } >"$T/hlen.st"
expect 1 "$T/hlen.st" "header length 100000 is larger than the file" -- eval --init "$T/hlen.st"
mkst "$T/json.st" "{$HW,$HB,"
expect 1 "$T/json.st" "header is not valid JSON" -- eval --init "$T/json.st"
mkst "$T/shape.st" "{$(echo "$HW" | sed 's/\[8,16\]/[10,16]/'),$HB,$OW,$OB,$OF}"
expect 1 "$T/shape.st" "h.weight has shape [10, 16], the network expects [8, 16]" -- eval --init "$T/shape.st"
mkst "$T/unknown.st" "{$HW,$HB,$OW,$OB,$OF,\"h2.weight\":{$F32,\"shape\":[1],\"data_offsets\":[0,4]}}"
expect 1 "$T/unknown.st" "unknown tensor h2.weight" -- eval --init "$T/unknown.st"
mkst "$T/missing.st" "{$HW,$HB,$OW,$OB}"
expect 1 "$T/missing.st" "missing tensor out.feedback" -- eval --init "$T/missing.st"
mkst "$T/dtype.st" "{$(echo "$HW" | sed 's/F32/F16/'),$HB,$OW,$OB,$OF}"
expect 1 "$T/dtype.st" "h.weight has dtype F16, expected F32" -- eval --init "$T/dtype.st"
mkst "$T/range.st" "{$HW,$HB,$OW,$OB,$(echo "$OF" | sed 's/652,748/700,796/')}"
expect 1 "$T/range.st" "out.feedback: data offsets [700, 796] out of range" -- eval --init "$T/range.st"
mkst "$T/overlap.st" "{$HW,$HB,$OW,$OB,$(echo "$OF" | sed 's/652,748/600,696/')}"
expect 1 "$T/overlap.st" "overlap" -- eval --init "$T/overlap.st"

# ---- a non-finite loss stops training and keeps the last checkpoint ----
cp "$CK" "$T/before.st"
expect 1 "non-finite loss at epoch 1 step " "$CK" -- --init "$CK" --lr 1e30 --save "$CK"
cmp -s "$CK" "$T/before.st" || bad "the checkpoint changed after a non-finite loss"
expect 0 "" "" -- eval --init "$CK"
grep -qF "$trained" "$T/out" || bad "the kept checkpoint no longer evaluates as trained"

# ---- learning rules ----
# rnet NAME LAYER=RULE...: tiny.wtn compiled with these feedback overrides
rnet() {
	name=$1
	shift
	i=$#   # rotate each LAYER=RULE to the end as --feedback LAYER=RULE
	while [ $i -gt 0 ]; do set -- "$@" --feedback "$1"; shift; i=$((i - 1)); done
	$WTNC tests/runtime/tiny.wtn "$@" -o "$T/$name" >"$T/cc.out" 2>&1 ||
		{ bad "wtnc $*: $(head -3 "$T/cc.out")"; return 1; }
}
# delta LAYER FILE: the layer's delta angles in a metrics file, one a line
delta() { grep '^{"epoch"' "$2" | grep -o "\"name\":\"$1\",[^}]*" | sed 's/.*"delta"://'; }
# mirror_angle LAYER: the layer's angles in mirror output ($T/out), one a line
mirror_angle() { grep -o " $1 angle [0-9.]*" "$T/out" | sed 's/.* //'; }

# Each rule trains without error, reports its alignment and delta angles,
# and its checkpoint evaluates as training reported.
for rule in usf frsf brsf kp dfa; do
	rnet "$rule" "h=$rule" "out=$rule" || continue
	NET=$rule
	expect 0 "" "" -- --epochs 1 --save "$T/$rule.st" --metrics "$T/$rule.jsonl"
	got=$(grep '^epoch 1/1' "$T/out" | grep -o 'test loss [0-9.]* acc [0-9.]*%')
	[ -n "$got" ] || { bad "$rule: no epoch line: $(head -c 300 "$T/out")"; continue; }
	grep -q 'δ h [0-9.]*° out 0\.0°' "$T/out" || bad "$rule: epoch line lacks delta angles: $(cat "$T/out")"
	net eval --init "$T/$rule.st" >"$T/eval" 2>&1 || bad "$rule: eval --init failed: $(cat "$T/eval")"
	grep -qF "$got" "$T/eval" || bad "$rule: eval gives '$(cat "$T/eval")', training reported '$got'"
	[ "$(delta out "$T/$rule.jsonl")" = 0 ] || bad "$rule: the output layer's delta is not 0: $(cat "$T/$rule.jsonl")"
	# out's rule is not backprop, so h's error is not backprop's.
	delta h "$T/$rule.jsonl" | awk '{ exit !($1 ~ /^[0-9.e+-]+$/ && $1 > 1 && $1 < 180) }' ||
		bad "$rule: h's delta is not an angle well above 0: $(cat "$T/$rule.jsonl")"
	if [ "$rule" = dfa ]; then
		grep -q '"name":"h","rule":"dfa","angle":null' "$T/$rule.jsonl" || bad "dfa: an angle for h, which has no B"
		net info | grep -q '^h .*dfa  D \[3, 8\]' || bad "dfa: info does not show D's shape: $(net info)"
	else
		grep -q '"name":"h","rule":"'$rule'","angle":[0-9]' "$T/$rule.jsonl" || bad "$rule: no angle for h"
		net info | grep -q '^h .*'$rule'.*  B \[8, 16\]' || bad "$rule: info does not show B's shape: $(net info)"
	fi
done
# A frsf checkpoint restores M = |B|: training on from it keeps B nonzero.
NET=frsf
expect 0 "" "" -- --epochs 1 --init "$T/frsf.st" --metrics "$T/frsf2.jsonl"
grep -q '"name":"out","rule":"frsf","angle":[0-9]' "$T/frsf2.jsonl" || bad "frsf: B lost after --init: $(cat "$T/frsf2.jsonl")"

# With backprop everywhere the rule's errors are backprop's: delta 0.
rnet allbp "out=bp" && NET=allbp &&
	expect 0 "" "" -- --epochs 1 --metrics "$T/bp.jsonl" &&
	for l in h out; do
		d=$(delta $l "$T/bp.jsonl")
		echo "$d" | awk '{ exit !($1 >= 0 && $1 < 1e-3) }' || bad "all-bp: delta of $l is '$d', expected 0"
	done

# ---- weight mirror ----
rnet wm "h=wm(rate=0.01, decay=0.01, warmup=50)" "out=wm(rate=0.01, decay=0.01, batch=200, every=2)" && {
	NET=wm wm_built=1
	net info | grep -q '^h .*wm(noise=1, rate=0.01, decay=0.01, batch=128, every=1, warmup=50, growth=0)  *B \[8, 16\]' ||
		bad "info does not show wm's arguments: $(net info)"
	# Noise batch 200 is above the compiled batch 32: buffers must hold it.
	expect 0 "" "" -- mirror --steps 200 --save "$T/wm200.st"
	[ "$(grep -c '^mirror step ' "$T/out")" = 11 ] || bad "mirror --steps 200 printed $(grep -c '^mirror step ' "$T/out") lines, expected 11"
	grep -q '^mirror step 200/200  h angle [0-9.]*° |B|/|W| [0-9.]*  out angle' "$T/out" ||
		bad "mirror: no final line: $(tail -2 "$T/out")"
	for l in h out; do
		mirror_angle $l | awk 'NR == 1 { first = $1 } { if (NR > 1 && $1 > prev + 1) up = 1; prev = $1 }
			END { exit !(NR == 11 && !up && prev < first - 20) }' ||
			bad "mirror: $l's angle does not fall: $(mirror_angle $l | tr '\n' ' ')"
	done
	# W stays fixed: the forward pass is the same after 1 or 200 mirror steps.
	expect 0 "" "" -- mirror --steps 1 --save "$T/wm1.st"
	net eval --init "$T/wm1.st" >"$T/e1" 2>&1 && net eval --init "$T/wm200.st" >"$T/e200" 2>&1 &&
		cmp -s "$T/e1" "$T/e200" || bad "mirror changed the forward weights: $(cat "$T/e1" "$T/e200")"
	# Training with mirror steps (warm-up, then every step or every other).
	expect 0 "" "" -- --epochs 1 --metrics "$T/wm.jsonl" --save "$T/wmt.st"
	grep -q '"name":"out","rule":"wm","angle":[0-9]' "$T/wm.jsonl" || bad "wm: no angle: $(cat "$T/wm.jsonl")"
	expect 0 "" "" -- --epochs 1 --init "$T/wm200.st"
}
NET=tiny
expect 1 "network tiny has no weight-mirror (wm) layer" "" -- mirror --steps 5
expect 2 "mirror needs --steps N" "" -- mirror
expect 2 "--steps is for the train and mirror commands" "" -- eval --init x --steps 5
# train --steps N stops after N steps, inside the first epoch here.
expect 0 "" "" -- --epochs 3 --steps 2 --metrics "$T/steps.jsonl"
[ "$(grep -c '^{"epoch"' "$T/steps.jsonl")" = 1 ] || bad "train --steps 2 ran more than one epoch"

# ---- conv nets: CIFAR-10 files, batchnorm statistics in checkpoints ----
if ! $WTNC tests/runtime/cnn.wtn -o "$T/cnn" >"$T/cc.out" 2>&1; then
	echo "FAIL t_runtime: $WTNC cannot compile tests/runtime/cnn.wtn:"
	head -5 "$T/cc.out"
	exit 1
fi
NET=cnn
# cifar FILE RECORDS [LABEL_OF_LAST]: CIFAR-10 binary records, labels cycling
# through 0..9 (the last one's label overridable), each image a flat colour
# per plane that depends on the label, so the set is learnable.
cifar() {
	: >"$1"
	i=0
	while [ $i -lt "$2" ]; do
		label=$((i % 10))
		[ $((i + 1)) = "$2" ] && [ -n "$3" ] && label=$3
		byte $label >>"$1"
		for plane in 0 1 2; do
			v=$(((label * 25 + plane * 80) % 256))
			head -c 1024 /dev/zero | tr '\0' "\\$(printf %03o $v)" >>"$1"
		done
		i=$((i + 1))
	done
}
cifar_dir() {
	mkdir -p "$1"
	for k in 1 2 3 4 5; do cifar "$1/data_batch_$k.bin" 12; done
	cifar "$1/test_batch.bin" 20
}
cifar_dir "$T/c10"
expect 0 "" "" -- --data "$T/c10" --save "$T/cnn.st" --metrics "$T/cnn.jsonl"
trained=$(grep '^epoch 1/1' "$T/out" | grep -o 'test loss [0-9.]* acc [0-9.]*%')
[ -n "$trained" ] || bad "cnn: no epoch line: $(head -c 300 "$T/out")"
grep -q '"name":"conv1","rule":"bp"' "$T/cnn.jsonl" || bad "cnn: no metrics for conv1: $(head -c 300 "$T/cnn.jsonl")"

expect 1 "data cifar10: no directory given" "--data DIR" --
cp -r "$T/c10" "$T/c10trunc" && head -c $((3073 * 12 - 5)) "$T/c10/data_batch_3.bin" >"$T/c10trunc/data_batch_3.bin"
expect 1 "$T/c10trunc/data_batch_3.bin" "not a whole number of 3073-byte" -- --data "$T/c10trunc"
cp -r "$T/c10" "$T/c10label" && cifar "$T/c10label/test_batch.bin" 20 10
expect 1 "$T/c10label/test_batch.bin" "label 10 of record 19 is not below 10" -- --data "$T/c10label"
cp -r "$T/c10" "$T/c10miss" && rm "$T/c10miss/test_batch.bin"
expect 1 "$T/c10miss/test_batch.bin" "missing CIFAR-10 file" -- --data "$T/c10miss"

# The input shape must match the data's images, both ways.
expect 1 "$T/good/train-images-idx3-ubyte" "images are 1x4x4, the network's input is 3x32x32" -- --data "$T/good"
NET=tiny
expect 1 "$T/c10/data_batch_1.bin" "CIFAR-10 images are 3x32x32, the network's input is 16x1x1" -- --data "$T/c10"
NET=cnn

# Checkpoint: conv weights as PyTorch stores them, batchnorm running
# statistics beside the parameters; eval (running statistics) reproduces
# the test accuracy training reported.
hlen=$(od -An -tu8 -N8 "$T/cnn.st" | tr -d ' ')
tail -c +9 "$T/cnn.st" | head -c "$hlen" >"$T/cnn.hdr"
for entry in '"conv1.weight":{"dtype":"F32","shape":[4,3,3,3]' '"bn1.weight":{"dtype":"F32","shape":[4]' \
	'"bn1.running_mean":{"dtype":"F32","shape":[4]' '"bn1.running_var":{"dtype":"F32","shape":[4]' \
	'"out.weight":{"dtype":"F32","shape":[10,256]'; do
	grep -qF "$entry" "$T/cnn.hdr" || bad "cnn checkpoint lacks $entry: $(cat "$T/cnn.hdr")"
done
expect 0 "" "" -- eval --init "$T/cnn.st" --data "$T/c10"
grep -qF "$trained" "$T/out" || bad "cnn: eval gives '$(cat "$T/out")', training reported '$trained'"
# Running statistics put back to their start (mean 0) change the evaluation:
# eval uses the saved ones.
off=$(sed 's/.*"bn1.running_mean":{[^}]*"data_offsets":\[\([0-9]*\),.*/\1/' "$T/cnn.hdr")
cp "$T/cnn.st" "$T/cnn0.st"
head -c 16 /dev/zero | dd of="$T/cnn0.st" bs=1 seek=$((8 + hlen + off)) conv=notrunc 2>/dev/null
expect 0 "" "" -- eval --init "$T/cnn0.st" --data "$T/c10"
grep -qF "$(echo "$trained" | sed 's/ acc.*//')" "$T/out" && bad "cnn: eval ignores the saved running mean: $(cat "$T/out")"
# Training on from the checkpoint keeps going.
expect 0 "" "" -- --init "$T/cnn.st" --data "$T/c10"
# Shape mismatches name every dimension.
{ head -c 8 "$T/cnn.st"; sed "s/\[4,3,3,3\]/[4,3,5,5]/" "$T/cnn.hdr"; tail -c +$((9 + hlen)) "$T/cnn.st"; } >"$T/cnn5.st"
expect 1 "$T/cnn5.st" "conv1.weight has shape [4, 3, 5, 5], the network expects [4, 3, 3, 3]" -- eval --init "$T/cnn5.st" --data "$T/c10"
# PyTorch's state_dict adds an int64 num_batches_tracked per batchnorm:
# accepted and ignored; on a layer that is not a batchnorm it is unknown.
dlen=$(($(wc -c <"$T/cnn.st") - 8 - hlen))
counter() { hdr=$(sed 's/} *$//' "$T/cnn.hdr")",\"$1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[$dlen,$((dlen + 8))]}}"
	{ le64 ${#hdr}; printf '%s' "$hdr"; tail -c +$((9 + hlen)) "$T/cnn.st"; head -c 8 /dev/zero; } >"$2"; }
counter bn1 "$T/torch.st"
expect 0 "" "" -- eval --init "$T/torch.st" --data "$T/c10"
grep -qF "$trained" "$T/out" || bad "cnn: eval of a checkpoint with num_batches_tracked gives '$(cat "$T/out")'"
counter conv1 "$T/torch2.st"
expect 1 "$T/torch2.st" "unknown tensor conv1.num_batches_tracked" -- eval --init "$T/torch2.st" --data "$T/c10"
# A conv net's checkpoint does not fit the dense net.
NET=tiny
expect 1 "$T/cnn.st" "unknown tensor conv1.weight" -- eval --init "$T/cnn.st"

# ---- train --profile ----
# profile_ok LAYER...: each layer has a forward row; the rows' shares in
# the metrics record, and the phases' in the table, add up to the step.
profile_ok() {
	for l in "$@"; do
		grep -q "^$l  *forward  *[0-9.]*  *[0-9.]*%  *[0-9.]*%$" "$T/out" ||
			bad "--profile: no forward row for $l: $(cat "$T/out")"
	done
	grep '^{"profile":' "$T/prof.jsonl" | grep -o '"share":[0-9.e+-]*' | sed 's/.*://' |
		awk '{ s += $1 } END { exit !(NR > 0 && s > 0.999 && s < 1.001) }' ||
		bad "--profile: the rows' shares do not add up to 1: $(cat "$T/prof.jsonl")"
	sed -n '/^by phase:/,$p' "$T/out" | awk '$1 == "all" && $2 != "step" { s += $4 }
		$1 == "all" && $2 == "step" { step = $4 } END { exit !(s > 99.5 && s < 100.5 && step == "100.0%") }' ||
		bad "--profile: the phases' shares do not add up to 100%: $(cat "$T/out")"
}
NET=cnn
expect 0 "" "" -- --data synthetic --steps 3 --profile --metrics "$T/prof.jsonl"
profile_ok conv1 bn1 pool1 flat out
grep -q '^(step) *data ' "$T/out" || bad "--profile: no data row: $(cat "$T/out")"
# One thread: every row ran on one thread.
sed -n '/^layer  *phase/,$p' "$T/out" | awk 'NR > 1 && $1 != "by" && $NF != "100.0%" && $NF != "-" { bad = 1 }
	END { exit bad }' || bad "--profile --threads 1: a row ran on more than one thread: $(cat "$T/out")"
expect 0 "" "" -- --data synthetic --steps 3 --profile --threads 2 --metrics "$T/prof.jsonl"
profile_ok conv1 bn1 pool1 flat out
[ -n "${wm_built:-}" ] && {
	NET=wm
	expect 0 "" "" -- --epochs 1 --steps 4 --profile --metrics "$T/prof.jsonl"
	profile_ok h out
	for l in h out; do
		grep -q "^$l  *mirror " "$T/out" || bad "--profile: no mirror row for $l: $(cat "$T/out")"
	done
}
NET=tiny
expect 2 "--profile is for the train command" "" -- eval --init x --profile

exit $fail
