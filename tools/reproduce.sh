#!/bin/sh
# make reproduce: trains examples/fashion_mlp.wtn (784-1000-1000-10 relu) on
# Fashion-MNIST under every learning rule alone and under per-layer mixes,
# several seeds each, and writes docs/results/: README.md (tables, command,
# date, machine), accuracy.svg, angle.svg, delta_angle.svg and the metrics
# JSON lines of every run under runs/. A configuration that fails to compile
# or train is reported as an ERROR in the output and in README.md, and the
# script then exits 1.
#
# Environment:
#   REPRO_SEEDS    seeds per configuration, 1..N (default 3)
#   REPRO_EPOCHS   epochs per run (default 5)
#   REPRO_CONFIGS  space-separated configuration names to run (default: all)
#   REPRO_THREADS  --threads of the training binary (default: the binary's)
#   REPRO_OUT      output directory (default docs/results)
#   REPRO_NET      the network file (default examples/fashion_mlp.wtn; its layers
#                  must be h1, h2 and out)
#   REPRO_DATA     --data of the training binary (default: the file's, Fashion-MNIST)
set -u
cd "$(dirname "$0")/.." || exit 1

seeds=${REPRO_SEEDS:-3}
epochs=${REPRO_EPOCHS:-5}
out=${REPRO_OUT:-docs/results}
net=${REPRO_NET:-examples/fashion_mlp.wtn}

die() { echo "reproduce: $*" >&2; exit 1; }
is_count() { case $1 in '' | *[!0-9]*) return 1 ;; *) [ "$1" -ge 1 ] 2>/dev/null ;; esac; }
is_count "$seeds" || die "REPRO_SEEDS must be a whole number >= 1 (got '$seeds')"
is_count "$epochs" || die "REPRO_EPOCHS must be a whole number >= 1 (got '$epochs')"
threads_opt=""
if [ -n "${REPRO_THREADS:-}" ]; then
	is_count "$REPRO_THREADS" || die "REPRO_THREADS must be a whole number >= 1"
	threads_opt="--threads $REPRO_THREADS"
fi
data_opt=""
case ${REPRO_DATA:-} in *[[:space:]]*) die "REPRO_DATA must not contain spaces" ;; esac
[ -z "${REPRO_DATA:-}" ] || data_opt="--data $REPRO_DATA"
[ -f "$net" ] || die "no network file $net"
if ! [ -x build/wtnc ] || ! [ -f build/libwtnrt.a ] || ! [ -f build/wtn_main.o ]; then
	die "build/wtnc and the runtime are missing: run 'make all' first"
fi

# NAME and per-layer rules (the layers of examples/fashion_mlp.wtn), in the
# syntax of a feedback entry. Every rule alone with its defaults; kp with the
# optimiser's weight decay (1e-4) barely shrinks W - B in a few epochs, so
# kp-decay gives it its own decay; 'example' is the mix the example file
# declares, spelled out so that it stays put if the file changes.
all_configs='
bp            h1=bp h2=bp out=bp
fa            h1=fa h2=fa out=fa
usf           h1=usf h2=usf out=usf
frsf          h1=frsf h2=frsf out=frsf
brsf          h1=brsf h2=brsf out=brsf
kp            h1=kp h2=kp out=kp
kp-decay      h1=kp(decay=0.01) h2=kp(decay=0.01) out=kp(decay=0.01)
wm            h1=wm h2=wm out=wm
dfa           h1=dfa h2=dfa out=dfa
mix-bp-kp-wm  h1=bp h2=kp out=wm
mix-fa-wm-kp  h1=fa h2=wm out=kp
mix-usf-fa-bp h1=usf h2=fa out=bp
example       h1=fa h2=wm out=kp(decay=0.01)
'
configs=$(echo "$all_configs" | awk 'NF')
if [ -n "${REPRO_CONFIGS:-}" ]; then
	for want in $REPRO_CONFIGS; do
		echo "$configs" | awk -v w="$want" '$1 == w { found = 1 } END { exit !found }' ||
			die "REPRO_CONFIGS: unknown configuration '$want' (known: $(echo "$configs" | awk '{ printf "%s ", $1 }'))"
	done
	configs=$(echo "$configs" | awk -v list=" $REPRO_CONFIGS " 'index(list, " " $1 " ")')
