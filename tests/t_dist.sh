#!/bin/sh
# t_dist: data-parallel training over MPI (runtime/dist.c), two ranks on
# loopback. 10 steps on two ranks equal 10 steps of one process at the same
# global batch, to 1e-5 relative in every tensor of the checkpoint, under
# bp, kp, wm (noise batch split across ranks) and dfa on an MLP and on a
# conv net; a whole epoch whose last batch has fewer samples than ranks;
# three ranks; the mirror command; sharded evaluation. A rank that fails
# alone or is killed ends the job, and the last checkpoint still loads. A binary whose runtime was
# built without MPI refuses a launch on several ranks and --mpi, and trains
# alone as before. Batchnorm synchronised (--sync-bn) equals one process,
# and by default (each rank's own statistics) does not.
cd "$(dirname "$0")/.." || exit 1
WTNC=${WTNC:-build/wtnc}
T=$(mktemp -d "${TMPDIR:-/tmp}/t_dist.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL t_dist: $*"; fails=$((fails + 1)); }
# CI runs as root; mpirun wants both variables for that.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Containers often forbid the cross-process copies of Open MPI's shared
# memory transport; plain copies work everywhere.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPIRUN="mpirun --oversubscribe --bind-to none"

if ! grep -q mpi build/libwtnrt.libs 2>/dev/null || ! command -v mpirun >/dev/null; then
	echo "FAIL t_dist: the runtime was built without MPI or mpirun is missing" \
	     "(install libopenmpi-dev and openmpi-bin: make deps; then make clean all)"
	exit 1
fi
cc -std=gnu11 -O1 -Iruntime -o "$T/stcmp" tests/dist/stcmp.c build/libwtnrt.a -lm || exit 1

# same NAME ARGS...: trains one process and two ranks with ARGS, compares
# the checkpoints (every tensor) and the metrics' losses and accuracies.
same() {
	name=$1
	shift
	"$T/$name" train --threads 1 "$@" --save "$T/$name.one" --metrics "$T/$name.one.json" \
		>/dev/null 2>"$T/err" || { fail "$name: one process failed: $(head -3 "$T/err")"; return; }
	$MPIRUN -np "${RANKS:-2}" "$T/$name" train --threads 1 "$@" --save "$T/$name.two" \
		--metrics "$T/$name.two.json" >"$T/out" 2>"$T/err" ||
		{ fail "$name: ${RANKS:-2} ranks failed: $(head -5 "$T/err")"; return; }
	"$T/stcmp" "$T/$name.one" "$T/$name.two" "${TOL:-1e-5}" >"$T/cmp" ||
		fail "$name $*: ${RANKS:-2} ranks differ from one process: $(head -4 "$T/cmp")"
	[ -z "$(cat "$T/err")" ] || fail "$name: ranks wrote to stderr: $(head -3 "$T/err")"
	[ "$(grep -c '^epoch' "$T/out")" = "$(grep -c '^{"epoch"' "$T/$name.one.json")" ] ||
		fail "$name: expected one epoch line per epoch from rank 0 alone, got: $(head -c 300 "$T/out")"
	for key in train_loss test_loss train_acc test_acc; do
		a=$(sed "s/.*\"$key\":\([-0-9.e+]*\).*/\1/" "$T/$name.one.json" | tail -n 1)
		b=$(sed "s/.*\"$key\":\([-0-9.e+]*\).*/\1/" "$T/$name.two.json" | tail -n 1)
		awk -v a="$a" -v b="$b" -v tol="${TOL:-1e-5}" 'BEGIN { d = a - b; if (d < 0) d = -d;
			exit !(a == a + 0 && d <= tol * (a < 0 ? -a : a) + 1e-9) }' ||
			fail "$name: $key $a from one process, $b from ${RANKS:-2} ranks"
	done
}

compile() {   # NAME FILE [wtnc args]
	name=$1 src=$2
	shift 2
	$WTNC "$src" -o "$T/$name" "$@" >"$T/cc" 2>&1 || fail "$name: wtnc failed: $(head -3 "$T/cc")"
}
compile bp tests/dist/mlp.wtn
compile kp tests/dist/mlp.wtn --feedback 'default=kp(decay=0.01)'
compile wm tests/dist/mlp.wtn --feedback 'default=wm(noise=1, rate=0.02, decay=0.02, batch=31, warmup=5, every=2)'
compile dfa tests/dist/mlp.wtn --feedback default=dfa
compile conv tests/dist/conv.wtn
compile bn tests/dist/bn.wtn
for rule in bp kp wm dfa conv; do
	same "$rule" --steps 10
done
same bn --steps 10 --sync-bn
# A whole epoch of batch 23: its last batch is one sample, which one rank
# holds; the other computes on a stand-in that counts for nothing (with
# --sync-bn too, where the others' errors reach it). 90 steps of rounding
# with batchnorm's momentum: 1e-4.
same bp --batch 23
TOL=1e-4 same bn --batch 23 --sync-bn
RANKS=3 same wm --steps 10
# Batchnorm by default normalises each rank's shard by its own statistics:
# not the one-process run.
$MPIRUN -np 2 "$T/bn" train --threads 1 --steps 10 --save "$T/bn.own" >/dev/null 2>&1
"$T/bn" train --threads 1 --steps 10 --save "$T/bn.one" >/dev/null 2>&1
"$T/stcmp" "$T/bn.one" "$T/bn.own" 1e-3 >/dev/null && fail "2 ranks without --sync-bn train as one process"

