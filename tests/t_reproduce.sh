#!/bin/sh
# tools/plot.c on fixed metrics files (means, spreads, nulls, errors, SVGs,
# bad input) and tools/reproduce.sh end to end on the synthetic data set,
# both suites (mlp, lenet).
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export REPRO_SWEEPS="$tmp/sweeps"   # the sweeps of the runs below stay in $tmp
fx=tests/reproduce
fails=0
work_dirs=$(ls -d build/repro.* 2>/dev/null | wc -l)   # other runs' work directories
fail() { echo "FAIL t_reproduce: $*"; fails=$((fails + 1)); }
has() {   # FILE TEXT: the file contains the text (fixed string)
	grep -qF -- "$2" "$1" || fail "$1 lacks: $2"
}
count() {   # FILE TEXT N: the text occurs N times
	n=$(grep -oF -- "$2" "$1" | wc -l)
	[ "$n" = "$3" ] || fail "$1: '$2' occurs $n times, want $3"
}

cc -std=gnu11 -O2 -Wall -Wextra -Werror -o "$tmp/plot" tools/plot.c -lm || { echo "FAIL t_reproduce: plot.c does not compile"; exit 1; }

# ---- the summary of fixed runs ----
mkdir -p "$tmp/out"
T=$(printf '\t')
cat >"$tmp/manifest" <<EOF
config${T}bp${T}h1=bp h2=bp out=bp
config${T}fa${T}h1=fa h2=fa out=fa
config${T}mix-bp-kp-wm${T}h1=bp h2=kp out=wm
config${T}dfa${T}h1=dfa h2=dfa out=dfa
run${T}bp${T}1${T}4.5${T}$fx/bp_seed1.jsonl
run${T}fa${T}1${T}5.0${T}$fx/fa_seed1.jsonl
run${T}fa${T}2${T}7.0${T}$fx/fa_seed2.jsonl
error${T}fa${T}3${T}train: wtn: non-finite loss at epoch 2 step 7; stopping
run${T}mix-bp-kp-wm${T}1${T}6${T}$fx/mix_seed1.jsonl
error${T}dfa${T}-${T}wtnc: --feedback:1:4: error: rule 'dfa' is not supported yet
EOF
if "$tmp/plot" "$tmp/out" <"$tmp/manifest" >"$tmp/tables.md" 2>"$tmp/err"; then
	md=$tmp/tables.md
	# fa: last-epoch test accuracies 82 and 84; sample std sqrt(2).
	has "$md" "| [fa](#fa) | fa | fa | fa | 2 of 3 **ERROR** | 83.00 ± 1.41 | 82.00 – 84.00 | 83.50 |"
	# bp: one seed, samples/s the mean of the non-null epochs.
	has "$md" "| [bp](#bp) | bp | bp | bp | 1 of 1 | 86.00 | 86.00 – 86.00 | 86.00 | 15000 |"
	has "$md" "| [dfa](#dfa) | dfa | dfa | dfa | 0 of 0 | **ERROR** (see below) |"
	has "$md" "**ERROR** (compile): \`wtnc: --feedback:1:4: error: rule 'dfa' is not supported yet\`"
	has "$md" "**ERROR** (seed 3): \`train: wtn: non-finite loss at epoch 2 step 7; stopping\`"
	# fa out: angle 80/82 after epoch 1, 60/64 at the end; h1's delta is
	# null or missing in seed 2, so only seed 1's counts.
	has "$md" "| out | fa | 81.0 ± 1.4 | 62.0 ± 2.8 | 0.65 ± 0.00 | 0.0 ± 0.0 |"
	has "$md" "| h1 | fa | 89.9 ± 0.0 | 89.7 ± 0.0 | 1.00 ± 0.00 | 77.0 |"
	has "$md" "| h1 | bp | — | — | — | 45.0 |"
	has "$md" "| h2 | kp | 89.0 | 70.0 | 1.00 | 20.0 |"
	# bp wrote no layers: every cell is missing, none invented.
	has "$md" "| out | bp | — | — | — | — |"
	for f in accuracy angle delta_angle; do
		svg=$tmp/out/$f.svg
		[ -s "$svg" ] || { fail "$f.svg missing"; continue; }
		head -c 4 "$svg" | grep -q '<svg' || fail "$f.svg does not start with <svg"
		tail -n 1 "$svg" | grep -q '</svg>' || fail "$f.svg does not end with </svg>"
		if command -v xmllint >/dev/null; then
			xmllint --noout "$svg" || fail "$f.svg is not well-formed XML"
		fi
		has "$svg" "h1 bp, h2 kp, out wm"
		has "$svg" "dfa (error: no data)"
	done
	# A line per configuration with data: bp, fa, mix in accuracy; fa in
	# three panels and mix in two (its h1 has no B) for angles; delta: fa in
	# three panels, mix in three.
	count "$tmp/out/accuracy.svg" "<polyline" 3
	count "$tmp/out/angle.svg" "<polyline" 5
	count "$tmp/out/delta_angle.svg" "<polyline" 6
	has "$tmp/out/angle.svg" "layer out"
	has "$tmp/out/accuracy.svg" ">epoch</text>"
