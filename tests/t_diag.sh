#!/bin/sh
# Golden diagnostics: every tests/diag/NAME.wtn must make `wtnc --emit-ir`
# print exactly NAME.err on stderr and exit 1 (warn_*.wtn: exit 0).
# NAME.args, if present, holds extra command-line words, one per line.
# The example program must compile cleanly.
cd "$(dirname "$0")/.." || exit 1
wtnc=${WTNC:-build/wtnc}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
for src in tests/diag/*.wtn; do
	name=${src%.wtn}
	n=$((n + 1))
	want=1
	case $(basename "$name") in warn_*) want=0 ;; esac
	set --
	if [ -f "$name.args" ]; then
		while IFS= read -r word; do set -- "$@" "$word"; done < "$name.args"
	fi
	"$wtnc" --emit-ir "$@" "$src" > /dev/null 2> "$tmp/err"
	status=$?
	if [ "$status" != "$want" ]; then
		echo "FAIL $src: exit status $status, expected $want"
		fail=$((fail + 1))
	elif ! diff -u "$name.err" "$tmp/err" > "$tmp/diff"; then
		echo "FAIL $src: stderr differs from $name.err"
		cat "$tmp/diff"
		fail=$((fail + 1))
	fi
done
# Every example compiles cleanly: no error, no warning.
for ex in examples/*.wtn; do
	"$wtnc" --emit-ir "$ex" > "$tmp/ir" 2> "$tmp/err"
	status=$?
	if [ "$status" != 0 ] || [ -s "$tmp/err" ] || [ ! -s "$tmp/ir" ]; then
		echo "FAIL $ex: exit status $status, stderr:"
		cat "$tmp/err"
		fail=$((fail + 1))
	fi
done
# Never crash (status > 1 means a signal or an abort) on junk input.
for junk in "" "network" "network n {" "{{{{{{{{{{" "))))" "$(printf '\001\377\000x')" \
            "network n { h = dense($(printf '%0500d' 0 | tr 0 '('))" "let a = -"; do
	printf '%s' "$junk" > "$tmp/junk.wtn"
	"$wtnc" --emit-ir "$tmp/junk.wtn" > /dev/null 2>&1
	status=$?
	if [ "$status" != 1 ]; then
		echo "FAIL junk input '$junk': exit status $status, expected 1"
		fail=$((fail + 1))
	fi
done
[ "$fail" = 0 ] || echo "t_diag: $fail of $n golden files (plus example, junk) failed"
[ "$fail" = 0 ]
