#!/bin/sh
# t_reliability.sh: nothing destroyed, bounded costs, clear answers. Each
# case is one that an adversarial review found on an earlier wtn: outputs
# that replaced devices, links or the input; a diverged run that replaced
# a good checkpoint; inputs whose cost exploded or that hung; misleading
# messages. Costs are bounded with generous limits (seconds against what
# used to take minutes, memory against what used to take gigabytes).
cd "$(dirname "$0")/.." || exit 1
WTNC=${WTNC:-build/wtnc}
CC=${CC:-cc}
T=$(mktemp -d /tmp/wtn_rel.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL t_reliability: $*"; fail=1; }
# limit_mem KB: a memory limit for this subshell (not under ASan, which
# reserves terabytes of address space; t_sanitize.sh sets WTN_SANITIZED).
limit_mem() { [ -n "$WTN_SANITIZED" ] || ulimit -v "$1" 2>/dev/null; }

if ! $WTNC tests/runtime/tiny.wtn -o "$T/tiny" >"$T/cc.out" 2>&1; then
	echo "FAIL t_reliability: $WTNC cannot compile tests/runtime/tiny.wtn:"
	head -5 "$T/cc.out"
	exit 1
fi
NET=$T/tiny
net() { "$NET" --threads 1 "$@"; }

# expect STATUS TEXT -- ARGS...: runs the network with ARGS (within 20 s);
# checks the exit status and that stderr holds TEXT on one line.
expect() {
	want=$1 text=$2
	shift 3
	timeout 20 "$NET" --threads 1 "$@" >"$T/out" 2>"$T/err"
	got=$?
	[ "$got" = "$want" ] || bad "$*: exit $got, expected $want ($(head -c 300 "$T/err"))"
	[ -z "$text" ] || grep -qF -- "$text" "$T/err" || bad "$*: stderr lacks '$text': $(head -c 300 "$T/err")"
	[ "$(wc -l <"$T/err")" -le 1 ] || bad "$*: more than one line on stderr: $(head -c 300 "$T/err")"
}
# wtnc_expect STATUS TEXT -- ARGS...: the same for wtnc
wtnc_expect() {
	want=$1 text=$2
	shift 3
	timeout 20 $WTNC "$@" >"$T/out" 2>"$T/err"
	got=$?
	[ "$got" = "$want" ] || bad "wtnc $*: exit $got, expected $want ($(head -c 300 "$T/err"))"
	grep -qF -- "$text" "$T/err" || bad "wtnc $*: stderr lacks '$text': $(head -c 300 "$T/err")"
}

# ---- nothing destroyed: outputs ----
expect 0 "" -- --epochs 1 --save "$T/good.st"
cp "$T/good.st" "$T/good0.st"
mkfifo "$T/fifo"
ln -s "$T/good.st" "$T/link.st"
expect 1 "--save $T/fifo: will not write there: it is a FIFO" -- --epochs 1 --save "$T/fifo"
[ -p "$T/fifo" ] || bad "--save replaced a FIFO"
expect 1 "it is a symbolic link" -- --epochs 1 --save "$T/link.st"
[ -L "$T/link.st" ] || bad "--save replaced a symbolic link"
expect 1 "it is a directory" -- --epochs 1 --metrics "$T"
if [ "$(id -u)" = 0 ] && mknod "$T/null" c 1 3 2>/dev/null; then
	expect 1 "it is a device" -- --epochs 1 --save "$T/null"
	[ -c "$T/null" ] || bad "--save replaced a device node"
fi
# An unwritable --save is found before the first epoch, not after it.
expect 1 "directory $T/none does not exist" -- --epochs 1 --save "$T/none/x.st"
[ -s "$T/out" ] && bad "--save into a missing directory trained first: $(cat "$T/out")"
expect 1 "also the --init checkpoint" -- --epochs 1 --init "$T/good.st" --metrics "$T/good.st"
cmp -s "$T/good.st" "$T/good0.st" || bad "--metrics over the --init checkpoint changed it"

# wtnc never writes over its input, a device or a link.
cp tests/runtime/tiny.wtn "$T/net"
wtnc_expect 1 "has no .wtn suffix: name the binary with -o" -- "$T/net"
cmp -s "$T/net" tests/runtime/tiny.wtn || bad "wtnc replaced its input 'net'"
cp tests/runtime/tiny.wtn "$T/net.wtn"
wtnc_expect 1 "will not write the output over the input" -- "$T/net.wtn" -o "$T/net.wtn"
cmp -s "$T/net.wtn" tests/runtime/tiny.wtn || bad "wtnc -o INPUT replaced its input"
wtnc_expect 1 "it is a FIFO" -- "$T/net.wtn" -c -o "$T/fifo"
wtnc_expect 1 "it is a symbolic link" -- "$T/net.wtn" -o "$T/link.st"
wtnc_expect 1 "cannot write '$T/none/net': $T/none: No such file or directory" -- "$T/net.wtn" -o "$T/none/net"
cmp -s "$T/good.st" "$T/good0.st" || bad "wtnc -o LINK changed the file behind the link"

# A signal while wtnc compiles, or while its linker runs, leaves nothing in
# TMPDIR: not its object, not the linker's own temporaries.
awk 'BEGIN { print "network chain {\n input x[4]\n h0 = dense(x, 4)";
             for (i = 1; i < 60; i++) printf " h%d = dense(h%d, 4)\n", i, i - 1;
             print " loss mse(h59)\n}" }' >"$T/chain.wtn"
