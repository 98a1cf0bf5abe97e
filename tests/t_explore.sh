#!/bin/sh
# t_explore.sh: exploring without recompiling and sweeps. --set changes a
# run exactly as editing the file and recompiling does (checkpoints equal
# byte for byte); bad settings; runs that describe themselves (metrics,
# checkpoints, eval, --version); readable output (summary epoch line,
# --layers, --quiet, --log-every, info); `wtnc sweep`: one compile per
# network, a rerun does nothing, a killed sweep finishes on the next run.
cd "$(dirname "$0")/.." || exit 1
WTNC=${WTNC:-build/wtnc}
T=$(mktemp -d /tmp/wtn_explore.XXXXXX) || exit 1
SWEEP_PID=""
trap '[ -z "$SWEEP_PID" ] || kill -9 "$SWEEP_PID" 2>/dev/null; rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL t_explore: $*"; fail=1; }
has() { grep -qF -- "$2" "$1" || bad "$1 lacks '$2': $(head -c 400 "$1")"; }

cc() {   # OUT FILE ARGS...: compile or give up
	out=$1
	shift
	$WTNC "$@" -o "$T/$out" >"$T/cc.out" 2>&1 || { bad "wtnc $*: $(head -3 "$T/cc.out")"; return 1; }
}

# The tensors of a safetensors file: everything after its JSON header
# (whose metadata names the run and so differs between the two runs).
tensors() {
	n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
	tail -c +$((9 + n)) "$1"
}
same_tensors() {   # A B WHAT
	tensors "$1" >"$T/a.bin" && tensors "$2" >"$T/b.bin" && [ -s "$T/a.bin" ] &&
		cmp -s "$T/a.bin" "$T/b.bin" || bad "$3: the checkpoints' tensors differ"
}

# ---- --set against an edited, recompiled file ----
tiny=tests/runtime/tiny.wtn
sed 's/momentum=0.9/momentum=0.5/' $tiny >"$T/tiny_m05.wtn"
sed 's/sgd(lr=0.05, momentum=0.9)/sgd(lr=0.05, momentum=0.9, weight_decay=0.001)/; s/seed      3/seed      3\n    schedule  step(every=1, gamma=0.5)/' \
	$tiny >"$T/tiny_wd.wtn"
