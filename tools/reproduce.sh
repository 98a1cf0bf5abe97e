#!/bin/sh
# make reproduce: a list of sweeps (wtnc sweep, one per configuration) that
# trains Fashion-MNIST networks under every learning rule and
# writes docs/results/. Two suites:
#
#   mlp    examples/fashion_mlp.wtn (784-1000-1000-10 relu) under every rule
#          alone and under per-layer mixes: docs/results/README.md (tables,
#          command, date, machine), accuracy.svg, angle.svg, delta_angle.svg
#          and the metrics JSON lines of every run under runs/.
#   lenet  tools/lenet_repro.wtn (the layers of examples/lenet.wtn, with
#          biotorch's batch, momentum and weight decay) under every rule
#          alone, every conv and dense layer with the same rule, beside the
#          published biotorch errors: docs/results/lenet/ (README.md, the
#          same three plots, runs/), and a LeNet section at the end of
#          docs/results/README.md.
#
# A configuration that fails to compile or train is reported as an ERROR in
# the output and in the README, and the script then exits 1.
#
# Environment:
#   REPRO_SUITES       suites to run, in this order: mlp, lenet (default: both)
#   REPRO_SEEDS        seeds per configuration, 1..N (default 3)
#   REPRO_THREADS      --threads of the training binaries (default: the binary's)
#   REPRO_OUT          output directory (default docs/results)
#   REPRO_DATA         --data of the training binaries (default: the files',
#                      Fashion-MNIST)
#   REPRO_SWEEPS       where the configurations' sweeps keep their runs and
#                      compiled networks (default build/repro-sweeps): run
#                      again, an interrupted reproduce trains only what is
#                      missing, and an unchanged network is not recompiled
#   mlp:
#   REPRO_EPOCHS       epochs per run (default 5)
#   REPRO_CONFIGS      space-separated configuration names to run (default: all)
#   REPRO_NET          the network file (default examples/fashion_mlp.wtn; its
#                      layers must be h1, h2 and out)
#   lenet:
#   REPRO_LENET_EPOCHS epochs per run (default 4: see lenet_default_epochs)
#   REPRO_LENET_RULES  space-separated rules to run (default: all eight)
#   REPRO_LENET_NET    the network file (default tools/lenet_repro.wtn)
#   REPRO_LENET_STEPS  stop each run after N training steps (--steps; for
#                      quick checks; default: whole epochs)
#   REPRO_LENET_WM     the feedback the lenet suite's wm runs use: a wm entry
#                      for every layer, then optionally ;PATTERN=wm(ARGS)
#                      entries for some layers (default: a fast mirror with
#                      larger noise batches for the dense layers, see
#                      docs/rules.md, weight mirror on LeNet)
#   REPRO_LONG=1       the long suite: defaults become 20 MLP epochs, 30 LeNet
#                      epochs, 3 seeds and REPRO_OUT=docs/results/long (each
#                      still overridable). About 3.5 hours on 2 idle cores,
#                      scaled from the timings below.
set -u
set -f   # '*=RULE' is a feedback pattern, never a file name
cd "$(dirname "$0")/.." || exit 1

# Measured on the 2 cores here (shared, load about 2.5): one LeNet epoch
# (60,000 images at batch 64, then the test set) takes about 4 s under every
# rule but wm, which takes about 7.5 times that (its mirror steps); an epoch
# of the eight rules is about 1 minute, so 4 epochs x 3 seeds is about 11
# minutes. With the mlp suite's defaults (about 28 minutes: 112 s per epoch
# and seed for its 14 configurations) `make reproduce` takes about 40
# minutes, less on idle cores.
lenet_default_epochs=4
lenet_all_rules="bp fa dfa usf brsf frsf kp wm"
# biotorch (Sanfiz and Akrout 2021), LeNet on Fashion-MNIST, 100 epochs:
# top-1 test error %.
lenet_published='
bp 9.20
fa 13.06
dfa 12.81
usf 9.69
brsf 10.02
frsf 9.61
'

if [ "${REPRO_LONG:-0}" = 1 ]; then
	: "${REPRO_EPOCHS:=20}" "${REPRO_LENET_EPOCHS:=30}" "${REPRO_SEEDS:=3}" "${REPRO_OUT:=docs/results/long}"