mkdir "$T/tmpdir"
for phase in compiling linking; do
	TMPDIR=$T/tmpdir $WTNC "$T/chain.wtn" -o "$T/chain" >/dev/null 2>&1 &
	pid=$!
	i=0
	if [ $phase = compiling ]; then
		while [ -z "$(ls -A "$T/tmpdir")" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		[ -n "$(ls -A "$T/tmpdir")" ] || bad "wtnc made no temporary directory in TMPDIR"
	else
		while [ -z "$(pgrep -P $pid)" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
		[ -n "$(pgrep -P $pid)" ] || bad "wtnc never started its linker"
	fi
	kill -TERM $pid
	wait $pid 2>/dev/null
	left=$(find "$T/tmpdir" -mindepth 1)
	[ -z "$left" ] || bad "wtnc killed while $phase left $left"
	[ -z "$(pgrep -f "$T/chain")" ] || bad "wtnc killed while $phase left its linker running"
	rm -f "$T/chain"
done

# ---- a diverged run keeps the good checkpoint and the metrics so far ----
expect 1 "epoch 1 diverged: test loss" -- --steps 1 --lr 1e30 --init "$T/good.st" --save "$T/good.st" \
	--metrics "$T/m1.jsonl"
grep -qF "checkpoint $T/good.st not written by this run" "$T/err" || bad "no word on the checkpoint: $(cat "$T/err")"
grep -qF "first blow-up: " "$T/err" || bad "divergence without a layer: $(cat "$T/err")"
cmp -s "$T/good.st" "$T/good0.st" || bad "a diverged step replaced the good checkpoint"
[ -e "$T/m1.jsonl" ] && bad "a run that failed in epoch 1 left a metrics file"
# An explosion in epoch 2 (the schedule multiplies lr by 1000): epoch 1's
# checkpoint and metrics stay, and the message names a layer.
sed -e 's/network tiny/network grow/' -e 's/epochs    2/epochs    3/' \
    -e 's/optimizer sgd(lr=0.05, momentum=0.9)/optimizer sgd(lr=0.05)\n    schedule step(every=1, gamma=1000)/' \
    tests/runtime/tiny.wtn >"$T/grow.wtn"
if $WTNC "$T/grow.wtn" -o "$T/grow" >"$T/cc.out" 2>&1; then
	NET=$T/grow
	expect 1 "epoch 2 diverged: train loss" -- --save "$T/grow.st" --metrics "$T/grow.jsonl"
	grep -qF "(checkpoint $T/grow.st keeps epoch 1)" "$T/err" || bad "explosion: checkpoint not kept: $(cat "$T/err")"
	grep -q "first blow-up: \(h\|out\)'s" "$T/err" || bad "explosion: no layer named: $(cat "$T/err")"
	[ "$(grep -c '"epoch":1,' "$T/grow.jsonl")" = 1 ] && [ "$(grep -c '^{"epoch"' "$T/grow.jsonl")" = 1 ] ||
		bad "explosion: metrics should hold epoch 1 alone: $(cat "$T/grow.jsonl")"
	NET=$T/tiny
	net eval --init "$T/grow.st" >/dev/null 2>&1 || bad "explosion: the kept checkpoint does not load"
else
	bad "cannot compile grow.wtn: $(head -3 "$T/cc.out")"
fi

# The blame names the layer that broke: h's weights set to 1e38 make h's
# output overflow, not out's.
hlen=$(od -An -tu8 -N8 "$T/good0.st" | tr -d ' ')
cp "$T/good0.st" "$T/hot.st"
i=0
while [ $i -lt 128 ]; do printf '\231\166\226\176'; i=$((i + 1)); done |
	dd of="$T/hot.st" bs=1 seek=$((8 + hlen)) conv=notrunc 2>/dev/null
expect 1 "non-finite loss at epoch 1 step 1; first blow-up: h's output is not finite" -- --init "$T/hot.st"

# ---- no temporary file left after signals during a save ----
# fsync is where a save has written its temporary file; the shim sends
# SIGTERM there twice: the first asks the run to stop after the save, the
# second kills it in the middle of the save.
printf '#include <signal.h>\nint fsync(int fd) { (void)fd; raise(SIGTERM); raise(SIGTERM); return 0; }\n' >"$T/shim.c"
if $CC -shared -fPIC -o "$T/shim.so" "$T/shim.c" 2>/dev/null; then
	mkdir "$T/sig"
	LD_PRELOAD=$T/shim.so "$T/tiny" --threads 1 --epochs 1 --save "$T/sig/x.st" >/dev/null 2>&1
	got=$?
	[ "$got" = 143 ] || bad "two SIGTERMs during a save: exit $got, expected 143"
	[ -n "$(ls "$T/sig")" ] && bad "a save killed by SIGTERM left: $(ls "$T/sig")"
fi

# ---- SIGTERM and SIGINT: the step finishes, the checkpoint is saved ----
# (sent once the first epoch's metrics show the run is training)
for sig in TERM INT; do
	rm -f "$T/sig.jsonl"
	"$T/tiny" --threads 1 --epochs 1000000 --save "$T/sig.st" --metrics "$T/sig.jsonl" \
		>"$T/out" 2>"$T/err" &
	pid=$!
	i=0
	while [ ! -s "$T/sig.jsonl" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
	kill -$sig $pid
	wait $pid
	got=$?
	case $sig in TERM) want=143 ;; *) want=130 ;; esac
	[ "$got" = "$want" ] || bad "SIG$sig during training: exit $got, expected $want ($(cat "$T/err"))"
	grep -q "^wtn: stopped by SIG$sig after step [0-9]* (epoch [0-9]*); checkpoint $T/sig.st holds it$" "$T/err" ||
		bad "SIG$sig: $(cat "$T/err")"
	net eval --init "$T/sig.st" >/dev/null 2>&1 || bad "SIG$sig: the checkpoint does not load"
	ls "$T" | grep -q 'sig.st.tmp' && bad "SIG$sig: a temporary file was left"
done

# ---- --save-every N: a checkpoint after every N steps, of a sane state ----
cat >"$T/renames.c" <<'EOF2'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
int rename(const char *from, const char *to)
{
	int (*real)(const char *, const char *) = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
	FILE *f = fopen(getenv("RENAME_LOG"), "a");
	if (f) { fprintf(f, "%s\n", to); fclose(f); }
	return real(from, to);
}
EOF2
if $CC -shared -fPIC -o "$T/renames.so" "$T/renames.c" -ldl 2>/dev/null; then
	rm -f "$T/renames.log"
	RENAME_LOG=$T/renames.log LD_PRELOAD=$T/renames.so "$T/tiny" --threads 1 --epochs 1 --steps 7 \
		--save-every 3 --save "$T/every.st" >/dev/null 2>&1 || bad "--save-every 3 failed"
	[ "$(grep -c "every.st" "$T/renames.log" 2>/dev/null)" = 3 ] ||
		bad "--steps 7 --save-every 3: expected saves after steps 3 and 6 and at the end, got $(cat "$T/renames.log" 2>/dev/null)"
	grep -qF '"epoch":"1","step":"7"' "$T/every.st" || bad "--save-every: the last checkpoint is not step 7"
fi
expect 2 "--save-every needs --save FILE" -- --save-every 5
cp "$T/good0.st" "$T/good.st"
expect 1 "first blow-up:" -- --init "$T/good.st" --lr 1e30 --save-every 1 --save "$T/good.st"
cmp -s "$T/good.st" "$T/good0.st" || bad "--save-every saved a diverged state"

# ---- inputs: regular files only, answers without hanging ----
expect 1 "$T/fifo: not a regular file (it is a FIFO)" -- eval --init "$T/fifo"
byte() { printf "\\$(printf %03o "$1")"; }
be32() { byte $(($1 >> 24 & 255)); byte $(($1 >> 16 & 255)); byte $(($1 >> 8 & 255)); byte $(($1 & 255)); }
images() { { be32 2051; be32 "$2"; be32 4; be32 4; head -c $(($2 * 16)) /dev/zero; } >"$1"; }
labels() { { be32 2049; be32 "$2"; head -c "$2" /dev/zero; } >"$1"; }
dataset() {
	mkdir -p "$1"
	images "$1/train-images-idx3-ubyte" 64; labels "$1/train-labels-idx1-ubyte" 64
	images "$1/t10k-images-idx3-ubyte" 32; labels "$1/t10k-labels-idx1-ubyte" 32
}
dataset "$T/good"
expect 0 "" -- --data "$T/good" --epochs 1
# a FIFO in place of a data file
dataset "$T/fifod" && rm "$T/fifod/t10k-labels-idx1-ubyte" && mkfifo "$T/fifod/t10k-labels-idx1-ubyte"
expect 1 "t10k-labels-idx1-ubyte: not a regular file (it is a FIFO)" -- --data "$T/fifod"
# a directory in place of a data file
dataset "$T/dird" && rm "$T/dird/train-images-idx3-ubyte" && mkdir "$T/dird/train-images-idx3-ubyte"
expect 1 "train-images-idx3-ubyte: not a regular file (it is a directory)" -- --data "$T/dird"
# a symbolic link loop is not "missing"
dataset "$T/loop" && rm "$T/loop/train-labels-idx1-ubyte" &&
	ln -s train-labels-idx1-ubyte "$T/loop/train-labels-idx1-ubyte"
expect 1 "train-labels-idx1-ubyte: cannot open: Too many levels of symbolic links" -- --data "$T/loop"
# a corrupt gzip header is not "truncated"
dataset "$T/gzhead" && gzip -n "$T/gzhead/train-images-idx3-ubyte" &&
	printf '\037\213\011' | dd of="$T/gzhead/train-images-idx3-ubyte.gz" conv=notrunc 2>/dev/null
expect 1 "train-images-idx3-ubyte.gz: corrupt compressed data: unknown compression method" -- --data "$T/gzhead"
# garbage after a gzip stream is not part of the data
dataset "$T/gztail" && gzip -n "$T/gztail/t10k-images-idx3-ubyte" &&
	printf 'junk' >>"$T/gztail/t10k-images-idx3-ubyte.gz"
expect 1 "t10k-images-idx3-ubyte.gz: unexpected data after the compressed stream" -- --data "$T/gztail"
# two gzip members one after another are one file, as gzip says
dataset "$T/gzcat" && head -c 100 "$T/gzcat/train-images-idx3-ubyte" | gzip -n >"$T/a.gz" &&
	tail -c +101 "$T/gzcat/train-images-idx3-ubyte" | gzip -n >"$T/b.gz" &&
	rm "$T/gzcat/train-images-idx3-ubyte" && cat "$T/a.gz" "$T/b.gz" >"$T/gzcat/train-images-idx3-ubyte.gz"
expect 0 "" -- --data "$T/gzcat" --epochs 1
# A 3 GB checkpoint (sparse) with a bad header: answered from the header,
# without reading the file (the memory limit would stop a whole read).
printf '\020\000\000\000\000\000\000\000{"a":[1,2,3]}   ' >"$T/big.st"
truncate -s 3G "$T/big.st"
(limit_mem 2000000; "$T/tiny" --threads 1 eval --init "$T/big.st") >"$T/out" 2>"$T/err"
grep -qF "$T/big.st: unknown tensor a" "$T/err" || bad "3 GB checkpoint: $(head -c 300 "$T/err")"
rm -f "$T/big.st"
# 200k keys in a header: the duplicate check is not quadratic
awk 'BEGIN { printf "{"; for (i = 0; i < 200000; i++) printf "\"k%d\":0,", i; printf "\"k1\":0}" }' >"$T/keys.json"
{ n=$(wc -c <"$T/keys.json"); i=0; while [ $i -lt 8 ]; do byte $((n & 255)); n=$((n >> 8)); i=$((i + 1)); done
  cat "$T/keys.json"; } >"$T/keys.st"
expect 1 "header is not valid JSON: at byte" -- eval --init "$T/keys.st"
grep -qF 'duplicate key "k1"' "$T/err" || bad "200k keys: $(head -c 200 "$T/err")"
# a \u0000 in a tensor name, and escapes, never reach the terminal raw
printf '\027\000\000\000\000\000\000\000{"h.w\\u0000x":{}}      ' >"$T/nul.st"
expect 1 "\\u0000 in a string" -- eval --init "$T/nul.st"
printf '\040\000\000\000\000\000\000\000{"\\u001b[2Jh":{"dtype":"F32"}}  ' >"$T/esc.st"
expect 1 'unknown tensor \x1b[2Jh' -- eval --init "$T/esc.st"
grep -q "$(printf '\033')" "$T/err" && bad "an escape from the checkpoint reached stderr raw"

# ---- wtnc: bounded costs, one clear answer ----
# 4,000 definitions of one name (was cubic: a minute and 0.5 GB)
{ echo 'network dup {'; echo ' input x[4]'; i=0
  while [ $i -lt 4000 ]; do echo ' h = dense(x, 10)'; i=$((i + 1)); done
  echo ' loss softmax_cross_entropy(h)'; echo '}'; } >"$T/dup.wtn"
(limit_mem 800000; exec timeout 10 $WTNC --emit-ir "$T/dup.wtn") >/dev/null 2>"$T/err"
[ $? = 1 ] && grep -qF "duplicate name 'h'" "$T/err" || bad "4,000 duplicate names: $(tail -c 300 "$T/err")"
# past the layer limit, the rest of the file is not run (was: minutes)
awk 'BEGIN { print "network many {\n input x[4]\n h0 = dense(x, 4)";
             for (i = 1; i < 60000; i++) printf " h%d = dense(h%d, 4)\n", i, i - 1;
             print " loss softmax_cross_entropy(h59999)\n}" }' >"$T/many.wtn"