grep -q "momentum=0.5" "$T/tiny_m05.wtn" && grep -q "gamma=0.5" "$T/tiny_wd.wtn" || bad "sed did not edit the test networks"
if cc tiny $tiny && cc tiny_m05 "$T/tiny_m05.wtn" && cc tiny_wd "$T/tiny_wd.wtn"; then
	run() {
		bin=$1
		shift
		"$T/$bin" train --threads 1 --epochs 2 --steps 90 "$@" >"$T/run.out" 2>&1 || bad "$bin $*: $(cat "$T/run.out")"
	}
	run tiny --set momentum=0.5 --save "$T/set.st" --metrics "$T/set.jsonl"
	run tiny_m05 --save "$T/edit.st"
	same_tensors "$T/set.st" "$T/edit.st" "--set momentum=0.5 vs momentum=0.5 in the file"
	run tiny --set weight_decay=0.001 --set schedule=step --set step_every=1 --set gamma=0.5 --save "$T/set2.st"
	run tiny_wd --save "$T/edit2.st"
	same_tensors "$T/set2.st" "$T/edit2.st" "--set weight_decay, schedule step vs the same in the file"
	# A batch above the compiled one: buffers are planned at start-up.
	sed 's/batch     32/batch     64/' $tiny >"$T/tiny_b64.wtn"
	if grep -q "batch     64" "$T/tiny_b64.wtn" && cc tiny_b64 "$T/tiny_b64.wtn"; then
		run tiny --batch 64 --save "$T/b64set.st"
		run tiny_b64 --save "$T/b64edit.st"
		same_tensors "$T/b64set.st" "$T/b64edit.st" "--batch 64 on a batch-32 binary vs batch 64 in the file"
	fi
	# The setting must matter: momentum 0.9 ends elsewhere.
	run tiny --save "$T/base.st"
	tensors "$T/base.st" >"$T/a.bin"
	tensors "$T/set.st" >"$T/b.bin"
	! cmp -s "$T/a.bin" "$T/b.bin" || bad "--set momentum=0.5 changed nothing"
	# Rule arguments: the weight mirror's schedule (runtime logic) and the
	# arguments the kernels read (kp's decay, wm's noise, rate and decay).
	if cc wm1 $tiny --feedback "out=wm(warmup=5)" &&
		cc wm3 $tiny --feedback "out=wm(warmup=5, every=3, noise=0.5, rate=0.01, decay=0.01)"; then
		run wm1 --set 'o*.every=3' --set out.noise=0.5 --set 'o*.rate=0.01' --set out.decay=0.01 \
			--save "$T/wmset.st"
		run wm3 --save "$T/wmedit.st"
		same_tensors "$T/wmset.st" "$T/wmedit.st" "--set out's every, noise, rate, decay vs wm(...) in the file"
	fi
	if cc kp0 $tiny --feedback "h=kp(decay=0.01)" --feedback "out=kp(decay=0.01)" &&
		cc kp1 $tiny --feedback "h=kp(decay=0.001)" --feedback "out=kp(decay=0.01)"; then
		run kp0 --set h.decay=0.001 --save "$T/kpset.st" --metrics "$T/kpset.jsonl"
		run kp1 --save "$T/kpedit.st"
		same_tensors "$T/kpset.st" "$T/kpedit.st" "--set h.decay=0.001 vs kp(decay=0.001) in the file"
		run kp0 --save "$T/kpbase.st"
		tensors "$T/kpbase.st" >"$T/a.bin"
		tensors "$T/kpset.st" >"$T/b.bin"
		! cmp -s "$T/a.bin" "$T/b.bin" || bad "--set h.decay=0.001 changed nothing"
		head -n 1 "$T/kpset.jsonl" >"$T/first"
		has "$T/first" '"set":["h.decay=0.001"]'
		has "$T/first" '"decay":0.001'
		"$T/kp0" info --set 'h.decay=0.001' >"$T/info" 2>&1 || bad "info --set: $(cat "$T/info")"
		grep -q 'kp(decay=0.001' "$T/info" || bad "info does not show h's decay in force: $(cat "$T/info")"
	fi

	# ---- bad settings: one line, exit 1 ----
	expect_set() {   # TEXT ARGS...
		text=$1
		shift
		"$T/tiny" "$@" >"$T/out" 2>"$T/err"
		st=$?
		[ "$st" = 1 ] || bad "$*: exit $st, expected 1"
		grep -qF -- "$text" "$T/err" || bad "$*: stderr lacks '$text': $(cat "$T/err")"
		[ "$(wc -l <"$T/err")" = 1 ] || bad "$*: not one line on stderr: $(cat "$T/err")"
	}
	expect_set "unknown setting 'momentom'; did you mean 'momentum'?" --set momentom=0.5
	expect_set "unknown setting 'learning_rate'" --set learning_rate=0.1
	expect_set "'fast' is not a number" --set lr=fast
	expect_set "--set momentum=1: 1 out of range" --set momentum=1
	expect_set "expected a batch size from 1 to 1048576" --set batch=2000000
	expect_set "unknown schedule 'cosin'; did you mean 'cosine'?" --set schedule=cosin
	expect_set "beta1 is adam's; this binary was compiled with sgd" --set beta1=0.8
	expect_set "nesterov is compiled into this binary's update kernels" --set nesterov=1
	expect_set "crop_pad moves pixels: the input x is a vector" --set crop_pad=2
	expect_set "no layer with a feedback rule matches 'hh'; did you mean 'h'?" --set hh.every=2
	expect_set "the rule of the layers matching 'out' (fa) has no argument 'every' (it takes no arguments)" --set out.every=2
	expect_set "expected KEY=VALUE" --set lr
	cc tiny_m0 $tiny --feedback out=kp && sed 's/momentum=0.9/momentum=0/' $tiny >"$T/m0.wtn" &&
		cc tiny_m0 "$T/m0.wtn" && {
		"$T/tiny_m0" --set momentum=0.5 >"$T/out" 2>"$T/err"
		[ $? = 1 ] && grep -qF "compiled with momentum 0, so its update kernels keep no momentum buffers" "$T/err" ||
			bad "--set momentum on a binary without momentum buffers: $(cat "$T/err")"
	}
	# rule arguments: the rule's own names and ranges, all or nothing
	if [ -x "$T/wm1" ]; then
		cp "$T/wm1" "$T/tiny_save" && cp "$T/tiny" "$T/tiny_keep" && cp "$T/wm1" "$T/tiny"
		expect_set "the rule of the layers matching 'out' (wm) has no argument 'nosie'; did you mean 'noise'?" --set out.nosie=0.5
		expect_set "no layer with a feedback rule matches 'ot'; did you mean 'out'?" --set ot.noise=0.5
		expect_set "wm's decay on layer out must be in [0, 1), not 1.5" --set out.decay=1.5
		expect_set "wm's every on layer out must be a positive whole number, not 2.5" --set 'o*.every=2.5'
		expect_set "'loud' is not a number (wm's noise on layer out: positive)" --set out.noise=loud
		expect_set "wm's batch on layer out must be a positive whole number, not 0" --set out.batch=0
		cp "$T/tiny_keep" "$T/tiny"
	fi
	cc tiny_kp $tiny --feedback "h=kp(decay=0.01)" --feedback "out=kp(decay=0.01)" && {
		"$T/tiny_kp" --set '*.decay=-2' >"$T/out" 2>"$T/err"
		[ $? = 1 ] && grep -qF "kp's decay on layer h must be zero or positive (or -1 for the optimizer's weight_decay), not -2" "$T/err" ||
			bad "--set of a bad kp decay: $(cat "$T/err")"
		"$T/tiny_kp" --set 'h.noise=1' >"$T/out" 2>"$T/err"
		[ $? = 1 ] && grep -qF "the rule of the layers matching 'h' (kp) has no argument 'noise' (decay, decay_steps)" "$T/err" ||
			bad "--set of another rule's argument: $(cat "$T/err")"
	}
	"$T/tiny" --set help >"$T/out" 2>&1 && grep -q '^  momentum .*\[0.9\]' "$T/out" ||
		bad "--set help does not list momentum with its compiled value: $(head -5 "$T/out")"

	# ---- self-describing runs ----
	head -n 1 "$T/set.jsonl" >"$T/first"
	for want in '{"config":{"wtn":"' '"network":"tiny"' '"network_hash":"' '"name":"out","kind":"dense","rule":"fa"' \
		'"momentum":0.5' '"seed":3' '"set":["momentum=0.5"]' '"threads":1' '"data_source":"synthetic' '"cpu":"' '"blas":"OpenBLAS'; do
		has "$T/first" "$want"
	done
	n=$(od -An -t u8 -N 8 "$T/set.st" | tr -d ' ')
	head -c $((8 + n)) "$T/set.st" | tail -c "$n" >"$T/header"
	has "$T/header" '"wtn_config":"{\"wtn\":\"'
	has "$T/header" '\"momentum\":0.5'
	"$T/tiny" eval --init "$T/set.st" --threads 1 >"$T/eval" 2>&1 || bad "eval: $(cat "$T/eval")"
	has "$T/eval" "checkpoint: written by wtn"
	has "$T/eval" "train.momentum: 0.5 when trained, 0.9 now"
	"$T/tiny_m05" eval --init "$T/set.st" --threads 1 >"$T/eval" 2>&1
	has "$T/eval" "network hash"
	grep -q "train.momentum" "$T/eval" && bad "eval notes a momentum difference where there is none: $(cat "$T/eval")"
	"$T/tiny" --version >"$T/v" && $WTNC --version >"$T/wv" || bad "--version failed"
	v=$(sed 's/.* //' "$T/wv")
	[ -n "$v" ] && grep -q "wtn $v\$" "$T/v" || bad "wtnc and the binary disagree on the version: $(cat "$T/wv" "$T/v")"

	# ---- readable output ----
	"$T/tiny" --threads 1 --epochs 1 --quiet >"$T/out" 2>&1 && [ ! -s "$T/out" ] || bad "--quiet printed: $(cat "$T/out")"
	"$T/tiny" --threads 1 --epochs 1 --layers >"$T/out" 2>&1
	grep -q '^  layer  *rule  *angle (deg)  *|B|/|W|  *delta (deg)$' "$T/out" &&
		grep -q '^  out  *fa  *[0-9.]*  *[0-9.]*  *0.00$' "$T/out" || bad "--layers table: $(cat "$T/out")"
	# On a terminal (script(1) gives one): the bar with an ETA, then the evaluation.
	if command -v script >/dev/null 2>&1; then
		script -qfc "$T/tiny --threads 1 --epochs 1" /dev/null >"$T/tty" 2>&1 </dev/null
		grep -q 'epoch 1/1 \[#*\.*\] *[0-9]*%  loss [0-9.]* acc [0-9.]*%  eta [0-9]*:[0-9][0-9]' "$T/tty" &&
			grep -q 'epoch 1/1 evaluating on 512 test samples\.\.\.' "$T/tty" ||
			bad "the progress bar lacks an ETA or the evaluation: $(tr '\r' '\n' <"$T/tty" | head -5)"
	fi
	"$T/tiny" --threads 1 --epochs 1 --log-every 10 --metrics "$T/log.jsonl" >/dev/null 2>&1
	[ "$(grep -c '^{"step":[0-9]*0,"in_epoch":1,"loss":[0-9.e+-]*,"lr":0.05,"samples_per_sec":' "$T/log.jsonl")" = 6 ] ||
		bad "--log-every 10 over 64 steps: want 6 step records: $(head -c 600 "$T/log.jsonl")"
