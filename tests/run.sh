#!/bin/sh
# Runs every tests/t_*.sh; prints one line per group and fails if any fails.
cd "$(dirname "$0")/.." || exit 1
failed=0
for t in tests/t_*.sh; do
	start=$(date +%s)
	if sh "$t"; then status=ok; else status=FAIL; failed=$((failed + 1)); fi
	printf '%-4s %s (%ss)\n' "$status" "$t" "$(($(date +%s) - start))"
done
[ "$failed" = 0 ] && echo "all test groups passed" || echo "$failed test group(s) failed"
[ "$failed" = 0 ]