elif [ "${REPRO_LONG:-0}" != 0 ]; then
	echo "reproduce: REPRO_LONG must be 0 or 1 (got '$REPRO_LONG')" >&2
	exit 1
fi
suites=${REPRO_SUITES:-mlp lenet}
seeds=${REPRO_SEEDS:-3}
epochs=${REPRO_EPOCHS:-5}
lenet_epochs=${REPRO_LENET_EPOCHS:-$lenet_default_epochs}
out=${REPRO_OUT:-docs/results}
net=${REPRO_NET:-examples/fashion_mlp.wtn}
lenet_net=${REPRO_LENET_NET:-tools/lenet_repro.wtn}
lenet_rules=${REPRO_LENET_RULES:-$lenet_all_rules}

die() { echo "reproduce: $*" >&2; exit 1; }
lenet_wm=${REPRO_LENET_WM:-wm(rate=0.5,decay=0.5,batch=16);fc*=wm(rate=0.5,decay=0.5,batch=1024);out=wm(rate=0.5,decay=0.5,batch=512)}
case $lenet_wm in *[[:space:]]*) die "REPRO_LENET_WM must not contain spaces" ;; esac
# The first entry is every layer's; each later one is PATTERN=wm or PATTERN=wm(ARGS).
lenet_wm_all=${lenet_wm%%;*}
lenet_wm_more=$(echo "$lenet_wm" | sed -n 's/^[^;]*;//p' | tr ';' ' ')
[ "$lenet_wm_all" != "$lenet_wm" ] || lenet_wm_more=""
case $lenet_wm_all in wm | wm\(*\)) ;; *) die "REPRO_LENET_WM must start with wm or wm(ARGS) (got '$lenet_wm')" ;; esac
for e in $lenet_wm_more; do
	case $e in ?*=wm | ?*=wm\(*\)) ;; *) die "REPRO_LENET_WM: '$e' is not PATTERN=wm or PATTERN=wm(ARGS)" ;; esac
done
is_count() { case $1 in '' | *[!0-9]*) return 1 ;; *) [ "$1" -ge 1 ] 2>/dev/null ;; esac; }
in_list() { case " $2 " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }   # WORD LIST
wants() { in_list "$1" "$suites"; }
for s in $suites; do
	in_list "$s" "mlp lenet" || die "REPRO_SUITES: unknown suite '$s' (known: mlp lenet)"
done
[ -n "$(printf "%s" "$suites" | tr -d " \t\n")" ] || die "REPRO_SUITES names no suite (known: mlp lenet)"
is_count "$seeds" || die "REPRO_SEEDS must be a whole number >= 1 (got '$seeds')"
is_count "$epochs" || die "REPRO_EPOCHS must be a whole number >= 1 (got '$epochs')"
is_count "$lenet_epochs" || die "REPRO_LENET_EPOCHS must be a whole number >= 1 (got '$lenet_epochs')"
for r in $lenet_rules; do
	in_list "$r" "$lenet_all_rules" || die "REPRO_LENET_RULES: unknown rule '$r' (known: $lenet_all_rules)"
done
[ -n "$(printf "%s" "$lenet_rules" | tr -d " \t\n")" ] || die "REPRO_LENET_RULES names no rule"
steps_opt=""
if [ -n "${REPRO_LENET_STEPS:-}" ]; then
	is_count "$REPRO_LENET_STEPS" || die "REPRO_LENET_STEPS must be a whole number >= 1"
	steps_opt="--steps $REPRO_LENET_STEPS"
fi
threads_opt=""
if [ -n "${REPRO_THREADS:-}" ]; then
	is_count "$REPRO_THREADS" || die "REPRO_THREADS must be a whole number >= 1"
	threads_opt="--threads $REPRO_THREADS"
