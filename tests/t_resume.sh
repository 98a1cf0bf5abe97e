#!/bin/sh
# t_resume.sh: exact resume. A run saved with --save-state (or by
# --save-every, or on SIGTERM) and continued with --resume ends bit for bit
# where the uninterrupted run ends, at the same thread count: the final
# checkpoints' tensors (parameters, statistics, optimiser state, the
# shuffle order) and the training state's scalars (counters, random
# streams, the epoch's totals) are compared byte for byte, and so are the
# metrics' losses and accuracies. Networks (tests/resume/): an MLP with
# every rule (fa dfa usf frsf brsf kp wm, bp), dropout and a step schedule,
# under sgd with momentum and under adam; a conv net with batchnorm, random
# crops and flips, adam and a cosine schedule. Also: the configuration
# check, and --init of a PyTorch-like state_dict without feedback tensors
# (--init-draw-missing).
cd "$(dirname "$0")/.." || exit 1
WTNC=${WTNC:-build/wtnc}
T=$(mktemp -d /tmp/wtn_resume.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL t_resume: $*"; fail=1; }

compile() {   # compile NAME SOURCE
	$WTNC "$2" -o "$T/$1" >"$T/cc.out" 2>&1 && return 0
	echo "FAIL t_resume: $WTNC cannot compile $2:"
	head -5 "$T/cc.out"
	exit 1
}
compile mlp tests/resume/mlp.wtn
sed -e 's/network mlp/network mlp_adam/' \
    -e 's/optimizer sgd(.*)/optimizer adam(lr=0.002, weight_decay=1e-4)/' \
    tests/resume/mlp.wtn >"$T/mlp_adam.wtn"
compile mlp_adam "$T/mlp_adam.wtn"
compile conv tests/resume/conv.wtn

# A safetensors file's header length, header and data.
hlen() { od -An -tu8 -N8 "$1" | tr -d ' '; }
header() { head -c $(($(hlen "$1") + 8)) "$1" | tail -c +9; }
data() { tail -c +$(($(hlen "$1") + 9)) "$1"; }
# The wtn_state metadata (the last entry of the header).
state() { header "$1" | sed -e 's/.*"wtn_state"://' -e 's/}} *$//'; }
meta() { header "$1" | grep -o "\"$2\":\"[0-9]*\"" | head -1 | tr -dc 0-9; }
# same A B WHAT: every tensor and the training state are equal.
same() {
	[ -s "$1" ] && [ -s "$2" ] || { bad "$3: missing checkpoint"; return; }
	data "$1" >"$T/d1"
	data "$2" >"$T/d2"
	cmp -s "$T/d1" "$T/d2" || bad "$3: tensors differ ($(cmp "$T/d1" "$T/d2" 2>&1 | head -1))"
	[ "$(state "$1")" = "$(state "$2")" ] || bad "$3: training state differs: $(state "$1") vs $(state "$2")"
}
# epoch N of a metrics file without its timing
record() { grep "^{\"epoch\":$2," "$1" | sed 's/"samples_per_sec":[^,]*,//'; }
same_record() {   # same_record M1 M2 EPOCH WHAT
	r1=$(record "$1" "$3")
	[ -n "$r1" ] && [ "$r1" = "$(record "$2" "$3")" ] ||
		bad "$4: epoch $3's record differs: '$r1' vs '$(record "$2" "$3")'"
}
run() {   # run NET ARGS...: quiet, one thread; a failure is reported
	net=$1
	shift
	"$T/$net" --threads 1 --quiet "$@" >"$T/out" 2>"$T/err" ||
		bad "$net $*: exit $? ($(head -c 300 "$T/err"))"
}

for net in mlp mlp_adam conv; do
	# the uninterrupted run
	run $net --save "$T/a.st" --save-state --metrics "$T/a.jsonl"
	# 1 epoch, then a resumed 1
	run $net --epochs 1 --save "$T/b.st" --save-state
	run $net --resume "$T/b.st" --save "$T/c.st" --save-state --metrics "$T/c.jsonl"
	same "$T/a.st" "$T/c.st" "$net: 2 epochs vs 1 + resumed 1"
	same_record "$T/a.jsonl" "$T/c.jsonl" 2 "$net: 1 + resumed 1"
	# stopped inside the first epoch by --steps, then resumed
	run $net --steps 13 --save "$T/d.st" --save-state
	grep -q '\\"in_epoch\\":true,\\"pos\\":[1-9]' "$T/d.st" || bad "$net: --steps 13 saved no position inside the epoch: $(state "$T/d.st")"
	run $net --resume "$T/d.st" --save "$T/e.st" --save-state --metrics "$T/e.jsonl"
	same "$T/a.st" "$T/e.st" "$net: 2 epochs vs 13 steps + resumed"
	same_record "$T/a.jsonl" "$T/e.jsonl" 1 "$net: 13 steps + resumed"
	same_record "$T/a.jsonl" "$T/e.jsonl" 2 "$net: 13 steps + resumed"
	mv "$T/a.st" "$T/a_$net.st"
done
# The same thread count but two threads (the pool's split, OpenBLAS's).
"$T/conv" --threads 2 -q --save "$T/a2.st" --save-state
"$T/conv" --threads 2 -q --epochs 1 --save "$T/b2.st" --save-state
"$T/conv" --threads 2 -q --resume "$T/b2.st" --save "$T/c2.st" --save-state 2>"$T/err"
grep -qF "note: epochs 1 in the checkpoint's run, 2 now: the cosine schedule" "$T/err" ||
	bad "conv: no note on the cosine schedule's epochs: $(cat "$T/err")"
same "$T/a2.st" "$T/c2.st" "conv at 2 threads: 2 epochs vs 1 + resumed 1"

# Data-parallel over two MPI ranks (when the runtime has MPI; not under
# the sanitizers): every rank resumes the same state.
if [ -z "$WTN_SANITIZED" ] && grep -q mpi build/libwtnrt.libs 2>/dev/null &&
   command -v mpirun >/dev/null; then
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
	export OMPI_MCA_btl_vader_single_copy_mechanism=none
	mpi() { mpirun --oversubscribe --bind-to none -np 2 "$T/mlp" --threads 1 -q "$@" >"$T/out" 2>&1 ||
		bad "mpirun mlp $*: $(head -c 300 "$T/out")"; }
	mpi --save "$T/ma.st" --save-state
	mpi --epochs 1 --save "$T/mb.st" --save-state
	mpi --resume "$T/mb.st" --save "$T/mc.st"
	same "$T/ma.st" "$T/mc.st" "mlp on 2 MPI ranks: 2 epochs vs 1 + resumed 1"
fi

# killed: a run of many epochs, stopped once its first checkpoint exists
# (SIGKILL: the periodic checkpoint; SIGTERM: the step finishes and is
# saved), resumed; both runs then stop 20 steps later, as does a run that
# was never stopped.
killed() {   # killed NET SIGNAL
	net=$1 sig=$2
	for try in 1 2 3; do
		rm -f "$T/k.st"
		"$T/$net" --threads 1 -q --epochs 1000 --save-every 5 --save "$T/k.st" >/dev/null 2>"$T/err" &
		pid=$!
		i=0
		while [ ! -s "$T/k.st" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
		kill -$sig $pid
		wait $pid 2>/dev/null
		got=$?
		# a save inside an epoch (not at its end) is what this is about
		state "$T/k.st" | grep -q '\\"in_epoch\\":true' && break
	done
	[ $sig = TERM ] && [ $got != 143 ] && bad "$net: SIGTERM: exit $got, expected 143"
	[ $sig = KILL ] && [ $got != 137 ] && bad "$net: SIGKILL: exit $got, expected 137"
	state "$T/k.st" | grep -q '\\"in_epoch\\":true' || bad "$net $sig: no checkpoint inside an epoch: $(state "$T/k.st")"
	step=$(meta "$T/k.st" step)
	[ -n "$step" ] || { bad "$net $sig: no step in the checkpoint"; return; }
	run $net --epochs 1000 --resume "$T/k.st" --steps $((step + 20)) --save "$T/k2.st" --save-state
	run $net --epochs 1000 --steps $((step + 20)) --save "$T/k0.st" --save-state
	same "$T/k0.st" "$T/k2.st" "$net: stopped by SIG$sig at step $step, resumed"
}
killed conv KILL
killed mlp TERM

# SIGTERM at a known point: the first fsync (the save that --save-every 63
# makes during step 64, the last of the mlp's first epoch) raises it, so
# the run stops after that step, before the epoch's evaluation, and the
# resumed run evaluates it. Plain cc: a sanitized shim would not preload.
printf '#include <signal.h>\nint fsync(int fd) { static int n; (void)fd; if (!n++) raise(SIGTERM); return 0; }\n' >"$T/shim.c"
if [ -z "$WTN_SANITIZED" ] && cc -shared -fPIC -o "$T/shim.so" "$T/shim.c" 2>/dev/null; then
	LD_PRELOAD=$T/shim.so "$T/mlp" --threads 1 -q --save-every 63 --save "$T/s.st" 2>"$T/err"
	got=$?
	[ $got = 143 ] || bad "SIGTERM in step 64: exit $got, expected 143 ($(cat "$T/err"))"
	state "$T/s.st" | grep -q '\\"in_epoch\\":true,\\"pos\\":2048,\\"step\\":64,' ||
		bad "SIGTERM in step 64: not saved at the end of epoch 1's steps: $(state "$T/s.st")"
	run mlp --resume "$T/s.st" --save "$T/s2.st" --metrics "$T/s2.jsonl"
	same "$T/a_mlp.st" "$T/s2.st" "mlp: SIGTERM after the last step of epoch 1, resumed"
	run mlp --save "$T/a.st" --save-state --metrics "$T/a.jsonl"
	same_record "$T/a.jsonl" "$T/s2.jsonl" 1 "mlp: SIGTERM after the last step of epoch 1, resumed"
fi

# ---- the configuration check ----
NET=$T/mlp
expect() {   # expect STATUS TEXT ARGS...
	want=$1 text=$2
	shift 2
	"$NET" --threads 1 -q "$@" >"$T/out" 2>"$T/err"
	got=$?
	[ "$got" = "$want" ] || bad "$*: exit $got, expected $want ($(head -c 300 "$T/err"))"
	[ -z "$text" ] || grep -qF -- "$text" "$T/err" || bad "$*: stderr lacks '$text': $(head -c 400 "$T/err")"
}
run mlp --epochs 1 --save "$T/b.st" --save-state
expect 1 "train.lr: 0.02 in the checkpoint's run, 0.1 now" --resume "$T/b.st" --lr 0.1
grep -qF "refusing to continue another configuration (--allow-changes" "$T/err" || bad "no refusal: $(cat "$T/err")"
expect 1 "h7 args.every: 3 in the checkpoint's run, 2 now" --resume "$T/b.st" --set h7.every=2
expect 1 "train.shuffle: true in the checkpoint's run, false now" --resume "$T/b.st" --no-shuffle
expect 0 "train.lr: 0.02 in the checkpoint's run, 0.1 now" --resume "$T/b.st" --lr 0.1 --allow-changes
expect 0 "note: threads 1 in the checkpoint's run, 2 now" --resume "$T/b.st" --threads 2
NET=$T/mlp_adam
expect 1 "network: mlp in the checkpoint's run, mlp_adam now" --resume "$T/b.st"
grep -qF "network_hash: " "$T/err" || bad "another network: no word on its hash: $(cat "$T/err")"
NET=$T/mlp
expect 0 "has trained 2 epochs; --epochs 2 leaves nothing to train" --resume "$T/a_mlp.st"
# A resumed run's checkpoints stay resumable, without --save-state.
run mlp --resume "$T/b.st" --save "$T/r.st"
grep -q '"wtn_state":' "$T/r.st" || bad "a resumed run wrote a checkpoint that cannot be resumed"
run mlp --epochs 1 --save "$T/p.st"
expect 1 "not a resumable checkpoint: it holds no training state" --resume "$T/p.st"
expect 2 "--resume and --init exclude each other" --resume "$T/b.st" --init "$T/b.st"
# A damaged state is named, not trusted: an order that repeats a sample
# (it indexes the data), a state of another format version.
cp "$T/b.st" "$T/dup.st"
size=$(wc -c <"$T/b.st")
tail -c 8 "$T/b.st" | head -c 4 | dd of="$T/dup.st" bs=1 seek=$((size - 4)) conv=notrunc 2>/dev/null
expect 1 "wtn_state.shuffle_order is not a permutation of 0..2047" --resume "$T/dup.st"
sed 's/\\"version\\":1,/\\"version\\":9,/' "$T/b.st" >"$T/v9.st"
expect 1 "wtn_state has no version 1 (written by another wtn?)" --resume "$T/v9.st"
# A resumable checkpoint is also an --init and eval checkpoint.
expect 0 "" eval --init "$T/b.st"
expect 0 "" --init "$T/b.st" --epochs 1

# ---- --init of a PyTorch-like state_dict without feedback tensors ----
# torch_like IN OUT: IN's parameters and statistics, without feedback
# matrices, state and metadata, plus an I64 num_batches_tracked per
# batchnorm, laid out as safetensors.torch.save_file writes a state_dict.
le64() { n=$1; for i in 1 2 3 4 5 6 7 8; do printf "\\$(printf %03o $((n % 256)))"; n=$((n / 256)); done; }
torch_like() {
	h=$(hlen "$1")
	header "$1" | grep -o '"[^"]*":{"dtype":"F32","shape":\[[0-9,]*\],"data_offsets":\[[0-9]*,[0-9]*\]}' |
		grep -v -e '^"wtn_state\.' -e '\.feedback"' >"$T/entries"
	: >"$T/tdata"
	hdr="{" off=0
	while IFS= read -r e; do
		name=${e%%\":*}
		a=$(echo "$e" | sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
		b=$(echo "$e" | sed 's/.*,\([0-9]*\)\]}$/\1/')
		tail -c +$((9 + h + a)) "$1" | head -c $((b - a)) >>"$T/tdata"
		hdr="$hdr$(echo "$e" | sed "s/\"data_offsets\":.*/\"data_offsets\":[$off,$((off + b - a))]}/"),"
		off=$((off + b - a))
		case $name in *.running_var)
			hdr="$hdr${name%.running_var}.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[$off,$((off + 8))]},"
			printf '\144\0\0\0\0\0\0\0' >>"$T/tdata"
			off=$((off + 8)) ;;
		esac
	done <"$T/entries"
	hdr="${hdr%,}}"
	while [ $((${#hdr} % 8)) != 0 ]; do hdr="$hdr "; done
	{ le64 ${#hdr}; printf '%s' "$hdr"; cat "$T/tdata"; } >"$2"
}
torch_like "$T/p.st" "$T/torch.st"
grep -q 'feedback' "$T/torch.st" && bad "torch_like kept a feedback tensor"
expect 1 "missing tensor h1.feedback (--init-draw-missing draws" eval --init "$T/torch.st"
expect 0 "no h1.feedback (fa), h2.feedback (dfa), h3.feedback (usf), h4.feedback (frsf), h5.feedback (brsf), h6.feedback (kp), h7.feedback (wm): drawn from the seed" \
	eval --init "$T/torch.st" --init-draw-missing
# fa's B, dfa's D, usf's sign(W) and frsf's |M| sign(W) are what the rules'
# init draws from the seed and W: the trained checkpoint's, whose fa and
# dfa never moved and whose usf and frsf follow W's signs. (mirror steps
# change only the wm layer h7.)
expect 0 "drawn from the seed" mirror --steps 1 --init "$T/torch.st" --init-draw-missing --save "$T/drawn.st"
tensor() {   # tensor FILE NAME: its bytes
	e=$(header "$1" | grep -o "\"$2\":{[^}]*}")
	a=$(echo "$e" | sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
	b=$(echo "$e" | sed 's/.*,\([0-9]*\)\]}$/\1/')
	tail -c +$(($(hlen "$1") + 9 + a)) "$1" | head -c $((b - a))
}
for t in h1.weight h1.feedback h2.feedback h3.feedback h4.feedback; do
	tensor "$T/p.st" $t >"$T/t1"
	tensor "$T/drawn.st" $t >"$T/t2"
	[ -s "$T/t1" ] && cmp -s "$T/t1" "$T/t2" || bad "--init-draw-missing: $t is not the one the rule's init gives"
done
# num_batches_tracked on a batchnorm net, feedback drawn
run conv --epochs 1 --steps 5 --save "$T/cp.st"
torch_like "$T/cp.st" "$T/ctorch.st"
grep -q 'bn1.num_batches_tracked' "$T/ctorch.st" || bad "torch_like wrote no num_batches_tracked"
NET=$T/conv
expect 0 "no c1.feedback (kp), c2.feedback (wm), c3.feedback (dfa), out.feedback (frsf)" \
	--init "$T/ctorch.st" --init-draw-missing --steps 3

exit $fail