else
	fail "plot failed on the fixtures: $(cat "$tmp/err")"
fi

# ---- published errors: the comparison table, the ranking, a title label ----
cat "$tmp/manifest" >"$tmp/manifest_pub"
printf 'published\tbp\t9.20\npublished\tfa\t13.06\n' >>"$tmp/manifest_pub"
mkdir -p "$tmp/out_pub"
if "$tmp/plot" "$tmp/out_pub" "LeNet, Fashion-MNIST" <"$tmp/manifest_pub" >"$tmp/pub.md" 2>"$tmp/err"; then
	md=$tmp/pub.md
	has "$md" "## Comparison with the published errors"
	# fa: errors 18 and 16 (accuracies 82, 84); bp: 14 from one seed.
	has "$md" "| [fa](#fa) | 2 of 3 **ERROR** | 17.00 ± 1.41 | 13.06 | +3.00 | +3.86 | 89.7 / 77.0 | 87.0 / 61.0 | 62.0 / 0.0 |"
	has "$md" "| [bp](#bp) | 1 of 1 | 14.00 | 9.20 | +0.00 | +0.00 | — / — | — / — | — / — |"
	has "$md" "| [bp/kp/wm](#mix-bp-kp-wm) | 1 of 1 | 16.00 | — | +2.00 | — | — / 45.0 | 70.0 / 20.0 | 5.0 / 0.0 |"
	has "$md" "| [dfa](#dfa) | 0 of 0 **ERROR** | **ERROR** | — | — | — |"
	has "$md" "- ours: bp 14.00 < fa 17.00"
	has "$md" "- published: bp 9.20 < fa 13.06"
	has "$tmp/out_pub/accuracy.svg" "LeNet, Fashion-MNIST: test accuracy"
	has "$tmp/out_pub/angle.svg" "LeNet, Fashion-MNIST: Angle between"
else
	fail "plot failed with published errors: $(cat "$tmp/err")"
fi
grep -q "Comparison with the published" "$tmp/tables.md" 2>/dev/null && fail "a comparison table without published errors"

# ---- bad input: a clear message and status 1 (usage: 2) ----
expect_fail() {   # MANIFEST-LINE MESSAGE
	printf 'config\tx\th1=fa\n%s\n' "$1" >"$tmp/bad"
	"$tmp/plot" "$tmp/out" <"$tmp/bad" >/dev/null 2>"$tmp/err"
	st=$?
	[ "$st" = 1 ] || fail "status $st, want 1, for: $1"
	grep -qF -- "$2" "$tmp/err" || fail "message '$(cat "$tmp/err")' lacks '$2'"
}
expect_fail "run${T}x${T}1${T}1${T}$fx/truncated.jsonl" "truncated.jsonl:1: bad JSON"
expect_fail "run${T}x${T}1${T}1${T}$fx/wrongtype.jsonl" "field \"test_acc\" is not a number"
expect_fail "run${T}x${T}1${T}1${T}$tmp/none.jsonl" "none.jsonl: No such file"
expect_fail "run${T}y${T}1${T}1${T}$fx/bp_seed1.jsonl" "unknown configuration y"
expect_fail "run${T}x${T}1${T}soon${T}$fx/bp_seed1.jsonl" "bad seconds"
expect_fail "bogus line" "expected config/run/error"
expect_fail "published${T}x${T}lots" "bad published error 'lots'"
expect_fail "published${T}y${T}9.2" "unknown configuration y"
"$tmp/plot" >/dev/null 2>&1 </dev/null
[ $? = 2 ] || fail "plot without arguments: want status 2"

