#!/bin/sh
# t_model.sh: what the typed model (runtime/wtn_model.h) must keep working:
# checkpoints written before it (tests/runtime/fixtures/, saved by the
# spec-text runtime) load and evaluate exactly as they did then; a data
# path may contain spaces.
cd "$(dirname "$0")/.." || exit 1
WTNC=${WTNC:-build/wtnc}
F=tests/runtime/fixtures
T=$(mktemp -d /tmp/wtn_model.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL t_model: $*"; fail=1; }

# ---- checkpoints from before the typed model ----
for net in tiny conv; do
	if ! $WTNC "$F/$net.wtn" -o "$T/$net" >"$T/cc.out" 2>&1; then
		bad "cannot compile $F/$net.wtn: $(head -3 "$T/cc.out")"
		continue
	fi
	"$T/$net" eval --init "$F/$net.safetensors" --threads 1 >"$T/$net.eval" 2>&1 ||
		bad "$net: eval --init $F/$net.safetensors failed: $(cat "$T/$net.eval")"
	cmp -s "$T/$net.eval" "$F/$net.eval" ||
		bad "$net: eval gives '$(cat "$T/$net.eval")', before it gave '$(cat "$F/$net.eval")'"
done

# ---- a data path with spaces, in the train block ----
byte() { printf "\\$(printf %03o "$1")"; }
be32() { byte $(($1 >> 24 & 255)); byte $(($1 >> 16 & 255)); byte $(($1 >> 8 & 255)); byte $(($1 & 255)); }
images() { { be32 2051; be32 "$2"; be32 4; be32 4; head -c $(($2 * 16)) /dev/urandom; } >"$1"; }
labels() { { be32 2049; be32 "$2"; i=0; while [ $i -lt "$2" ]; do byte $((i % 3)); i=$((i + 1)); done; } >"$1"; }
D="$T/my data, with spaces"
mkdir -p "$D"
images "$D/train-images-idx3-ubyte" 64; labels "$D/train-labels-idx1-ubyte" 64
images "$D/t10k-images-idx3-ubyte" 32; labels "$D/t10k-labels-idx1-ubyte" 32
sed "s|data *synthetic|data \"$D/\"|" tests/runtime/tiny.wtn >"$T/spaced.wtn"
grep -qF "$D" "$T/spaced.wtn" || bad "could not write the data path into $T/spaced.wtn"
if $WTNC "$T/spaced.wtn" -o "$T/spaced" >"$T/cc.out" 2>&1; then
	"$T/spaced" --threads 1 --epochs 1 >"$T/out" 2>&1 || bad "training on '$D' failed: $(cat "$T/out")"
	grep -q "epoch 1/1 .*test loss" "$T/out" || bad "no epoch line training on '$D': $(cat "$T/out")"
	"$T/spaced" --help | grep -qF "$D" || bad "--help does not name the data path '$D'"
else
	bad "a data path with spaces is rejected: $(head -3 "$T/cc.out")"
fi

[ $fail = 0 ] && echo "t_model: old checkpoints load and evaluate as before; a data path may hold spaces"
[ $fail = 0 ]