fi
nconfigs=$(echo "$configs" | wc -l)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
minutes() { awk -v s="$1" 'BEGIN { printf "%dm%02ds", s / 60, s % 60 }'; }
# The test accuracy of the last line of a metrics file.
last_acc() { tail -n 1 "$1" | sed -n 's/.*"test_acc":\([-0-9.e+]*\).*/\1/p'; }

mkdir -p build "$out" || exit 1
# Binaries, the manifest and the tables are temporary: two runs never share them.
work=$(mktemp -d build/repro.XXXXXX) || die "cannot make a work directory under build/"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
cc -std=gnu11 -O2 -Wall -Wextra -o "$work/plot" tools/plot.c -lm || die "tools/plot.c does not compile"

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
ncpu=$(nproc)
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
command="REPRO_SEEDS=$seeds REPRO_EPOCHS=$epochs${REPRO_CONFIGS:+ REPRO_CONFIGS=\"$REPRO_CONFIGS\"}${REPRO_THREADS:+ REPRO_THREADS=$REPRO_THREADS}${REPRO_NET:+ REPRO_NET=$REPRO_NET}${REPRO_DATA:+ REPRO_DATA=$REPRO_DATA} tools/reproduce.sh"
echo "reproduce: $nconfigs configurations x $seeds seeds x $epochs epochs on $ncpu CPUs ($cpu)"

# Time estimate: one epoch of the all-bp network, measured now, times the
# epochs to run, each weighted by its configuration's cost relative to bp.
# Measured on 2 cores: a wm layer on a 1000-wide input (h1, h2) adds about
# one epoch's cost per epoch (its mirror step after every training step, and the warmup); the
# other rules cost about what bp does.
cost_weights() {
	echo "$configs" | awk '{ w = 1; for (i = 2; i <= NF; i++) if ($i ~ /=wm($|\()/ && $i !~ /^out=/) w += 1; s += w } END { print s }'
}
estimate_secs=""
t0=$(now)
# shellcheck disable=SC2086
if build/wtnc "$net" --feedback h1=bp --feedback h2=bp --feedback out=bp -o "$work/calibrate" &&
	"$work/calibrate" train --epochs 1 --seed 1 $threads_opt $data_opt </dev/null >/dev/null; then
	epoch_secs=$(elapsed "$t0")
	estimate_secs=$(awk -v e="$epoch_secs" -v w="$(cost_weights)" -v n="$((seeds * epochs))" 'BEGIN { print e * w * n }')
	echo "reproduce: one all-bp epoch takes ${epoch_secs}s; estimated total $(minutes "$estimate_secs") (each wm hidden layer counted as one more epoch per epoch)"
else
	echo "reproduce: ERROR: the all-bp timing run failed; no time estimate (the runs below will show why)" >&2
fi

# Fresh results: old runs of configurations no longer run must not linger.
rm -rf "$out/runs"
mkdir -p "$out/runs" || exit 1
manifest=$work/manifest.tsv
: >"$manifest"
errors=0
done_epochs=0   # epochs run or given up on
run_epochs=0    # epochs that took training time
t_start=$(now)

# Prints the first error-looking line of a log, else its last line, on one line.
first_error() {
	line=$(grep -m 1 -E "^wtn: |error" "$1")
	[ -n "$line" ] || line=$(tail -n 1 "$1")
	printf '%s' "$line" | tr '\t\r' '  '
}

report_error() {   # NAME SEED MESSAGE
	errors=$((errors + 1))
	echo "reproduce: ERROR: $1 (seed $2): $3" >&2
	printf 'error\t%s\t%s\t%s\n' "$1" "$2" "$3" >>"$manifest"
}