fi

# Many layers: the epoch line summarises them.
cat >"$T/deep.wtn" <<'EOF'
network deep {
    input x[16]
    a = dense(x, 8, act=relu)
    b = dense(a, 8, act=relu)
    c = dense(b, 8, act=relu)
    d = dense(c, 8, act=relu)
    out = dense(d, 3)
    loss softmax_cross_entropy(out)
    feedback { default fa }
}
train { data synthetic batch 32 epochs 1 optimizer sgd(lr=0.05) }
EOF
if cc deep "$T/deep.wtn"; then
	"$T/deep" --threads 1 --steps 5 >"$T/out" 2>&1 || bad "deep: $(cat "$T/out")"
	grep -q 'angle mean [0-9.]*° worst [0-9.]*° ([a-d]\|out)  δ mean [0-9.]*° worst [0-9.]*° (' "$T/out" ||
		bad "the epoch line of 5 fa layers is no summary: $(cat "$T/out")"
fi
# info: columns line up for every kind; kp's default decay as it acts.
if cc cnn tests/runtime/cnn.wtn --feedback 'default=kp'; then
	"$T/cnn" info >"$T/info"
	awk 'NR == 3 { p = index($0, " act ") + 1; q = index($0, " params") } NR > 3 && /^[a-z]/ && !/^(loss|parameters|forward|blas)/ {
		if (substr($0, p - 1, 1) != " " || substr($0, p, 1) == " ") { print "act column: " $0; bad = 1 } }
		END { exit bad }' "$T/info" || bad "info columns do not line up: $(cat "$T/info")"
	grep -q 'kp(decay=0.0001 (weight_decay)[,)]\|kp(decay=0 (weight_decay)[,)]' "$T/info" && ! grep -q 'decay=-1' "$T/info" ||
		bad "info does not show kp's decay in force: $(cat "$T/info")"