(exec timeout 10 $WTNC --emit-ir "$T/many.wtn") >/dev/null 2>"$T/err"
[ $? = 1 ] && grep -qF "too many layers (the limit is 16383)" "$T/err" &&
	[ "$(grep -c error "$T/err")" = 1 ] || bad "60,000 layers: $(tail -c 300 "$T/err")"
# deeply nested calls (was quadratic memory: 0.7 GB for 3,000)
awk 'BEGIN { printf "network nest {\n input x[4]\n h = "; for (i = 0; i < 3000; i++) printf "relu(";
             printf "x"; for (i = 0; i < 3000; i++) printf ")"; print "\n loss mse(h)\n}" }' >"$T/nest.wtn"
(limit_mem 800000; exec timeout 10 $WTNC --emit-ir "$T/nest.wtn") >/dev/null 2>"$T/err"
[ $? = 1 ] && grep -qF "characters long; the limit is 63" "$T/err" || bad "3,000 nested calls: $(tail -c 300 "$T/err")"
# about 1 MB of constants, of block calls with unknown feedback entries,
# and of feedback patterns (were 19 s; 9.5 s and 2.6 GB; 10 s)
awk 'BEGIN { for (i = 0; i < 60000; i++) printf "let c%d = %d\n", i, i;
             print "network k {\n input x[4]\n out = dense(x, c5)\n loss mse(out)\n}" }' >"$T/consts.wtn"