fi
data_opt=""
case ${REPRO_DATA:-} in *[[:space:]]*) die "REPRO_DATA must not contain spaces" ;; esac
[ -z "${REPRO_DATA:-}" ] || data_opt="--data $REPRO_DATA"
! wants mlp || [ -f "$net" ] || die "no network file $net"
! wants lenet || [ -f "$lenet_net" ] || die "no network file $lenet_net"
if ! [ -x build/wtnc ] || ! [ -f build/libwtnrt.a ] || ! [ -f build/wtn_main.o ]; then
	die "build/wtnc and the runtime are missing: run 'make all' first"
fi

# NAME and per-layer rules (the layers of examples/fashion_mlp.wtn), in the
# syntax of a feedback entry. Every rule alone with its defaults; kp with the
# optimiser's weight decay (1e-4) barely shrinks W - B in a few epochs, so
# kp-decay gives it its own decay (which also shrinks W), kp-steps a strong
# one for the first epoch only (docs/rules.md); 'example' is the mix the example file
# declares, spelled out so that it stays put if the file changes.
all_configs='
bp            h1=bp h2=bp out=bp
fa            h1=fa h2=fa out=fa
usf           h1=usf h2=usf out=usf
frsf          h1=frsf h2=frsf out=frsf
brsf          h1=brsf h2=brsf out=brsf
kp            h1=kp h2=kp out=kp
kp-decay      h1=kp(decay=0.01) h2=kp(decay=0.01) out=kp(decay=0.01)
kp-steps      h1=kp(decay=0.1,decay_steps=469) h2=kp(decay=0.1,decay_steps=469) out=kp(decay=0.1,decay_steps=469)
wm            h1=wm h2=wm out=wm
dfa           h1=dfa h2=dfa out=dfa
mix-bp-kp-wm  h1=bp h2=kp out=wm
mix-fa-wm-kp  h1=fa h2=wm out=kp
mix-usf-fa-bp h1=usf h2=fa out=bp
example       h1=fa h2=wm out=kp(decay=0.1,decay_steps=469)
'
mlp_configs=$(echo "$all_configs" | awk 'NF')
if [ -n "${REPRO_CONFIGS:-}" ]; then
	for want in $REPRO_CONFIGS; do
		echo "$mlp_configs" | awk -v w="$want" '$1 == w { found = 1 } END { exit !found }' ||
			die "REPRO_CONFIGS: unknown configuration '$want' (known: $(echo "$mlp_configs" | awk '{ printf "%s ", $1 }'))"
	done
	mlp_configs=$(echo "$mlp_configs" | awk -v list=" $REPRO_CONFIGS " 'index(list, " " $1 " ")')
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
minutes() { awk -v s="$1" 'BEGIN { printf "%dm%02ds", s / 60, s % 60 }'; }
# The test accuracy of the last line of a metrics file.
last_acc() { tail -n 1 "$1" | sed -n 's/.*"test_acc":\([-0-9.e+]*\).*/\1/p'; }

mkdir -p build "$out" || exit 1
# Every configuration of a suite is a `wtnc sweep` over the seeds, kept per
# output directory (two outputs never share runs).
sweeps_root=${REPRO_SWEEPS:-build/repro-sweeps}
sweeps=$sweeps_root/$(printf '%s' "$(cd "$out" && pwd)" | cksum | cut -d ' ' -f 1)
# Binaries, manifests and tables are temporary: two runs never share them.
work=$(mktemp -d build/repro.XXXXXX) || die "cannot make a work directory under build/"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
cc -std=gnu11 -O2 -Wall -Wextra -o "$work/plot" tools/plot.c -lm || die "tools/plot.c does not compile"

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
ncpu=$(nproc)
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
started=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
# The command that reruns one suite with this run's settings.
threads_env="${REPRO_THREADS:+ REPRO_THREADS=$REPRO_THREADS}"
data_env="${REPRO_DATA:+ REPRO_DATA=$REPRO_DATA}"
mlp_command="REPRO_SUITES=mlp REPRO_SEEDS=$seeds REPRO_EPOCHS=$epochs${REPRO_CONFIGS:+ REPRO_CONFIGS=\"$REPRO_CONFIGS\"}$threads_env${REPRO_NET:+ REPRO_NET=$REPRO_NET}$data_env tools/reproduce.sh"
lenet_command="REPRO_SUITES=lenet REPRO_SEEDS=$seeds REPRO_LENET_EPOCHS=$lenet_epochs${REPRO_LENET_RULES:+ REPRO_LENET_RULES=\"$REPRO_LENET_RULES\"}$threads_env${REPRO_LENET_NET:+ REPRO_LENET_NET=$REPRO_LENET_NET}${REPRO_LENET_STEPS:+ REPRO_LENET_STEPS=$REPRO_LENET_STEPS}${REPRO_LENET_WM:+ REPRO_LENET_WM='$REPRO_LENET_WM'}$data_env tools/reproduce.sh"