fi

# ---- wtnc sweep ----
S=$T/sweep
sweep() { $WTNC sweep $tiny --feedback 'out=bp,fa' --set lr=0.05,0.1 --seeds 2 --epochs 2 --steps 40 \
	--jobs 1 --threads 1 -o "$S" "$@"; }
if sweep >"$T/s1" 2>&1; then
	[ "$(grep -c 'compiling' "$T/s1")" = 2 ] || bad "sweep: want 2 compiles: $(cat "$T/s1")"
	[ "$(ls "$S/bin" | wc -l)" = 2 ] || bad "sweep: want 2 binaries in $S/bin"
	[ "$(find "$S/runs" -name 'seed*.jsonl' | wc -l)" = 8 ] || bad "sweep: want 8 metrics files"
	for f in results.md results.csv index.html accuracy.svg angle.svg delta_angle.svg loss.svg; do
		[ -s "$S/$f" ] || bad "sweep wrote no $f"
	done
	has "$S/results.md" "| out=fa lr=0.1 | bp fa | 2 of 2 |"
	[ "$(grep -c '^{"step":' "$S/runs/out=bp_lr=0.1/seed1.jsonl")" = 2 ] || bad "sweep: want 2 step records (40 steps, logged every 20)"
	has "$S/results.csv" '"out=bp lr=0.05","bp","bp",2,2,'
	has "$S/index.html" '<img src="accuracy.svg"'
	has "$S/accuracy.svg" "out=fa lr=0.05"
	grep -q '"lr":0.1,' "$S/runs/out=fa_lr=0.1/seed2.jsonl" || bad "sweep: the lr=0.1 run did not run at lr 0.1"
	ls -l --time-style=+%s.%N "$S/bin" "$S/runs"/*/ >"$T/before"
	sweep >"$T/s2" 2>&1 || bad "sweep rerun failed: $(cat "$T/s2")"
	has "$T/s2" "8 runs (8 done before, 0 to run); 2 networks (2 compiled before)"
	grep -q "compiling" "$T/s2" && bad "the rerun compiled: $(cat "$T/s2")"
	ls -l --time-style=+%s.%N "$S/bin" "$S/runs"/*/ | grep -v 'results\|svg\|html\|plan' >"$T/after"
	grep -v 'results\|svg\|html\|plan' "$T/before" | cmp -s - "$T/after" || bad "the rerun changed binaries or runs"
	# Other settings in the same directory: the finished runs are stale.
	sweep --steps 10 >"$T/s3" 2>&1 || bad "sweep with other settings failed: $(cat "$T/s3")"
	has "$T/s3" "8 finished runs were made with another network or other settings: they run again"
	# 40 steps logged every 20 gave two step records; 10 steps give none.
	[ "$(grep -c '^{"step":' "$S/runs/out=bp_lr=0.1/seed1.jsonl")" = 0 ] &&
		grep -q -- " --steps 10 " "$S/runs/out=bp_lr=0.1/seed1.key" || bad "the stale run was not redone with --steps 10"
	$WTNC sweep --report -o "$S" >"$T/s4" 2>&1 && has "$T/s4" "wrote $S/index.html"
