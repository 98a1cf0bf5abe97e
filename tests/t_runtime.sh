#!/bin/sh
# t_runtime.sh: the runtime library seen through a compiled network: data
# validation, checkpoint validation, a non-finite loss, save/eval round trip.
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
net() { "$T/tiny" --threads 1 "$@"; }

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
[ "$(grep -c '^{"epoch":[12],"lr":.*"layers":\[{"name":"out","rule":"fa","angle":' "$T/m.jsonl")" = 2 ] ||
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

exit $fail