# ---- reproduce.sh end to end, on synthetic data ----
out=$tmp/repro
if REPRO_SUITES=mlp REPRO_DATA=synthetic REPRO_CONFIGS="bp fa" REPRO_SEEDS=2 REPRO_EPOCHS=2 REPRO_OUT=$out \
	tools/reproduce.sh >"$tmp/log" 2>&1; then
	has "$out/README.md" "| [bp](#bp) | bp | bp | bp | 2 of 2 |"
	has "$out/README.md" "| [fa](#fa) | fa | fa | fa | 2 of 2 |"
	has "$out/README.md" "REPRO_SEEDS=2 REPRO_EPOCHS=2"
	has "$out/README.md" "784-1000 relu-1000 relu-10 identity"
	has "$out/README.md" "CPUs (nproc)"
	has "$tmp/log" "estimated total"
	for s in 1 2; do
		[ "$(grep -c "^{\"epoch\"" "$out/runs/fa/seed$s.jsonl")" = 2 ] || fail "runs/fa/seed$s.jsonl: want 2 lines"
	done
	[ -s "$out/angle.svg" ] || fail "reproduce.sh wrote no angle.svg"
else
	fail "reproduce.sh on synthetic data failed: $(tail -n 3 "$tmp/log")"
fi

# ---- the lenet suite on synthetic data: every rule given, its own README and
# plots, and a LeNet section in the top README that the mlp suite keeps ----
out=$tmp/repro   # beside the mlp results above
if REPRO_SUITES=lenet REPRO_DATA=synthetic REPRO_LENET_RULES="bp fa kp" REPRO_SEEDS=2 REPRO_LENET_EPOCHS=2 \
	REPRO_OUT=$out tools/reproduce.sh >"$tmp/log" 2>&1; then
	lr=$out/lenet/README.md
	has "$lr" "| [bp](#bp) | 2 of 2 |"
	has "$lr" "| [fa](#fa) | 2 of 2 |"
	has "$lr" "| [kp](#kp) | 2 of 2 |"
	# bp's published error and gap; kp has none.
	has "$lr" "| 9.20 | +0.00 | +0.00 |"
	has "$lr" "| 13.06 |"
	has "$lr" " conv1 angle / δ | conv2 angle / δ | fc1 angle / δ | fc2 angle / δ | out angle / δ |"
	has "$lr" "| conv1 | conv2 | fc1 | fc2 | out | seeds ok |"
	has "$lr" "REPRO_SUITES=lenet REPRO_SEEDS=2 REPRO_LENET_EPOCHS=2 REPRO_LENET_RULES=\"bp fa kp\" REPRO_DATA=synthetic tools/reproduce.sh"
	has "$lr" "Our setting is not biotorch's. Ours: 2 epochs"
	has "$lr" "batch 64"
	has "$tmp/log" "estimated total"
	for s in 1 2; do
		[ "$(grep -c "^{\"epoch\"" "$out/lenet/runs/kp/seed$s.jsonl")" = 2 ] || fail "lenet/runs/kp/seed$s.jsonl: want 2 lines"
	done
	for f in accuracy angle delta_angle; do
		has "$out/lenet/$f.svg" "LeNet, Fashion-MNIST: "
	done
	count "$out/lenet/accuracy.svg" "<polyline" 3
	top=$out/README.md
	has "$top" "| [bp](#bp) | bp | bp | bp | 2 of 2 |"   # the mlp section is still there
	has "$top" "## LeNet on Fashion-MNIST"
	has "$top" "| [fa](lenet/README.md#fa) | 2 of 2 |"
	has "$top" "![LeNet test accuracy per epoch](lenet/accuracy.svg)"
	# Rerunning the mlp suite keeps the LeNet section, once.
	if REPRO_SUITES=mlp REPRO_DATA=synthetic REPRO_CONFIGS="bp" REPRO_SEEDS=1 REPRO_EPOCHS=1 REPRO_OUT=$out \
		tools/reproduce.sh >"$tmp/log" 2>&1; then
		count "$top" "## LeNet on Fashion-MNIST" 1
		has "$top" "| [fa](lenet/README.md#fa) | 2 of 2 |"
		has "$top" "REPRO_SEEDS=1 REPRO_EPOCHS=1"
	else
		fail "reproduce.sh mlp after lenet failed: $(tail -n 3 "$tmp/log")"
	fi
else
	fail "reproduce.sh lenet on synthetic data failed: $(tail -n 3 "$tmp/log")"
fi
# --steps stops each run early; a lenet-only run on a fresh directory still
# writes a top README.
out=$tmp/lenet_only
if REPRO_SUITES=lenet REPRO_DATA=synthetic REPRO_LENET_RULES="dfa" REPRO_SEEDS=1 REPRO_LENET_EPOCHS=3 \
	REPRO_LENET_STEPS=4 REPRO_OUT=$out tools/reproduce.sh >"$tmp/log" 2>&1; then
	[ "$(grep -c "^{\"epoch\"" "$out/lenet/runs/dfa/seed1.jsonl")" = 1 ] || fail "REPRO_LENET_STEPS=4: want 1 epoch line"
	has "$out/README.md" "The MLP suite has not been run here"
	has "$out/README.md" "| [dfa](lenet/README.md#dfa) | 1 of 1 |"
	has "$out/lenet/README.md" "each run stopped after 4 steps"
else
	fail "reproduce.sh lenet with steps failed: $(tail -n 3 "$tmp/log")"
fi

# REPRO_LONG=1: 30 LeNet epochs and 3 seeds by default (each run cut to 2
# steps here), wm with the stable setting, output under docs/results/long
# unless REPRO_OUT says otherwise.
out=$tmp/long
if REPRO_LONG=1 REPRO_SUITES=lenet REPRO_DATA=synthetic REPRO_LENET_RULES="wm" \
	REPRO_LENET_STEPS=2 REPRO_OUT=$out tools/reproduce.sh >"$tmp/log" 2>&1; then
	has "$tmp/log" "3 seeds x 30 epochs"
	has "$out/lenet/README.md" "REPRO_SEEDS=3 REPRO_LENET_EPOCHS=30"
	has "$out/lenet/README.md" "The wm runs use \`wm(rate=0.5,decay=0.5,batch=16);fc*=wm(rate=0.5,decay=0.5,batch=1024);out=wm(rate=0.5,decay=0.5,batch=512)\`"
	grep -q '"name":"fc1","kind":"dense","rule":"wm","args":{"noise":1,"rate":0.5,"decay":0.5,"batch":1024' "$out"/lenet/runs/wm/*seed1* ||
		fail "REPRO_LONG=1: fc1's wm arguments are not the default REPRO_LENET_WM's"
	[ "$(ls "$out/lenet/runs/wm" | wc -l)" = 3 ] || fail "REPRO_LONG=1: want 3 wm seeds"
else
	fail "reproduce.sh REPRO_LONG=1 failed: $(tail -n 3 "$tmp/log")"
fi

# A network that does not compile: every configuration is an ERROR, the
# README still says so, and the status is 1.
out=$tmp/broken
REPRO_SUITES=mlp REPRO_NET=$fx/broken.wtn REPRO_CONFIGS="bp kp" REPRO_SEEDS=1 REPRO_EPOCHS=1 REPRO_OUT=$out \
	tools/reproduce.sh >"$tmp/log" 2>&1
st=$?
[ "$st" = 1 ] || fail "reproduce.sh with a broken network: status $st, want 1"
has "$tmp/log" "ERROR: bp (seed -): wtnc:"
has "$tmp/log" "ERROR: kp (seed -): wtnc:"
has "$out/README.md" "**2 ERROR(S)**"
has "$out/README.md" "| [kp](#kp) | kp | kp | kp | 0 of 0 | **ERROR** (see below) |"

# The same for the lenet suite.
out=$tmp/broken_lenet
REPRO_SUITES=lenet REPRO_LENET_NET=$fx/broken.wtn REPRO_LENET_RULES="bp fa" REPRO_SEEDS=1 REPRO_OUT=$out \
	tools/reproduce.sh >"$tmp/log" 2>&1
st=$?
[ "$st" = 1 ] || fail "reproduce.sh with a broken lenet network: status $st, want 1"
has "$tmp/log" "ERROR: fa (seed -): wtnc:"
has "$out/lenet/README.md" "**2 ERROR(S)**"
has "$out/README.md" "**2 ERROR(S)**: see [lenet/README.md](lenet/README.md)."

for bad in "REPRO_SEEDS=0" "REPRO_EPOCHS=x" "REPRO_CONFIGS=nope" "REPRO_DATA=a b" "REPRO_SUITES=mlp nope" \
	"REPRO_LENET_EPOCHS=0" "REPRO_LENET_RULES=bp xx" "REPRO_LENET_STEPS=-1" "REPRO_LENET_NET=none.wtn" "REPRO_LONG=yes" \
	"REPRO_LENET_WM=kp" "REPRO_LENET_WM=wm;fc*=kp"; do
	env "$bad" REPRO_OUT="$tmp/unused" tools/reproduce.sh >/dev/null 2>"$tmp/err"
	st=$?
	[ "$st" = 1 ] || fail "$bad: status $st, want 1"
	grep -q "^reproduce: " "$tmp/err" || fail "$bad: no message"
done
[ -e "$tmp/unused/README.md" ] && fail "a bad setting still wrote results"

[ "$(ls -d build/repro.* 2>/dev/null | wc -l)" = "$work_dirs" ] || fail "reproduce.sh left a work directory under build/"
[ "$fails" = 0 ]
