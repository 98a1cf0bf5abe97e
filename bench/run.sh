#!/bin/sh
# make bench: training samples/s of wtn's binaries beside PyTorch training the
# same networks (bench/torch_peer.py: same layers, batch and SGD settings,
# every layer on backprop) in the same run, at 1 and 2 threads. Ratios above
# 1 mean wtn is faster.
#   mlp       examples/fashion_mlp.wtn           Fashion-MNIST
#   convnet   bench/convnet.wtn                  Fashion-MNIST
#   lenet     examples/lenet.wtn                 Fashion-MNIST
#   resnet20  examples/resnet20.wtn              synthetic CIFAR-shaped images,
#                                                no crop or flip on either side
# Both sides get the same OpenBLAS: OPENBLAS_CORETYPE from the environment,
# else the kernel the wtn binary picks on this CPU (`./net info`), and the
# same OPENBLAS_THREAD_TIMEOUT; each row shows the kernel each side ran.
# Then: the sgemm bound of the MLP (bench/sgemm_bound.c times exactly the
# products of one training step) and the MLP's 1-thread rate against it;
# the convnet's profile at 2 threads; each rule's cost on the convnet and the
# weight mirror's share of the step (its profile); and
# wtnc's compile time of the example networks.
# Variables (timed steps of batch 128, at most one epoch):
#   BENCH_MLP_STEPS (200), BENCH_CONV_STEPS (60), BENCH_LENET_STEPS (200),
#   BENCH_RESNET_STEPS (10, at most 16: one epoch of the synthetic set),
#   BENCH_THREADS ("1 2"), BENCH_ROUNDS (2: rounds of wtn then PyTorch per
#   row, each side's best counts), BENCH_RULES (1; 0 skips the rule table).
set -e
cd "$(dirname "$0")/.."
mkdir -p build && tmp=$(mktemp -d build/bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3   # Debian's python3-torch lives with the system python
threads=${BENCH_THREADS:-1 2}
cap() { [ "$1" -le "$2" ] && echo "$1" || echo "$2"; }   # steps, at most one epoch
mlp_steps=$(cap "${BENCH_MLP_STEPS:-200}" 469)
conv_steps=$(cap "${BENCH_CONV_STEPS:-60}" 469)
lenet_steps=$(cap "${BENCH_LENET_STEPS:-200}" 469)
resnet_steps=$(cap "${BENCH_RESNET_STEPS:-10}" 16)
window=$(cap 20 "$mlp_steps")   # steps (or bound passes) in a row the MLP's pairs compare
rounds=${BENCH_ROUNDS:-2}

# wtnc's wall time for the examples as written: what a user waits for.
compile_time() {   # NAME FILE [wtnc options]: prints seconds
	name=$1 file=$2
	shift 2
	t0=$(date +%s.%N)
	build/wtnc "$file" "$@" -o "$tmp/$name"
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
ct_mlp=$(compile_time ex_mlp examples/fashion_mlp.wtn)
ct_lenet=$(compile_time ex_lenet examples/lenet.wtn)
ct_resnet20=$(compile_time ex_resnet20 examples/resnet20.wtn)
ct_resnet18=$(compile_time ex_resnet18 examples/resnet18.wtn)

# The benchmarked binaries: every layer on backprop, as PyTorch trains.
for net in mlp:examples/fashion_mlp.wtn convnet:bench/convnet.wtn lenet:examples/lenet.wtn \
           resnet20:examples/resnet20.wtn; do
	build/wtnc "${net#*:}" --feedback 'default=bp' --feedback '*=bp' -o "$tmp/${net%%:*}"
done

# The sgemm bound's products: the wtn_sgemm calls of the MLP's wtn_forward
# and wtn_backward kernels (no loops around them), with the batch as "n".
# A beta known only at run time is SGD's momentum: in a training step the
# weight-gradient products add into the momentum buffer (wtn_abi.h,
# wtn_step_hyper); the bound takes the run's momentum from its config.
build/wtnc examples/fashion_mlp.wtn --feedback 'default=bp' --feedback '*=bp' --emit-llvm -o "$tmp/mlp.ll"
awk '/^define .*@wtn_(forward|backward)\(/ { on = 1 } /^}/ { on = 0 }
     on && /call void @wtn_sgemm\(/ {
	sub(/.*@wtn_sgemm\(/, ""); sub(/\).*/, ""); n = split($0, a, ", ")
	for (i = 1; i <= n; i++) {
		split(a[i], w, " ")
		v[i] = w[2] !~ /^%/ ? w[2] : i == 11 ? "momentum" : "n"
	}
	print v[1], v[2], v[3], v[4], v[5], v[6], v[8], v[10], v[11], v[13] }' "$tmp/mlp.ll" >"$tmp/products"

# One OpenBLAS configuration for both sides.
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
	why="from the environment"
else
	OPENBLAS_CORETYPE=$("$tmp/mlp" info | sed -n 's/^blas: .*; kernel \([^ ]*\) (.*/\1/p')
	why="the kernel the wtn binary picks on this CPU"
fi
if [ -n "$OPENBLAS_CORETYPE" ]; then
	export OPENBLAS_CORETYPE
else
	unset OPENBLAS_CORETYPE
	why="unset: OpenBLAS's own choice on both sides"
fi
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"

# wtn_run binary threads steps [options]: trains; metrics in $tmp/m.jsonl.
# A run that diverges (a rule at this learning rate) exits 1 without an
# epoch record; its one step record, written before, still has its rate.
wtn_run() {
	bin=$1 t=$2 s=$3
	shift 3
	diverged=
	"$tmp/$bin" train --epochs 1 --steps "$s" --threads "$t" --metrics "$tmp/m.jsonl" \
		--log-every "$s" "$@" >"$tmp/out" 2>"$tmp/err" || diverged=" (diverged: $(head -c 60 "$tmp/err")...)"
}
# The run's samples/s from its epoch record, else its step record (the
# first record is its configuration).
wtn_rate() {
	{ grep '^{"epoch"' "$tmp/m.jsonl" || grep '^{"step"' "$tmp/m.jsonl"; } | tail -n 1 |
		sed 's/.*"samples_per_sec":\([0-9.e+]*\).*/\1/'
}
wtn_threads() { sed -n 's/^{"config".*"threads":\([0-9]*\).*/\1/p' "$tmp/m.jsonl"; }
wtn_kernel() { sed -n 's/^{"config".*"blas":"[^"]*; kernel \([^"]*\)".*/\1/p' "$tmp/m.jsonl"; }
wtn_options() {   # network: data options
	case $1 in resnet20) echo "--data synthetic --set crop_pad=0 --set flip=0" ;; esac
}
torch_run() {   # torch.set_num_threads does not reach the BLAS: pin it too
	OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS="$2" OPENBLAS_NUM_THREADS="$2" \
		"$py" bench/torch_peer.py "$1" "$2" "$3" >"$tmp/torch"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" "$tmp/torch"; }
# The MLP's 1-thread round against the sgemm bound timed right after it,
# under the same load. This machine's speed can change from one second to
# the next, so each side counts its fastest stretch of equal length: the
# round's fastest window of $window steps (its step records), the bound's
# fastest $window consecutive passes of about as many as the round had
# steps. Each pair's ratio goes to $tmp/ratios, its line to $tmp/pairs.
bound_pair() {   # round
	momentum=$(sed -n 's/^{"config".*"momentum":\([0-9.e+-]*\).*/\1/p' "$tmp/m.jsonl")
	secs=$(awk -v s="$s" -v r="$(wtn_rate)" 'BEGIN { printf "%.2f", s * 128 / r }')
	sed "s/ momentum / ${momentum:?no momentum in the run's config} /" "$tmp/products" |
		build/sgemm_bound 128 1 "$secs" "$window" >"$tmp/bound"
	fastest=$(grep '^{"step"' "$tmp/m.jsonl" | sed 's/.*"samples_per_sec":\([0-9.e+]*\).*/\1/' |
		sort -g | tail -n 1)
	bound=$(sed 's/.*window_samples\/s=\([^ ]*\).*/\1/' "$tmp/bound")
	awk -v w="$fastest" -v b="$bound" 'BEGIN { printf "%.1f\n", 100 * w / b }' >>"$tmp/ratios"
	printf 'round %d: mlp %.0f samples/s, bound %.0f (the bound'"'"'s median pass %.0f, %s) = %s%%\n' \
		"$1" "$fastest" "$bound" "$(sed 's/.* samples\/s=//' "$tmp/bound")" \
		"$(sed 's/.*kernel=\([^ ]*\).*/\1/' "$tmp/bound")" "$(tail -n 1 "$tmp/ratios")" >>"$tmp/pairs"
}
ratio() { awk -v w="$1" -v p="$2" 'BEGIN { printf "%.2fx", w / p }'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }

torch_run lenet 1 1
echo "OpenBLAS on both sides: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)} ($why)," \
     "OPENBLAS_THREAD_TIMEOUT=$OPENBLAS_THREAD_TIMEOUT"
echo "wtn:     --threads T: T OpenBLAS threads and T pool threads (idle pool threads sleep)"
echo "pytorch: $(field version), torch.set_num_threads(T), OMP_NUM_THREADS=T," \
     "OPENBLAS_NUM_THREADS=T, OMP_WAIT_POLICY=$(field omp_wait_policy);" \
     "dense layers on OpenBLAS, convolutions on oneDNN (mkldnn=$(field mkldnn))"
echo "each row: $rounds rounds of wtn then PyTorch (the mlp at 1 thread: at least 3), each side's best round"
echo "$(nproc) CPUs: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-9s %-8s %6s %10s %10s %8s  %s\n' network threads steps wtn pytorch ratio \
	"kernels (wtn/pytorch), threads (wtn; pytorch intra-op+OpenBLAS)"
for net in mlp convnet lenet resnet20; do
	case $net in
	mlp) s=$mlp_steps ;; convnet) s=$conv_steps ;; lenet) s=$lenet_steps ;; resnet20) s=$resnet_steps ;;
	esac
	for t in $threads; do
		# Rounds alternate wtn and PyTorch; each side's best round counts,
		# so a slow spell of a shared machine hits both sides alike.
		w=0 p=0 round=0 n=$rounds paired=
		if [ "$net/$t" = mlp/1 ]; then   # paired with the bound: at least 3 for a median
			paired="--log-every $window"
			[ "$n" -ge 3 ] || n=3
		fi
		while [ "$round" -lt "$n" ]; do
			round=$((round + 1))
			# shellcheck disable=SC2046,SC2086
			wtn_run "$net" "$t" "$s" $(wtn_options "$net") $paired
			[ -z "$diverged" ] || { echo "wtn $net diverged: $(cat "$tmp/err")" >&2; exit 1; }
			w=$(best "$w" "$(wtn_rate)") wk=$(wtn_kernel) wt=$(wtn_threads)
			[ -z "$paired" ] || bound_pair "$round"
			torch_run "$net" "$t" "$s"
			p=$(best "$p" "$(field 'samples\/s')") pk=$(field kernel)
		done
		printf '%-9s %-8s %6s %10.0f %10.0f %8s  %s/%s, %s; %s+%s\n' "$net" "$t" "$s" "$w" "$p" \
			"$(ratio "$w" "$p")" "$wk" "$pk" "$wt" "$(field torch_threads)" "$(field openblas_threads)"
	done
