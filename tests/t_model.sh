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

[ $fail = 0 ] && echo "t_model: old checkpoints load and evaluate as before"
[ $fail = 0 ]
