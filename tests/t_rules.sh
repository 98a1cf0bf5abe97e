#!/bin/sh
# The defining property of each learning rule, on compiled code: through
# the refcheck harness (tests/reference/) for exact invariants, and through
# compiled binaries (metrics JSON, the mirror command) for what a user sees.
# Fixtures in tests/rules/. WTNC and WTNLIB pick another compiler/runtime.
cd "$(dirname "$0")/.." || exit 1
. tests/reference/env.sh
MAIN=${WTNMAIN:-build/wtn_main.o}
F=tests/rules
harness_env t_rules "$WTNC" "$LIB" "$MAIN"
T=$(mktemp -d /tmp/wtn_rules.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT INT TERM
harness_objects t_rules "$T"

failed=0
fail() {
	echo "FAIL t_rules: $*"
	failed=$((failed + 1))
}

# harness NAME WTN: $T/NAME.rc, the network's kernels in refcheck
harness() {
	if ! $WTNC "$2" -c -o "$T/$1.o" >"$T/$1.log" 2>&1 ||
	   ! $CC -o "$T/$1.rc" "$T/refcheck.o" "$T/refmath.o" "$T/$1.o" "$LIB" $LIBS \
	        >>"$T/$1.log" 2>&1; then
		fail "$1: cannot build the harness for $2:"
		sed 's/^/    /' "$T/$1.log" | head -8
		return 1
	fi
}

# binary NAME WTN: $T/NAME, the compiled training binary
binary() {
	if ! $WTNC "$2" -c -o "$T/$1.o" >"$T/$1.log" 2>&1 ||
	   ! $CC -o "$T/$1" "$T/$1.o" "$MAIN" "$LIB" $LIBS >>"$T/$1.log" 2>&1; then
		fail "$1: cannot build $2:"
		sed 's/^/    /' "$T/$1.log" | head -8
		return 1
	fi
}

# check WHAT NAME ARGS...: runs the harness; its output on failure
check() {
	what=$1 name=$2
	shift 2
	if ! "$T/$name.rc" "$@" >"$T/$name.out" 2>&1; then
		fail "$what (refcheck $name $*):"
		grep -v '^refcheck: .*ok' "$T/$name.out" | head -12 | sed 's/^/    /'
	fi
}

# json FILE LAYER FIELD: FIELD of LAYER in the last metrics line
json() {
	tail -1 "$1" | tr '{' '\n' | grep "^\"name\":\"$2\"," |
		sed -n "s/.*\"$3\":\([^,}]*\).*/\1/p"
}

# holds VALUE AWK-CONDITION-ON-v: exit 0 when it holds
holds() { awk -v v="$1" "BEGIN { exit !(v != \"\" && v != \"null\" && ($2)) }"; }

# ---- usf, frsf, brsf (and fa, dfa fixed) over 30 steps ----
# After every step: usf B = sign(W) s bit for bit (one magnitude, within a
# float rounding of s); frsf B = |M| sign(W) bit for bit with M unchanged;
# brsf has W's signs, magnitudes within the 4-uniform bound and new ones
# every batch; fa's B and dfa's D never change.
if harness signs $F/signs.wtn; then
	check "sign-concordant rules over 30 steps" signs --rule-props 30 --seed 1
	check "sign-concordant rules over 30 steps" signs --rule-props 30 --seed 2 --n 5
	check "sign-concordant rules, one step against the reference" signs --seed 4
fi
# the binary's start: B already follows W before the first step
if binary signs $F/signs.wtn; then
	"$T/signs" --epochs 1 --threads 1 --metrics "$T/signs.json" >"$T/signs.txt" 2>&1 ||
		fail "signs: training failed: $(tail -2 "$T/signs.txt")"
	for l in h1 h2 h3 h4 h5; do
		a=$(json "$T/signs.json" $l angle)
		# W's signs with random magnitudes: cos = E|w| E|m| / (rms w rms m),
		# 2/pi (50.5 deg) for two normals; usf and uniform inits are closer
		holds "$a" "v < 55" || fail "signs: $l angle(B, W) after training is '$a', want < 55 deg"
	done
	a=$(json "$T/signs.json" out angle)
	holds "$a" "v > 60" || fail "signs: fa layer out angle '$a' deg, want an unaligned B (> 60)"
fi

# ---- kp: W - B shrinks by (1 - lr decay) per plain-SGD step ----
# h2 has decay=0.05, out the optimiser's 0.02, lr 0.05: after 50 steps
# |W-B| is 0.9975^50 = 0.8824 and 0.999^50 = 0.9512 of its start, to 1e-4.
if harness kp $F/kp.wtn; then
	check "kp plain sgd (1 - lr decay)^t" kp --rule-props 50 --seed 1
	grep -q 'kp: h2 .*want 0.88235' "$T/kp.out" ||
		fail "kp: the harness did not check h2 with decay 0.05 ($(grep 'kp: h2' "$T/kp.out"))"
	check "kp one step against the reference" kp --seed 2
fi
# the same with momentum and nesterov: the recurrence with momentum buffers
sed 's/sgd(lr=0.05, weight_decay=0.02)/sgd(lr=0.05, momentum=0.9, nesterov=true, weight_decay=0.02)/' \
	$F/kp.wtn >"$T/kpm.wtn"
harness kpm "$T/kpm.wtn" && check "kp with momentum: W - B recurrence" kpm --rule-props 50 --seed 3

# A real run: lr 0.1 and decay 0.1 give W - B a factor 0.99 per step, and
# 5 epochs of the synthetic set (2048 samples, batch 16) are 640 steps:
# 0.99^640 = 0.0016 of the start, while the gradients keep |W| up, so the
# angle must be below 1 deg. The twin with decay=0 keeps its distance.
sed -e 's/kp(decay=0.05)/kp(decay=0.1)/' -e 's/^\( *out *\)kp$/\1kp(decay=0.1)/' \
    -e 's/batch     8/batch     16/' -e 's/epochs    1/epochs    5/' \
    -e 's/sgd(lr=0.05, weight_decay=0.02)/sgd(lr=0.1)/' $F/kp.wtn >"$T/kprun.wtn"
sed 's/kp(decay=0.1)/kp(decay=0)/' "$T/kprun.wtn" >"$T/kp0.wtn"
if binary kprun "$T/kprun.wtn" && binary kp0 "$T/kp0.wtn"; then
	"$T/kprun" --threads 1 --metrics "$T/kprun.json" >"$T/kprun.txt" 2>&1 &&
	"$T/kp0" --threads 1 --metrics "$T/kp0.json" >"$T/kp0.txt" 2>&1 ||
		fail "kp: a training run failed: $(tail -2 "$T/kprun.txt" "$T/kp0.txt")"
	for l in h2 out; do
		a=$(json "$T/kprun.json" $l angle) a0=$(json "$T/kp0.json" $l angle)
		holds "$a" "v < 1" || fail "kp: $l angle(B, W) after 5 epochs is '$a' deg, want < 1"
		holds "$a0" "v > 10" || fail "kp: $l with decay=0 ends at angle '$a0' deg, want > 10 (no shrinking)"
	done
fi

# ---- wm: mirror steps alone align B with W at scale rate noise^2 / decay ----
if harness wm $F/wm.wtn; then
	check "wm mirror steps (harness)" wm --mirror-steps 1500 --seed 1
	check "wm one step against the reference" wm --seed 2
fi
if binary wm $F/wm.wtn; then
	if "$T/wm" mirror --steps 1500 --threads 1 >"$T/wm.txt" 2>&1; then
		last=$(tail -1 "$T/wm.txt")
		# "mirror step 1500/1500  h1 angle 1.59° |B|/|W| 0.497  out angle ..."
		for lw in h1:0.5 out:2; do
			l=${lw%:*} want=${lw#*:}
			a=$(echo "$last" | sed -n "s/.* $l angle \([0-9.e+-]*\).*/\1/p")
			r=$(echo "$last" | sed -n "s/.* $l angle [^|]*|B|\/|W| \([0-9.e+-]*\).*/\1/p")
			holds "$a" "v < 5" || fail "wm mirror --steps 1500: $l angle '$a', want < 5 deg ($last)"
			holds "$r" "v > 0.9 * $want && v < 1.1 * $want" ||
				fail "wm mirror --steps 1500: $l |B|/|W| '$r', want $want within 10% ($last)"
		done
		a0=$(sed -n '1s/.* h1 angle \([0-9.e+-]*\).*/\1/p' "$T/wm.txt")
		holds "$a0" "v > 45" || fail "wm mirror: h1 starts at angle '$a0', want a random B (> 45 deg)"
	else
		fail "wm: mirror --steps 1500 failed: $(tail -2 "$T/wm.txt")"
	fi
fi

# ---- dfa: every hidden layer's error is (d_out D_l) * f'(a_l) ----
if harness dfa $F/dfa.wtn; then
	check "dfa hidden errors from the output" dfa --seed 1
	check "dfa hidden errors from the output" dfa --seed 2 --n 3
	check "dfa: D fixed over 10 steps" dfa --rule-props 10 --seed 3
fi


# ---- the same properties on conv layers ----
# usf's conv scale sqrt(2/(k k C_out)) (c1: sqrt(2/72) = 0.16667) or its
# argument, frsf's M, brsf's signs and magnitudes, fa's fixed B, per step
if harness conv_signs $F/conv_signs.wtn; then
	check "sign-concordant rules on conv layers over 30 steps" conv_signs --rule-props 30 --seed 1
	check "sign-concordant rules on conv layers, one step against the reference" conv_signs --seed 2
fi
# kp: |W - B| of conv layer c2 after 50 plain-SGD steps is 0.9975^50
if harness conv_kp $F/conv_kp.wtn; then
	check "kp on conv layers: (1 - lr decay)^t" conv_kp --rule-props 50 --seed 1
	grep -q 'kp: c2 .*want 0.88235' "$T/conv_kp.out" ||
		fail "kp: the harness did not check conv c2 with decay 0.05 ($(grep 'kp: c2' "$T/conv_kp.out"))"
	check "kp on conv layers, one step against the reference" conv_kp --seed 2
fi
# wm: mirror steps alone turn a conv layer's B to its fixed point: c1
# (pad 0) within 5 deg of W at 0.1 |W|, c2 (pad 1) within 5 deg of the
# per-tap fixed point
if harness conv_wm $F/conv_wm.wtn; then
	check "wm mirror steps on conv layers" conv_wm --mirror-steps 1500 --seed 1
	grep -q 'mirror: c1 .*want |B\*|/|W| = 0.1$' "$T/conv_wm.out" ||
		fail "wm: the harness did not expect 0.1 for conv c1 ($(grep 'mirror: c1' "$T/conv_wm.out"))"
	check "wm on conv layers, one step and one mirror step against the reference" conv_wm --seed 2
fi
# dfa: hidden conv and dense errors from the output error through D
if harness conv_dfa $F/conv_dfa.wtn; then
	check "dfa through conv layers" conv_dfa --seed 1
	check "dfa through conv layers" conv_dfa --seed 2 --n 3
	check "dfa on conv layers: D fixed over 10 steps" conv_dfa --rule-props 10 --seed 3
fi

# st_rows FILE TENSOR COLS: the norm of each row of COLS floats of a
# tensor in a safetensors checkpoint (header: u64 length, JSON, data).
st_rows() {
	hlen=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
	off=$(head -c $((8 + hlen)) "$1" | tail -c "$hlen" | tr '}' '\n' |
		sed -n "s/.*\"$2\":{[^}]*\"data_offsets\":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2/p")
	set -- "$1" $off "$3"
	od -A n -v -t f4 -j $((8 + hlen + $2)) -N $(($3 - $2)) "$1" | tr -s ' ' '\n' | awk NF |
		awk -v c="$4" '{ s += $1 * $1 } NR % c == 0 { printf "%.6f\n", sqrt(s); s = 0 }'
}

# st_data FILE: a checkpoint's tensor data without its header (the header
# records the run's configuration, which differs between the binaries).
st_data() {
	hlen=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
	tail -c +$((9 + hlen)) "$1" >"$1.data"
}

# wm growth control: after every mirror step B is rescaled by one factor
# per layer so that the mean norm of its rows (dense) or filters (conv) is
# `growth`. One factor, not one per filter: after a single mirror step
# from the same start and noise, B with growth control is B without it
# times one number, so every filter's norm changes by the same ratio.
sed 's/warmup=0)/warmup=0, growth=0.5)/' $F/wm.wtn >"$T/wm_growth.wtn"
sed 's/warmup=0)/warmup=0, growth=0.25)/' $F/conv_wm.wtn >"$T/conv_wm_growth.wtn"
if binary wm_growth "$T/wm_growth.wtn" && binary conv_wm_growth "$T/conv_wm_growth.wtn" &&
   binary conv_wm_plain $F/conv_wm.wtn; then
	"$T/wm_growth" mirror --steps 30 --threads 1 --save "$T/wmg.st" >/dev/null 2>&1 &&
	"$T/conv_wm_growth" mirror --steps 30 --threads 1 --save "$T/cwmg.st" >/dev/null 2>&1 &&
	"$T/conv_wm_growth" mirror --steps 1 --threads 1 --save "$T/cwmg1.st" >/dev/null 2>&1 &&
	"$T/conv_wm_plain" mirror --steps 1 --threads 1 --save "$T/cwm1.st" >/dev/null 2>&1 ||
		fail "wm growth: a mirror run failed"
	m=$(st_rows "$T/wmg.st" h1.feedback 16 | awk '{ s += $1 } END { printf "%.5f", s / NR }')
	holds "$m" "v > 0.4999 && v < 0.5001" || fail "wm growth=0.5: h1's mean row norm is $m"
	m=$(st_rows "$T/cwmg.st" c2.feedback 54 | awk '{ s += $1 } END { printf "%.5f", s / NR }')
	holds "$m" "v > 0.2499 && v < 0.2501" || fail "wm growth=0.25: c2's mean filter norm is $m"
	[ "$(st_rows "$T/cwmg.st" c2.feedback 54 | wc -l)" = 8 ] || fail "wm growth: c2 should have 8 filters"
	spread=$(st_rows "$T/cwmg1.st" c2.feedback 54 >"$T/cwmg1.rows" &&
	         st_rows "$T/cwm1.st" c2.feedback 54 | paste "$T/cwmg1.rows" - |
	         awk '{ r = $1 / $2; lo = NR == 1 || r < lo ? r : lo; hi = NR == 1 || r > hi ? r : hi }
	              END { printf "%.6f", hi / lo - 1 }')
	holds "$spread" "v < 1e-4" ||
		fail "wm growth: c2's filters were rescaled by different factors (spread $spread), not by one"
	spread=$(st_rows "$T/cwm1.st" c2.feedback 54 | awk '{ lo = NR == 1 || $1 < lo ? $1 : lo; hi = NR == 1 || $1 > hi ? $1 : hi }
	         END { printf "%.6f", hi / lo - 1 }')
	holds "$spread" "v > 0.01" || fail "wm growth: c2's filters have equal norms ($spread): the test cannot tell"
fi

# The conv mirror splits its noise batch between threads, each part making
# its own slice of the one noise stream, y and correlation (c1, 3 channels,
# through the direct convolution; c2 through im2col): 1 and 2 threads give
# the same B up to the order of the parts' sums, and 5 steps are not 1.
# st_vals FILE TENSOR: the tensor's values, one a line
st_vals() {
	hlen=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
	off=$(head -c $((8 + hlen)) "$1" | tail -c "$hlen" | tr '}' '\n' |
		sed -n "s/.*\"$2\":{[^}]*\"data_offsets\":\[\([0-9]*\),\([0-9]*\)\].*/\1 \2/p")
	set -- "$1" $off
	od -A n -v -t f4 -j $((8 + hlen + $2)) -N $(($3 - $2)) "$1" | tr -s ' ' '\n' | awk NF
}
# reldiff A B TENSOR: max |a - b| / max |b|
reldiff() {
	st_vals "$1" "$3" >"$T/rd.a" && st_vals "$2" "$3" | paste "$T/rd.a" - |
		awk '{ d = $1 - $2; if (d < 0) d = -d; b = $2; if (b < 0) b = -b
		       if (d > dm) dm = d; if (b > bm) bm = b } END { printf "%.3g", (bm > 0 ? dm / bm : 1) }'
}
if [ -s "$T/cwm1.st" ]; then
	"$T/conv_wm_plain" mirror --steps 5 --threads 1 --save "$T/cwm5t1.st" >/dev/null 2>&1 &&
	"$T/conv_wm_plain" mirror --steps 5 --threads 2 --save "$T/cwm5t2.st" >/dev/null 2>&1 ||
		fail "wm threads: a mirror run failed"
	for l in c1 c2; do
		d=$(reldiff "$T/cwm5t2.st" "$T/cwm5t1.st" $l.feedback)
		holds "$d" "v < 1e-5" || fail "wm: $l's B after 5 mirror steps differs by $d between 1 and 2 threads"
		d=$(reldiff "$T/cwm1.st" "$T/cwm5t1.st" $l.feedback)
		holds "$d" "v > 1e-3" || fail "wm: $l's B after 1 and 5 mirror steps differ by only $d"
	done
fi

# kp decay_steps: its own decay for the first S steps, then the
# optimiser's: the same checkpoint as kp(decay=D) after S steps, another
# one after 2S.
sed 's/^\( *[a-z0-9]* *\)kp(decay=\([0-9.e-]*\))/\1kp(decay=\2, decay_steps=4)/' $F/kp.wtn >"$T/kp_steps.wtn"
if grep -q decay_steps=4 "$T/kp_steps.wtn" && binary kp_plain $F/kp.wtn && binary kp_steps "$T/kp_steps.wtn"; then
	for s in 4 8; do
		"$T/kp_plain" train --steps $s --epochs 1 --threads 1 --save "$T/kpp$s.st" >/dev/null 2>&1 &&
		"$T/kp_steps" train --steps $s --epochs 1 --threads 1 --save "$T/kps$s.st" >/dev/null 2>&1 ||
			fail "kp decay_steps: a training run failed"
	done
	for f in "$T"/kpp4.st "$T"/kps4.st "$T"/kpp8.st "$T"/kps8.st; do st_data "$f"; done
	cmp -s "$T/kpp4.st.data" "$T/kps4.st.data" || fail "kp decay_steps=4: differs from kp(decay) within the first 4 steps"
	cmp -s "$T/kpp8.st.data" "$T/kps8.st.data" && fail "kp decay_steps=4: still kp(decay) after 8 steps"
else
	fail "kp decay_steps: tests/rules/kp.wtn has no kp(decay=...) entry to schedule, or a build failed"
fi

# ---- delta angle: 0 under bp at every layer, nonzero below fa layers ----
sed 's/default bp/default fa/' $F/bp.wtn >"$T/fa.wtn"
if binary bp $F/bp.wtn && binary fa "$T/fa.wtn"; then
	"$T/bp" --threads 1 --metrics "$T/bp.json" >"$T/bp.txt" 2>&1 &&
	"$T/fa" --threads 1 --metrics "$T/fa.json" >"$T/fa.txt" 2>&1 ||
		fail "delta: a training run failed: $(tail -2 "$T/bp.txt" "$T/fa.txt")"
	for l in h1 h2 out; do
		d=$(json "$T/bp.json" $l delta)
		holds "$d" "v == 0" || fail "delta: bp layer $l has delta angle '$d', want 0"
	done
	for l in h1 h2; do
		d=$(json "$T/fa.json" $l delta)
		holds "$d" "v > 1" || fail "delta: fa net layer $l has delta angle '$d', want > 1 deg"
	done
	d=$(json "$T/fa.json" out delta)
	holds "$d" "v == 0" || fail "delta: the fa net's output layer has delta '$d', want 0 (its own error)"
fi

if [ $failed = 0 ]; then
	echo "t_rules: usf frsf brsf kp wm dfa bp/fa properties ok (dense and conv)"
else
	echo "t_rules: $failed failing case(s)"
fi
[ $failed = 0 ]