else
	bad "sweep failed: $(cat "$T/s1")"
fi
# Rule arguments are run-time settings: one binary for kp with two decays.
R=$T/ruleargs
if $WTNC sweep $tiny --feedback 'out=kp(decay=0.01),kp(decay=0.1, decay_steps=5)' --seeds 1 --epochs 1 \
	--steps 10 --jobs 1 --threads 1 -o "$R" >"$T/r1" 2>&1; then
	[ "$(grep -c 'compiling' "$T/r1")" = 1 ] || bad "sweep over kp's decay: want 1 compile: $(cat "$T/r1")"
	has "$R/runs/out=kp_decay=0.1,_decay_steps=5_/seed1.jsonl" '"set":["out.decay=0.1","out.decay_steps=5"]'
else
	bad "sweep over kp's decay failed: $(cat "$T/r1")"
fi
# Killed mid-way (SIGKILL: no chance to clean up), then run again.
K=$T/killed
ksweep() { $WTNC sweep $tiny --feedback 'out=fa,kp' --seeds 3 --epochs 400 --jobs 1 --threads 1 -o "$K" "$@"; }
$WTNC sweep $tiny --feedback 'out=fa,kp' --seeds 3 --epochs 400 --jobs 1 --threads 1 -o "$K" >"$T/k1" 2>&1 &
SWEEP_PID=$!   # wtnc itself, not a subshell
i=0
while [ "$(find "$K/runs" -name 'seed*.jsonl' 2>/dev/null | wc -l)" -lt 1 ] && [ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
kill -9 "$SWEEP_PID" 2>/dev/null
wait "$SWEEP_PID" 2>/dev/null
SWEEP_PID=""
sleep 0.3   # the running binary dies with its sweep
done1=$(find "$K/runs" -name 'seed*.jsonl' | wc -l)
if [ "$done1" -ge 1 ] && [ "$done1" -lt 6 ]; then
	ls -i "$K/runs"/*/seed*.jsonl >"$T/kept"
	ksweep >"$T/k2" 2>&1 || bad "the resumed sweep failed: $(cat "$T/k2")"
	has "$T/k2" "6 runs ($done1 done before, $((6 - done1)) to run)"
	[ "$(find "$K/runs" -name 'seed*.jsonl' | wc -l)" = 6 ] || bad "the resumed sweep did not finish every run"
	[ "$(find "$K/runs" -name '*.part' | wc -l)" = 0 ] || bad "the resumed sweep left .part files"
	ls -i $(awk '{ print $2 }' "$T/kept") | cmp -s - "$T/kept" || bad "the resumed sweep redid finished runs"
	has "$K/results.md" "| out=kp | bp kp | 3 of 3 |"
else
	bad "killing the sweep: $done1 of 6 runs finished (want some but not all): $(cat "$T/k1")"
fi
# Bad sweeps: a clear message and exit 1.
expect_sweep() {   # TEXT ARGS...
	text=$1
	shift
	$WTNC sweep $tiny -o "$T/bad" "$@" >"$T/out" 2>&1 && bad "sweep $*: exit 0"
	grep -qF -- "$text" "$T/out" || bad "sweep $*: lacks '$text': $(cat "$T/out")"
}
expect_sweep "unknown rule 'kpx' (did you mean 'kp'?)" --feedback 'out=fa,kpx'
expect_sweep "the binary rejects its settings" --set 'momentom=0.1,0.2'
expect_sweep "more than the" --jobs 64 --threads 64
expect_sweep "expected LAYER=RULE" --feedback out

[ "$fail" = 0 ] && echo "ok t_explore"
[ "$fail" = 0 ]