awk 'BEGIN { print "block b(x) {\n h = dense(x, 4)\n return h\n}\nnetwork k {\n input x[4]\n a0 = b(x)";
             for (i = 1; i < 16000; i++) printf " a%d = b(a%d)\n", i, i - 1;
             print " loss mse(a15999)\n feedback {"; for (i = 0; i < 20000; i++) printf "  z%d fa\n", i;
             print " }\n}" }' >"$T/calls.wtn"
awk 'BEGIN { print "network k {\n input x[4]\n h0 = dense(x, 4)";
             for (i = 1; i < 16000; i++) printf " h%d = dense(h%d, 4)\n", i, i - 1;
             print " out = dense(h15999, 3)\n loss mse(out)\n feedback {";
             for (i = 0; i < 50000; i++) printf "  h%d* fa\n", i; print " }\n}" }' >"$T/patterns.wtn"
for f in consts calls patterns; do
	(limit_mem 800000; exec timeout 10 $WTNC --emit-ir "$T/$f.wtn") >/dev/null 2>"$T/err"
	got=$?
	case $f in consts) want=0 ;; *) want=1 ;; esac
	[ "$got" = "$want" ] || bad "1 MB of $f: exit $got, expected $want: $(tail -c 300 "$T/err")"
done
grep -qF "too many feedback patterns (the limit is 1024)" "$T/err" || bad "50,000 patterns: $(head -c 300 "$T/err")"
# an endless input is read up to a limit
(exec timeout 10 $WTNC --emit-ir /dev/zero) >/dev/null 2>"$T/err"
[ $? = 1 ] && grep -qF "'/dev/zero' is larger than 8 MB, the limit for a .wtn file" "$T/err" ||
	bad "wtnc /dev/zero: $(head -c 300 "$T/err")"
# an unknown CPU is a usage error, said once
wtnc_expect 2 "unknown CPU 'nonsense' for --target-cpu" -- tests/runtime/tiny.wtn --target-cpu nonsense -c -o "$T/x.o"
[ "$(grep -c nonsense "$T/err")" = 1 ] || bad "--target-cpu nonsense: $(cat "$T/err")"
[ -e "$T/x.o" ] && bad "--target-cpu nonsense wrote an object file"

[ "$fail" = 0 ]