done

if [ -s "$tmp/pairs" ]; then
	echo
	echo "sgemm bound of the MLP (784-1000-1000-10, batch 128: the $(wc -l <"$tmp/products") products of" \
	     "forward, backward and weight gradients, timed alone) right after each 1-thread round of the" \
	     "mlp; each side's fastest $window steps or passes in a row:"
	sed 's/^/  /' "$tmp/pairs"
	sort -n "$tmp/ratios" |
		awk '{ v[NR] = $1 } END { printf "  mlp at 1 thread: %.1f%% of the bound (the median of %d pairs)\n",
		      NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2, NR }'
fi

# Where the convnet's step goes at 2 threads (train --profile).
echo
echo "convnet profile, 2 threads, $conv_steps steps (the five largest rows):"
wtn_run convnet 2 "$conv_steps" --profile
sed -n 's/^profile: /  /p' "$tmp/out"
sed -n '/^layer  *phase/,/^by phase:/p' "$tmp/out" | sed '1d;$d' | sort -k3 -n -r | head -n 5 |
	sed 's/^/  /'

# What each rule costs over bp on the convnet's conv layers, 2 threads.
if [ "${BENCH_RULES:-1}" != 0 ]; then
	echo
	echo "convnet, 2 threads: each rule on conv1 and conv2 against bp (the best of $rounds rounds" \
	     "of bp then the rule, for each rule)"
	for rule in fa usf frsf brsf kp wm dfa; do
		build/wtnc bench/convnet.wtn --feedback "conv*=$rule" -o "$tmp/rule"
		r=0 b=0 round=0
		while [ "$round" -lt "$rounds" ]; do
			round=$((round + 1))
			wtn_run convnet 2 "$conv_steps"
			b=$(best "$b" "$(wtn_rate)")
			wtn_run rule 2 "$conv_steps"
			r=$(best "$r" "$(wtn_rate)")
		done
		printf '%-6s %10.0f samples/s  %s of bp (%.0f)%s\n' "$rule" "$r" "$(ratio "$r" "$b")" "$b" \
			"$diverged"
	done
	# The weight mirror's own cost, from the profile of one run: its
	# mirror steps (the defaults: a noise batch of 128 after every
	# training step) against the rest of the step, which is bp's work.
	build/wtnc bench/convnet.wtn --feedback "conv*=wm" -o "$tmp/rule"
	wtn_run rule 2 "$conv_steps" --profile --set 'conv*.warmup=0'
	awk '/^all +mirror/ { m = $3 } /^all +step/ { s = $3 }
	     END { printf "wm: its mirror steps %.1f ms a training step, %.0f%% of the rest of the step (%.1f ms;" \
	                  " --profile, warmup=0)\n", m, 100 * m / (s - m), s - m }' "$tmp/out"
fi

echo
echo "wtnc compile time (wall, compile and link): fashion_mlp ${ct_mlp} s, lenet ${ct_lenet} s," \
     "resnet20 ${ct_resnet20} s, resnet18 ${ct_resnet18} s"