while read -r name spec; do
	printf 'config\t%s\t%s\n' "$name" "$spec" >>"$manifest"
	dir=$out/runs/$name
	mkdir -p "$dir"
	flags=""
	for item in $spec; do flags="$flags --feedback $item"; done
	bin=$work/$name
	# shellcheck disable=SC2086
	if ! build/wtnc "$net" $flags -o "$bin" </dev/null >"$dir/compile.log" 2>&1; then
		report_error "$name" - "wtnc: $(first_error "$dir/compile.log")"
		done_epochs=$((done_epochs + seeds * epochs))
		continue
	fi
	# Warnings are worth keeping; an empty log is not.
	[ -s "$dir/compile.log" ] || rm -f "$dir/compile.log"
	seed=1
	while [ "$seed" -le "$seeds" ]; do
		jsonl=$dir/seed$seed.jsonl
		log=$dir/seed$seed.log
		t0=$(now)
		# shellcheck disable=SC2086
		if "$bin" train --seed "$seed" --epochs "$epochs" $threads_opt $data_opt --metrics "$jsonl" </dev/null >"$log" 2>&1; then
			secs=$(elapsed "$t0")
			printf 'run\t%s\t%s\t%s\t%s\n' "$name" "$seed" "$secs" "$jsonl" >>"$manifest"
			rm -f "$log"
			status="test acc $(last_acc "$jsonl")%"
		else
			secs=$(elapsed "$t0")
			report_error "$name" "$seed" "train: $(first_error "$log")"
			status="FAILED (see $log)"
		fi
		done_epochs=$((done_epochs + epochs))
		run_epochs=$((run_epochs + epochs))
		left=$(awk -v t="$(elapsed "$t_start")" -v r="$run_epochs" -v d="$done_epochs" \
			-v all="$((nconfigs * seeds * epochs))" 'BEGIN { printf "%d", t / r * (all - d) }')
		echo "reproduce: $name seed $seed: $status in ${secs}s (about $(minutes "$left") left)"
		seed=$((seed + 1))
	done
done <<EOF
$configs
EOF
total=$(elapsed "$t_start")

ir=$work/net.ir
build/wtnc "$net" --emit-ir >"$ir" 2>/dev/null || echo "(the network does not compile)" >"$ir"
train_line=$(grep "^train " "$ir" | sed "s/ epochs=[0-9]*//; s/ seed=[0-9]*//")
data_note=""
[ -z "${REPRO_DATA:-}" ] || data_note=" (data overridden: --data $REPRO_DATA)"
# "784-1000 relu-1000 relu-10 identity" from the input and layer lines.
shape=$(awk '/^input / { for (i = 2; i <= NF; i++) if ($i ~ /^units=/) s = substr($i, 7) }
	/^layer / { for (i = 2; i <= NF; i++) { if ($i ~ /^out=/) o = substr($i, 5); if ($i ~ /^act=/) a = substr($i, 5) }
		s = s "-" o " " a }
	/^loss / { for (i = 2; i <= NF; i++) if ($i ~ /^kind=/) l = substr($i, 6) }
	END { print s ", loss " l }' "$ir")
tables=$work/tables.md
"$work/plot" "$out" <"$manifest" >"$tables" || die "tools/plot.c failed on the runs"

readme=$out/README.md
{
	cat <<EOF
# Learning rules on Fashion-MNIST

Generated by \`make reproduce\` (tools/reproduce.sh); rerun it rather than
editing this file.

- command: \`$command\`
- date: $started; wall time $(minutes "$total") for the runs
- machine: $ncpu CPUs (nproc), $cpu, $(uname -sr)
- wtn: $commit
- network: $net: $shape; the rules of each configuration
  are set per layer with \`wtnc --feedback LAYER=RULE\`
- training (the file's train block): \`$train_line\`$data_note; epochs: $epochs; seeds: 1 to $seeds
- JSON lines of every run: [runs/](runs/) (one file per seed, one line per epoch)

EOF
	if [ "$errors" -gt 0 ]; then
		echo "**$errors ERROR(S)**: some configurations did not compile or train; see the"
		echo "ERROR lines below and the logs under runs/."
		echo
	fi
	cat "$tables"
	cat <<'EOF'

## Plots

Lines are means over seeds; dashed lines are per-layer mixes (rules of
h1/h2/out). Angle and delta angle: one panel per layer.

![test accuracy per epoch](accuracy.svg)

![angle between B and W per epoch](angle.svg)

![delta angle per epoch](delta_angle.svg)

## Published numbers, for scale

Not the same setting: biotorch (Sanfiz and Akrout 2021) trains LeNet for
100 epochs (SGD momentum 0.9, weight decay 1e-3, batch 64). Fashion-MNIST
top-1 error %: bp 9.20, fa 13.06, dfa 12.81, usf 9.69, brsf 10.02, frsf 9.61.
Akrout et al. (2019) report end-of-training angles between B and W at the
output layer of MNIST MLPs of about 40° for fa and about 4° for wm and kp.
EOF
} >"$readme.tmp" || die "cannot write $readme.tmp"
mv "$readme.tmp" "$readme" || die "cannot write $readme"

echo "reproduce: wrote $readme, $out/accuracy.svg, $out/angle.svg, $out/delta_angle.svg in $(minutes "$total")"
if [ "$errors" -gt 0 ]; then
	echo "reproduce: $errors ERROR(S); see $readme" >&2
	exit 1
fi