# The parametric (conv and dense) layers of a network file, from its IR.
param_layers() {
	build/wtnc "$1" --emit-ir 2>/dev/null |
		awk '/^layer / && / W=[0-9]/ { for (i = 2; i <= NF; i++) if ($i ~ /^name=/) printf "%s ", substr($i, 6) }'
}

# The LeNet configurations: one per rule, its spec naming every parametric
# layer (for the tables and plots); the binary gets the rule by pattern.
lenet_configs=""
if wants lenet; then
	layers=$(param_layers "$lenet_net")
	[ -n "$layers" ] || layers="?"   # it does not compile: every rule will say why
	for r in $lenet_rules; do
		spec=""
		for l in $layers; do spec="$spec $l=$r"; done
		lenet_configs="$lenet_configs
$r$spec"
	done
	lenet_configs=$(echo "$lenet_configs" | awk 'NF')
fi

# wtnc's --feedback options of a configuration of a suite.
config_flags() {   # SUITE NAME SPEC
	if [ "$1" = lenet ]; then
		entry=$2 more=""
		if [ "$2" = wm ]; then
			entry=$lenet_wm_all
			for e in $lenet_wm_more; do more="$more --feedback $e"; done
		fi
		echo "--feedback default=$entry --feedback *=$entry$more"
		return
	fi
	flags=""
	for item in $3; do flags="$flags --feedback $item"; done
	echo "$flags"
}

# Time estimate: one all-bp epoch of each suite's network, measured now,
# times the epochs to run, each weighted by its configuration's cost relative
# to bp. Measured on 2 cores: in the MLP a wm layer on a 1000-wide input (h1,
# h2) adds about one epoch's cost per epoch (its mirror step after every
# training step, and the warmup); in LeNet an all-wm epoch costs about 7.5
# all-bp epochs; the other rules cost about what bp does.
cost_weights() {   # SUITE CONFIGS
	if [ "$1" = lenet ]; then
		echo "$2" | awk '{ s += ($1 == "wm") ? 7.5 : 1 } END { print s }'
		return
	fi
	echo "$2" | awk '{ w = 1; for (i = 2; i <= NF; i++) if ($i ~ /=wm($|\()/ && $i !~ /^out=/) w += 1; s += w } END { print s }'
}
suite_net() { if [ "$1" = lenet ]; then echo "$lenet_net"; else echo "$net"; fi; }
suite_epochs() { if [ "$1" = lenet ]; then echo "$lenet_epochs"; else echo "$epochs"; fi; }
suite_configs() { if [ "$1" = lenet ]; then echo "$lenet_configs"; else echo "$mlp_configs"; fi; }
suite_steps() { if [ "$1" = lenet ]; then echo "$steps_opt"; fi; }

# shellcheck disable=SC2086
echo "reproduce: suites: $(printf "%s " $suites | sed "s/ $//"); $seeds seeds; $ncpu CPUs ($cpu)"
total_estimate=0
for s in $suites; do
	cfgs=$(suite_configs "$s")
	n=$(echo "$cfgs" | wc -l)
	e=$(suite_epochs "$s")
	t0=$(now)
	# shellcheck disable=SC2046,SC2086
	if build/wtnc "$(suite_net "$s")" $(config_flags "$s" bp "$(echo "$cfgs" | awk 'NR == 1 { $1 = ""; gsub(/=[^ ]*/, "=bp"); print }')") \
		-o "$work/calibrate-$s" </dev/null >/dev/null 2>&1 &&
		"$work/calibrate-$s" train --epochs 1 --seed 1 $(suite_steps "$s") $threads_opt $data_opt </dev/null >/dev/null 2>&1; then
		epoch_secs=$(elapsed "$t0")
		est=$(awk -v t="$epoch_secs" -v w="$(cost_weights "$s" "$cfgs")" -v n="$((seeds * e))" 'BEGIN { print t * w * n }')
		total_estimate=$(awk -v a="$total_estimate" -v b="$est" 'BEGIN { print a + b }')
		echo "reproduce: $s: $n configurations x $seeds seeds x $e epochs; one all-bp epoch takes ${epoch_secs}s; estimated $(minutes "$est")"
	else
		echo "reproduce: $s: ERROR: the all-bp timing run failed; no time estimate (the runs below will show why)" >&2
	fi
