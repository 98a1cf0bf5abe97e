#!/bin/sh
# Compiled kernels against an independent double-precision reference
# (tests/reference/): random networks from gennet with a random rule per
# layer (bp fa usf frsf brsf kp wm dfa), each checked for forward, loss,
# errors (through W, B or D), backprop's errors (wtn_backward_bp),
# gradients, the update of W, b and B as the rule says, and one mirror
# step of every layer; finite differences of the bp gradients; and
# feedback-alignment properties. The rules' long-run properties are in
# t_rules.sh.
# Conv nets (gennet --conv: conv2d, pools, batchnorm, residual adds,
# flatten, standalone acts, dense head, a random rule per conv and dense
# layer) get the same checks plus the eval forward and batchnorm's
# statistics, and finite differences through batchnorm and an add.
# dropout, layernorm and gelu (tests/reference/new_kinds*.wtn) get the same
# checks and finite differences; layernorm's and gelu's match PyTorch's
# definitions (checked by hand: tools/torch_check_kinds.py).
# Rerun one case: tests/t_reference.sh SEED | cSEED (a conv net); keeps
# its files, prints paths
# WTNC and WTNLIB pick another compiler and runtime library.
cd "$(dirname "$0")/.." || exit 1
NETS=${WTN_REF_NETS:-60}
CONV_NETS=${WTN_REF_CONV_NETS:-40}
FD_SEEDS=${WTN_REF_FD_SEEDS:-101 102 103 104 105 106}   # random smooth nets
FD_CONV_SEEDS=${WTN_REF_FD_CONV_SEEDS:-201 202 203 204}
ONLY=$1
. tests/reference/env.sh
harness_env t_reference "$WTNC" "$LIB"

T=$(mktemp -d) || exit 1
if [ -n "$ONLY" ]; then
	echo "t_reference: files in $T"
else
	trap 'rm -rf "$T"' EXIT INT TERM
fi

$CC $CFLAGS -o "$T/gennet" $R/gennet.c &&
$CC $CFLAGS -o "$T/dumpcmp" $R/dumpcmp.c -lm || { echo "t_reference: building the harness failed"; exit 1; }
harness_objects t_reference "$T"

failed=0
fail() {
	echo "FAIL $*"
	failed=$((failed + 1))
}

# build NAME WTN [WTNC-OPTIONS]: compiles and links $T/NAME.rc
build() {
	name=$1 src=$2
	shift 2
	if ! $WTNC "$src" -c -o "$T/$name.o" "$@" >"$T/$name.log" 2>&1; then
		fail "$name: wtnc rejected $src:"
		sed 's/^/    /' "$T/$name.log" | head -8
		return 1
	fi
	if ! $CC -o "$T/$name.rc" "$T/refcheck.o" "$T/refmath.o" "$T/$name.o" "$LIB" $LIBS \
	        >"$T/$name.log" 2>&1; then
		fail "$name: linking refcheck failed:"
		sed 's/^/    /' "$T/$name.log" | head -8
		return 1
	fi
}

# check NAME RERUN-HINT ARGS...: runs the harness, shows its output on failure
check() {
	name=$1 hint=$2
	shift 2
	"$T/$name.rc" "$@" >"$T/$name.out" 2>&1
	rc=$?
	if [ $rc = 77 ]; then
		echo "skip $name: $(tail -1 "$T/$name.out")"
	elif [ $rc != 0 ]; then
		fail "$name (refcheck $*; rerun: $hint)"
		head -20 "$T/$name.out" | sed 's/^/    /'
	fi
}