# The checker can tell: a run at another global batch differs.
"$T/bp" train --threads 1 --steps 10 --batch 24 --save "$T/bp24" >/dev/null 2>&1
"$T/bp" train --threads 1 --steps 10 --save "$T/bp25" >/dev/null 2>&1
"$T/stcmp" "$T/bp24" "$T/bp25" 1e-5 >/dev/null && fail "stcmp finds batch 24 and 25 alike"

# The mirror command: each step's noise batch split across the ranks.
"$T/wm" mirror --threads 1 --steps 7 --save "$T/mirror.one" >/dev/null 2>&1
$MPIRUN -np 2 "$T/wm" mirror --threads 1 --steps 7 --save "$T/mirror.two" >/dev/null 2>&1 &&
	"$T/stcmp" "$T/mirror.one" "$T/mirror.two" 1e-5 >"$T/cmp" ||
	fail "mirror on 2 ranks differs from one process: $(head -3 "$T/cmp")"

# eval, sharded over the ranks: the same line as one process.
"$T/bp" eval --init "$T/bp.one" >"$T/eval.one" 2>&1
$MPIRUN -np 2 "$T/bp" eval --init "$T/bp.one" >"$T/eval.two" 2>&1
cmp -s "$T/eval.one" "$T/eval.two" ||
	fail "eval on 2 ranks: $(cat "$T/eval.two"), one process: $(cat "$T/eval.one")"

# Rank 0 cannot write its checkpoint: the job ends (rank 1 does not wait
# for it forever) with rank 0's message and a nonzero status.
timeout 60 $MPIRUN -np 2 "$T/bp" train --threads 1 --epochs 3 --save "$T/no/such/dir/x" \
	>"$T/out" 2>"$T/err"
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] || fail "unwritable checkpoint on rank 0: exit $rc, expected an abort"
grep -q "no/such/dir" "$T/err" || fail "unwritable checkpoint: no message naming it: $(head -3 "$T/err")"

# A rank killed mid-run ends the job with a message naming it; the last
# checkpoint is whole.
rm -f "$T/kill.st"
$MPIRUN -np 2 "$T/bp" train --threads 1 --epochs 100000 --save "$T/kill.st" >/dev/null 2>"$T/err" &
job=$!
i=0
while [ ! -f "$T/kill.st" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.3
victim=
for p in $(awk -v parent=$job '$4 == parent { print $1 }' /proc/[0-9]*/stat 2>/dev/null); do
	tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && victim=$p
done
if [ -z "$victim" ]; then
	fail "kill: no rank 1 under mpirun (pid $job)"
	kill $job
else
	kill -9 "$victim"
fi
wait $job
rc=$?
[ $rc != 0 ] || fail "rank 1 killed: mpirun exited 0"
grep -q "rank 1.*signal 9" "$T/err" || fail "rank 1 killed: no message naming it: $(head -c 400 "$T/err")"
"$T/bp" eval --init "$T/kill.st" >"$T/out" 2>"$T/err" ||
	fail "the checkpoint after a killed rank does not load: $(head -3 "$T/err")"

# A runtime built without MPI: refuses two ranks and --mpi, trains alone.
cc -std=gnu11 -D_GNU_SOURCE -Iruntime -O1 -c -o "$T/mpi_nompi.o" runtime/mpi.c || exit 1
$WTNC tests/dist/mlp.wtn -c -o "$T/net.o" >/dev/null 2>&1 &&
	cc -o "$T/nompi" "$T/net.o" build/wtn_main.o "$T/mpi_nompi.o" build/libwtnrt.a \
		-lopenblas -lz -lm -lpthread || fail "cannot link a binary without MPI"
if nm "$T/nompi" | grep -q MPI_Init; then
	fail "the binary without MPI still links MPI"
fi
OMPI_COMM_WORLD_SIZE=2 "$T/nompi" train --steps 1 >/dev/null 2>"$T/err" &&
	fail "without MPI, a launch on 2 ranks trains"
grep -q "built without MPI" "$T/err" || fail "without MPI on 2 ranks: $(head -3 "$T/err")"
"$T/nompi" train --steps 1 --mpi >/dev/null 2>"$T/err" && fail "without MPI, --mpi trains"
grep -q "built without MPI" "$T/err" || fail "without MPI, --mpi: $(head -3 "$T/err")"
"$T/nompi" train --threads 1 --steps 10 --save "$T/nompi.st" >/dev/null 2>&1 &&
	"$T/stcmp" "$T/bp25" "$T/nompi.st" 0 >/dev/null ||
	fail "without MPI, one process trains otherwise than the MPI build's single process"

[ "$fails" = 0 ] || exit 1
echo "t_dist: 2 and 3 ranks train as one process under bp, kp, wm and dfa; failures end the job"