done
echo "reproduce: estimated total $(minutes "$total_estimate") (a wm layer counted as its measured extra cost)"

# Prints the first error-looking line of a log, else its last line, on one line.
first_error() {
	line=$(grep -m 1 -E "^wtn: |error" "$1")
	[ -n "$line" ] || line=$(tail -n 1 "$1")
	printf '%s' "$line" | tr '\t\r' '  '
}

errors=0
report_error() {   # MANIFEST NAME SEED MESSAGE
	errors=$((errors + 1))
	suite_errors=$((suite_errors + 1))
	echo "reproduce: ERROR: $2 (seed $3): $4" >&2
	printf 'error\t%s\t%s\t%s\n' "$2" "$3" "$4" >>"$1"
}

# Trains every configuration of a suite, every seed, into DIR/runs/ and
# writes the manifest; sets suite_secs and suite_errors.
run_suite() {   # SUITE DIR MANIFEST
	suite=$1 dir_out=$2 manifest=$3
	s_net=$(suite_net "$suite")
	s_epochs=$(suite_epochs "$suite")
	s_configs=$(suite_configs "$suite")
	s_n=$(echo "$s_configs" | wc -l)
	# Fresh results: old runs of configurations no longer run must not linger.
	rm -rf "$dir_out/runs"
	mkdir -p "$dir_out/runs" || exit 1
	: >"$manifest"
	suite_errors=0
	done_epochs=0   # epochs run or given up on
	run_epochs=0    # epochs that took training time
	t_start=$(now)
	while read -r name spec; do
		printf 'config\t%s\t%s\n' "$name" "$spec" >>"$manifest"
		if [ "$suite" = lenet ]; then
			pub=$(echo "$lenet_published" | awk -v r="$name" '$1 == r { print $2 }')
			[ -z "$pub" ] || printf 'published\t%s\t%s\n' "$name" "$pub" >>"$manifest"
		fi
		dir=$dir_out/runs/$name
		mkdir -p "$dir"
		# One sweep per configuration, over the seeds: its network compiles
		# once into the shared cache, and after an interruption the same
		# command trains only the runs it had not finished.
		sdir=$sweeps/$suite/$name
		t0=$(now)
		# shellcheck disable=SC2046,SC2086
		build/wtnc sweep "$s_net" $(config_flags "$suite" "$name" "$spec") --name "$name" --seeds "$seeds" \
			--epochs "$s_epochs" $(suite_steps "$suite") $threads_opt $data_opt --jobs 1 \
			--cache "$sweeps_root/bin" -o "$sdir" </dev/null >"$dir/sweep.log" 2>&1
		if ! [ -f "$sdir/plan.tsv" ] || grep -q "does not compile" "$dir/sweep.log"; then
			report_error "$manifest" "$name" - "wtnc: $(first_error "$dir/sweep.log")"
			done_epochs=$((done_epochs + seeds * s_epochs))
			continue
		fi
		# Warnings are worth keeping; the sweep's own lines are not.
		grep -v "^wtnc sweep: " "$dir/sweep.log" >"$dir/compile.log"
		rm -f "$dir/sweep.log"
		[ -s "$dir/compile.log" ] || rm -f "$dir/compile.log"
		seed=1
		while [ "$seed" -le "$seeds" ]; do
			jsonl=$dir/seed$seed.jsonl
			log=$dir/seed$seed.log
			if [ -f "$sdir/runs/$name/seed$seed.jsonl" ]; then
				cp "$sdir/runs/$name/seed$seed.jsonl" "$jsonl"
				secs=$(sed -n 's/^seconds //p' "$sdir/runs/$name/seed$seed.key")
				printf 'run\t%s\t%s\t%s\t%s\n' "$name" "$seed" "${secs:-0}" "$jsonl" >>"$manifest"
				status="test acc $(last_acc "$jsonl")%"
			else
				cp "$sdir/runs/$name/seed$seed.log" "$log" 2>/dev/null || echo "no log" >"$log"
				report_error "$manifest" "$name" "$seed" "train: $(first_error "$log")"
				status="FAILED (see $log)"
			fi
			done_epochs=$((done_epochs + s_epochs))
			run_epochs=$((run_epochs + s_epochs))
			seed=$((seed + 1))
		done
		left=$(awk -v t="$(elapsed "$t_start")" -v r="$run_epochs" -v d="$done_epochs" \
			-v all="$((s_n * seeds * s_epochs))" 'BEGIN { printf "%d", r ? t / r * (all - d) : 0 }')
		echo "reproduce: $suite: $name: $seeds seeds in $(elapsed "$t0")s, last $status (about $(minutes "$left") left in this suite)"
	done <<EOF
$s_configs
EOF
	suite_secs=$(elapsed "$t_start")
}