# 1. random networks against the reference, two data seeds each
if [ -n "$ONLY" ]; then seeds=${ONLY#c}; else seeds=$(seq 1 "$NETS"); fi
[ "$ONLY" != "${ONLY#c}" ] && seeds=
for s in $seeds; do
	"$T/gennet" "$s" --expect "$T/net$s.expect" >"$T/net$s.wtn"
	build "net$s" "$T/net$s.wtn" || continue
	check "net$s" "tests/t_reference.sh $s" --seed "$s" --expect "$T/net$s.expect"
	check "net$s" "tests/t_reference.sh $s" --seed "$((s + 1000))"
done

# 1b. random conv networks, two data seeds each
if [ -n "$ONLY" ]; then cseeds=${ONLY#c}; [ "$ONLY" = "$cseeds" ] && cseeds=; else cseeds=$(seq 1 "$CONV_NETS"); fi
for s in $cseeds; do
	"$T/gennet" "$s" --conv --expect "$T/conv$s.expect" >"$T/conv$s.wtn"
	build "conv$s" "$T/conv$s.wtn" || continue
	check "conv$s" "tests/t_reference.sh c$s" --seed "$s" --expect "$T/conv$s.expect"
	check "conv$s" "tests/t_reference.sh c$s" --seed "$((s + 1000))"
done
[ -n "$ONLY" ] && { [ $failed = 0 ] && echo "seed $ONLY: ok"; [ $failed = 0 ]; exit; }

# 2. finite differences: a fixed smooth bp network and a few random ones
if build fd_net $R/fd_net.wtn; then
	check fd_net "tests/reference/fd_net.wtn" --fd --seed 1
	check fd_net "tests/reference/fd_net.wtn" --fd --seed 2 --n 1
fi
for s in $FD_SEEDS; do
	"$T/gennet" "$s" --smooth --bp-only >"$T/fd$s.wtn"
	build "fd$s" "$T/fd$s.wtn" && check "fd$s" "gennet $s --smooth --bp-only" --fd --seed "$s"
done
# conv: batchnorm, a residual add, pools; and random smooth conv nets
if build fd_conv $R/fd_conv.wtn; then
	check fd_conv "tests/reference/fd_conv.wtn" --fd --seed 1
	check fd_conv "tests/reference/fd_conv.wtn" --fd --seed 2
fi
for s in $FD_CONV_SEEDS; do
	"$T/gennet" "$s" --conv --smooth --bp-only >"$T/fdc$s.wtn"
	build "fdc$s" "$T/fdc$s.wtn" && check "fdc$s" "gennet $s --conv --smooth --bp-only" --fd --seed "$s"
done

# 3. feedback alignment: B fixed, W moves, error not backprop's; and a twin
# with the output layer on bp, run from the same start
sed 's/^\( *out *\)fa$/\1bp/' $R/fa_net.wtn >"$T/bp_twin.wtn"
if build fa_net $R/fa_net.wtn && build bp_twin "$T/bp_twin.wtn"; then
	check fa_net "tests/reference/fa_net.wtn" --fa-props --seed 3
	check fa_net "tests/reference/fa_net.wtn" --seed 3
	"$T/fa_net.rc" --dump "$T/fa.dump" --seed 5 &&
	"$T/bp_twin.rc" --dump "$T/bp.dump" --seed 5 &&
	"$T/fa_net.rc" --dump "$T/fa_bw.dump" --seed 5 --b-equals-w &&
	"$T/bp_twin.rc" --dump "$T/bp_bw.dump" --seed 5 --b-equals-w ||
		fail "fa twin: a dump run failed"
	cmp_dump() {
		"$T/dumpcmp" "$T/$1" "$T/$2" "$3" "$4" "$5" ||
			fail "fa twin: $3 in $1 vs $2: expected $4"
	}
	cmp_dump fa.dump bp.dump out.weight same 1e-6    # same d_out, same input
	cmp_dump fa.dump bp.dump h2.weight differ 1e-5   # error via B vs via W
	cmp_dump fa.dump bp.dump h1.weight differ 1e-5
	cmp_dump fa_bw.dump bp_bw.dump h2.weight same 1e-5   # B = W: fa is bp
	cmp_dump fa_bw.dump bp_bw.dump h1.weight same 1e-5
fi

# 4. dropout, layernorm and gelu: the reference with two seeds (and the
# runtime's dropout masks), then finite differences with every layer on bp
for net in new_kinds new_kinds_conv; do
	if build "$net" $R/$net.wtn; then
		check "$net" "tests/reference/$net.wtn" --seed 1
		check "$net" "tests/reference/$net.wtn" --seed 2
	fi
done
build fd_new_kinds $R/new_kinds.wtn --feedback h1=bp --feedback h2=bp &&
	check fd_new_kinds "new_kinds.wtn, all bp" --fd --seed 1
build fd_new_kinds_conv $R/new_kinds_conv.wtn --feedback c1=bp &&
	check fd_new_kinds_conv "new_kinds_conv.wtn, all bp" --fd --seed 1

# 5. convs on the register-tiled direct path (multiples of eight channels)
if build conv_tiled $R/conv_tiled.wtn; then
	check conv_tiled "tests/reference/conv_tiled.wtn" --seed 1
	check conv_tiled "tests/reference/conv_tiled.wtn" --seed 2
fi
sed 's/act=relu/act=tanh/' $R/conv_tiled.wtn >"$T/fd_conv_tiled.wtn"   # smooth, for differences
build fd_conv_tiled "$T/fd_conv_tiled.wtn" --feedback c3=bp &&
	check fd_conv_tiled "conv_tiled.wtn, relu as tanh, all bp" --fd --seed 1
# and the tiled forward on one and three input channels, tiling maxpools
if build conv_tiled_few $R/conv_tiled_few.wtn; then
	check conv_tiled_few "tests/reference/conv_tiled_few.wtn" --seed 1
	check conv_tiled_few "tests/reference/conv_tiled_few.wtn" --seed 2
fi
# smooth: maxpool's switching argmax would break the differences
sed -e 's/act=relu/act=tanh/' -e 's/maxpool/avgpool/' $R/conv_tiled_few.wtn >"$T/fd_conv_tiled_few.wtn"
build fd_conv_tiled_few "$T/fd_conv_tiled_few.wtn" --feedback c2=bp &&
	check fd_conv_tiled_few "conv_tiled_few.wtn, relu as tanh, maxpool as avgpool, all bp" --fd --seed 1
# and Winograd's F(4x4, 3x3) and F(2x2, 5x5) for the forwards, data and
# weight gradients of such convs (wino_tile, wino_wgrad), in every
# variant the net names
if build conv_winograd $R/conv_winograd.wtn; then
	check conv_winograd "tests/reference/conv_winograd.wtn" --seed 1
	check conv_winograd "tests/reference/conv_winograd.wtn" --seed 2
	$WTNC $R/conv_winograd.wtn --emit-llvm -o "$T/conv_winograd.ll"
	n=$(grep -c '^define.*@"wino_tile' "$T/conv_winograd.ll")
	[ "$n" = 9 ] || fail "conv_winograd: $n Winograd forwards and data gradients compiled, expected 9"
	n=$(grep -c '^define.*@"wino_wgrad\.' "$T/conv_winograd.ll")
	[ "$n" = 5 ] || fail "conv_winograd: $n Winograd weight gradients compiled, expected 5"
fi
# and the binary says which passes are Winograd, and none with --direct-convs
cat >"$T/wino_info.want" <<'EOF2'
winograd F(2x2, 3x3), data gradient: c5
winograd F(2x2, 5x5), forward, data and weight gradients: c3 c4
winograd F(4x4, 3x3), forward and weight gradient: c1 c5
winograd F(4x4, 3x3), forward, data and weight gradients: c2
EOF2
if $WTNC $R/conv_winograd.wtn -o "$T/conv_winograd.bin" >"$T/wino_bin.log" 2>&1 &&
   $WTNC $R/conv_winograd.wtn --direct-convs -o "$T/conv_direct.bin" >>"$T/wino_bin.log" 2>&1; then
	"$T/conv_winograd.bin" info | grep '^winograd' >"$T/wino_info.got"
	cmp -s "$T/wino_info.want" "$T/wino_info.got" ||
		fail "conv_winograd: info names other Winograd passes: $(cat "$T/wino_info.got")"
	! "$T/conv_direct.bin" info | grep -q '^winograd' ||
		fail "conv_winograd: --direct-convs still compiled Winograd passes"
	n=$($WTNC $R/conv_winograd.wtn --direct-convs --emit-llvm -o - | grep -c '^define.*@"wino_')
	[ "$n" = 0 ] || fail "conv_winograd: --direct-convs compiled $n Winograd functions"
else
	fail "conv_winograd: wtnc could not build the binaries: $(head -3 "$T/wino_bin.log")"
fi
# the weight mirror's steps on the same kernels: Winograd (c2, c3), tiled
# (conv_tiled's c3) and the tiled forward on one input channel
# (conv_tiled_few's c1)
build wm_conv_winograd $R/conv_winograd.wtn --feedback c2=wm --feedback c3=wm &&
	check wm_conv_winograd "conv_winograd.wtn, c2 and c3 on wm" --seed 1
build wm_conv_tiled $R/conv_tiled.wtn --feedback c3=wm &&
	check wm_conv_tiled "conv_tiled.wtn, c3 on wm" --seed 1
build wm_conv_tiled_few $R/conv_tiled_few.wtn --feedback c1=wm &&
	check wm_conv_tiled_few "conv_tiled_few.wtn, c1 on wm" --seed 1
# smaller images for the differences (a fifth of the time; every pass
# still Winograd)
sed -e 's/act=relu/act=tanh/' -e 's/maxpool/avgpool/' -e 's/input x\[8, 12, 20\]/input x[8, 8, 12]/' \
	$R/conv_winograd.wtn >"$T/fd_conv_winograd.wtn"
grep -q 'input x\[8, 8, 12\]' "$T/fd_conv_winograd.wtn" || fail "fd_conv_winograd: the images were not made smaller"
build fd_conv_winograd "$T/fd_conv_winograd.wtn" --feedback c4=bp &&
	check fd_conv_winograd "conv_winograd.wtn on 8x12 images, relu as tanh, maxpool as avgpool, all bp" --fd --seed 1

# 6. residual blocks: batchnorm, adds (one of a tensor to itself), a
# standalone relu and global average pooling, as the parallel loops run
# them (t_parallel: at several threads)
if build resblock $R/resblock.wtn; then
	check resblock "tests/reference/resblock.wtn" --seed 1
	check resblock "tests/reference/resblock.wtn" --seed 2
fi
sed 's/act=relu/act=tanh/; s/relu(r2)/tanh(r2)/' $R/resblock.wtn >"$T/fd_resblock.wtn"   # smooth, for differences
build fd_resblock "$T/fd_resblock.wtn" && check fd_resblock "resblock.wtn, relu as tanh" --fd --seed 1

if [ $failed = 0 ]; then
	echo "t_reference: $NETS random dense and $CONV_NETS conv networks, finite differences, fa properties, dropout, layernorm, gelu, tiled and Winograd convs and residual blocks ok"
else
	echo "t_reference: $failed failing case(s)"
fi
[ $failed = 0 ]
