#!/bin/sh
# Installs the Debian packages wtn needs, when run as root and any is missing.
# procps: pgrep for the tests. libclang-rt-14-dev: the sanitizer and libFuzzer runtimes (make fuzz, make test).
# `install-deps.sh bench` adds what the PyTorch peer of make bench needs.
pkgs="procps re2c bison llvm-dev clang libclang-rt-14-dev libopenblas-dev zlib1g-dev libopenmpi-dev openmpi-bin dataset-fashion-mnist"
[ "${1:-}" = bench ] && pkgs="$pkgs python3-torch python3-numpy"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "wtn needs these Debian packages:$missing" >&2
	echo "install them with: sudo apt-get install$missing" >&2
	exit 1
fi
echo "installing:$missing"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