# The train line of a network's IR without the epochs and seed the script sets.
train_line() { grep "^train " "$1" | sed "s/ epochs=[0-9]*//; s/ seed=[0-9]*//"; }
ir_field() { grep "^train " "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }   # IR FIELD

# Between this marker and the end, docs/results/README.md holds the LeNet
# section: the mlp suite keeps it, the lenet suite replaces it.
marker='<!-- lenet section: written by the lenet suite of tools/reproduce.sh -->'
readme=$out/README.md
old_lenet_section() {   # with the blank line that leads it
	[ -f "$readme" ] && grep -qxF -- "$marker" "$readme" || return 0
	echo
	sed -n "\\|^$marker\$|,\$p" "$readme"
}

write_mlp() {
	ir=$work/mlp.ir
	build/wtnc "$net" --emit-ir >"$ir" 2>/dev/null || echo "(the network does not compile)" >"$ir"
	data_note=""
	[ -z "${REPRO_DATA:-}" ] || data_note=" (data overridden: --data $REPRO_DATA)"
	# "784-1000 relu-1000 relu-10 identity" from the network and layer lines.
	shape=$(awk '/^network / { for (i = 2; i <= NF; i++) { if ($i ~ /^in_units=/) s = substr($i, 10)
			if ($i ~ /^loss=/) l = substr($i, 6) } }
		/^layer / { for (i = 2; i <= NF; i++) { if ($i ~ /^out=/) o = substr($i, 5); if ($i ~ /^act=/) a = substr($i, 5) }
			s = s "-" o " " a }
		END { print s ", loss " l }' "$ir")
	tables=$work/mlp-tables.md
	"$work/plot" "$out" <"$work/mlp.tsv" >"$tables" || die "tools/plot.c failed on the mlp runs"
	{
		cat <<EOF
# Learning rules on Fashion-MNIST

Generated by \`make reproduce\` (tools/reproduce.sh); rerun it rather than
editing this file. Two suites: the MLP below, and LeNet under every rule
beside the published biotorch errors ([LeNet section](#lenet-on-fashion-mnist),
details in [lenet/](lenet/README.md)).

- command: \`$mlp_command\`
- date: $started; wall time $(minutes "$suite_secs") for the runs
- machine: $ncpu CPUs (nproc), $cpu, $(uname -sr)
- wtn: $commit
- network: $net: $shape; the rules of each configuration
  are set per layer with \`wtnc --feedback LAYER=RULE\`
- training (the file's train block): \`$(train_line "$ir")\`$data_note; epochs: $epochs; seeds: 1 to $seeds
- JSON lines of every run: [runs/](runs/) (one file per seed, one line per epoch)

EOF
		if [ "$suite_errors" -gt 0 ]; then
			echo "**$suite_errors ERROR(S)**: some configurations did not compile or train; see the"
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
		old_lenet_section
	} >"$readme.tmp" || die "cannot write $readme.tmp"
	mv "$readme.tmp" "$readme" || die "cannot write $readme"
}

write_lenet() {
	lout=$out/lenet
	ir=$work/lenet.ir
	build/wtnc "$lenet_net" --emit-ir >"$ir" 2>/dev/null || echo "(the network does not compile)" >"$ir"
	data_note=""
	[ -z "${REPRO_DATA:-}" ] || data_note=" (data overridden: --data $REPRO_DATA)"
	steps_note=""
	[ -z "$steps_opt" ] || steps_note=" (each run stopped after $REPRO_LENET_STEPS steps)"
	# "conv1 conv2d 6x28x28 relu, pool1 maxpool 6x14x14, ..." from the layer lines.
	shape=$(awk '/^layer / { n = k = o = a = ""
			for (i = 2; i <= NF; i++) {
				if ($i ~ /^name=/) n = substr($i, 6); if ($i ~ /^kind=/) k = substr($i, 6)
				if ($i ~ /^out_shape=/) o = substr($i, 11); if ($i ~ /^act=/) a = substr($i, 5) }
			s = s (s == "" ? "" : ", ") n " " k " " o (a == "identity" ? "" : " " a) }
		END { print s }' "$ir")
	batch=$(ir_field "$ir" batch) lr=$(ir_field "$ir" lr) opt=$(ir_field "$ir" optimizer)
	momentum=$(ir_field "$ir" momentum) wd=$(ir_field "$ir" weight_decay) schedule=$(ir_field "$ir" schedule)
	# Training steps of one run, and what kp's decay makes of W - B over them.
	lenet_steps=$(awk -v e="$lenet_epochs" -v b="$batch" -v s="${REPRO_LENET_STEPS:-0}" 'BEGIN {
		n = e * int((60000 + b - 1) / b); if (s > 0 && s < n) n = s; print n }')
	kp_shrink=$(awk -v n="$lenet_steps" -v lr="$lr" -v wd="$wd" 'BEGIN { printf "%.3f", (1 - lr * wd) ^ n }')
	tables=$work/lenet-tables.md
	"$work/plot" "$lout" "LeNet, Fashion-MNIST" <"$work/lenet.tsv" >"$tables" || die "tools/plot.c failed on the lenet runs"
	comparison=$work/lenet-comparison.md
	# The comparison table alone, for the section in the top README, its
	# links pointing into lenet/README.md.
	sed -n '/^## Comparison with the published errors$/,/^## Summary$/p' "$tables" | sed '1d;$d' |
		sed 's|](#|](lenet/README.md#|g' >"$comparison"
	setting=$work/lenet-setting.md
	cat >"$setting" <<EOF
Our setting is not biotorch's. Ours: $lenet_epochs epochs$steps_note (theirs: 100),
$seeds seeds (theirs: one run per rule), $opt lr $lr momentum $momentum
weight decay $wd, batch $batch, learning-rate schedule: $schedule (theirs: SGD
momentum 0.9, weight decay 1e-3, batch 64; their learning rate and schedule
are not in our reference). Network: biotorch's LeNet for MNIST takes 32x32
images, has a third conv (5x5, 120 filters) where we have fc1 (the same map
from the 16x5x5 features, also with ReLU) and no ReLU between its two dense
layers where our fc2 has one; both initialise weights as Xavier does. At a
learning rate of 0.005, fa and wm diverged within two epochs for some seeds
(and so did a PyTorch LeNet with fa on its dense layers), so ours is 0.002.
The wm runs use \`$lenet_wm\` (REPRO_LENET_WM: the first entry for every
layer, the others for the layers they match): with wm's defaults every
seed diverged in epoch 3 or 4 at 0.002, because B, an average of W over
1,000 steps, lags W (docs/rules.md, weight mirror on LeNet).
Our errors after $lenet_epochs epochs are therefore
higher than errors after 100, and our gaps between rules are those of early
training, which can differ from the gaps at the end (a rule that aligns
slowly lags more early on). kp is not in biotorch's table; with our weight
decay its W − B shrinks by the factor (1 − lr·wd)^steps = $kp_shrink over
our $lenet_steps steps (60,000 training images), so W − B stays near its
start and any alignment comes from the updates W and B share.
EOF
	{
		cat <<EOF
# LeNet on Fashion-MNIST under every learning rule

Generated by \`make reproduce\` (tools/reproduce.sh, suite lenet); rerun it
rather than editing this file. The MLP suite: [../README.md](../README.md).

- command: \`$lenet_command\`
- date: $started; wall time $(minutes "$suite_secs") for the runs
- machine: $ncpu CPUs (nproc), $cpu, $(uname -sr)
- wtn: $commit
- network: $lenet_net: $shape; every conv and dense layer
  gets the configuration's rule with \`wtnc --feedback default=RULE --feedback '*=RULE'\`
- training (the file's train block): \`$(train_line "$ir")\`$data_note; epochs: $lenet_epochs$steps_note; seeds: 1 to $seeds
- JSON lines of every run: [runs/](runs/) (one file per seed, one line per epoch)
- published: biotorch (Sanfiz and Akrout 2021), LeNet on Fashion-MNIST, top-1
  error % after 100 epochs; they report no kp or wm on LeNet.

$(cat "$setting")

EOF
		if [ "$suite_errors" -gt 0 ]; then
			echo "**$suite_errors ERROR(S)**: some rules did not compile or train; see the"
			echo "ERROR lines below and the logs under runs/."
			echo
		fi
		cat "$tables"
		cat <<'EOF'

## Plots

Lines are means over seeds, one per rule. Angle and delta angle: one panel
per conv and dense layer.

![test accuracy per epoch](accuracy.svg)

![angle between B and W per epoch](angle.svg)

![delta angle per epoch](delta_angle.svg)
EOF
	} >"$lout/README.md.tmp" || die "cannot write $lout/README.md.tmp"
	mv "$lout/README.md.tmp" "$lout/README.md" || die "cannot write $lout/README.md"

	# The section at the end of the top README (which the mlp suite writes;
	# a short header stands in when it has not run here).
	top=$work/top.md
	if [ -f "$readme" ]; then
		sed "\\|^$marker\$|,\$d" "$readme" >"$top"
	else
		# shellcheck disable=SC2016
		printf '# Learning rules on Fashion-MNIST\n\nThe MLP suite has not been run here (`REPRO_SUITES=mlp tools/reproduce.sh`).\n' >"$top"
	fi
	{
		cat "$top"
		echo
		echo "$marker"
		cat <<EOF
## LeNet on Fashion-MNIST

Every conv and dense layer of $lenet_net with the same rule, beside the
published biotorch errors; details, per-rule tables and logs:
[lenet/README.md](lenet/README.md). Command: \`$lenet_command\`; wall time
$(minutes "$suite_secs").

EOF
		if [ "$suite_errors" -gt 0 ]; then
			echo "**$suite_errors ERROR(S)**: see [lenet/README.md](lenet/README.md)."
			echo
		fi
		cat "$setting"
		echo
		cat "$comparison"
		cat <<'EOF'
![LeNet test accuracy per epoch](lenet/accuracy.svg)

![LeNet angle between B and W per epoch](lenet/angle.svg)
EOF
	} >"$readme.tmp" || die "cannot write $readme.tmp"
	mv "$readme.tmp" "$readme" || die "cannot write $readme"
}

for s in $suites; do
	if [ "$s" = lenet ]; then
		mkdir -p "$out/lenet" || exit 1
		run_suite lenet "$out/lenet" "$work/lenet.tsv"
		write_lenet
		echo "reproduce: lenet: wrote $out/lenet/README.md, its plots and the LeNet section of $readme in $(minutes "$suite_secs")"
	else
		run_suite mlp "$out" "$work/mlp.tsv"
		write_mlp
		echo "reproduce: mlp: wrote $readme, $out/accuracy.svg, $out/angle.svg, $out/delta_angle.svg in $(minutes "$suite_secs")"
	fi
done
if [ "$errors" -gt 0 ]; then
	echo "reproduce: $errors ERROR(S); see $readme and $out/lenet/README.md" >&2
	exit 1
fi
