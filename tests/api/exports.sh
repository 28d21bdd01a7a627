#!/bin/sh
# libhmig.so exports exactly the functions include/hmig/*.h declares: the
# version script lists them one by one, so a public function added to a
# header but not to src/libhmig.map (or the other way round) fails here.
# Usage: exports.sh LIBHMIG_SO INCLUDE_DIR
set -eu
lib=$1
inc=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Prototypes start a line; static inline helpers are not exported.
grep -hE '^[a-z][^(]*\bhmig_[a-z0-9_]+\(' "$inc"/hmig/*.h | grep -v '^static' |
	grep -oE 'hmig_[a-z0-9_]+\(' | tr -d '(' | sort -u >"$tmp/declared"
nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' |
	sort -u >"$tmp/exported"

if ! cmp -s "$tmp/declared" "$tmp/exported"; then
	echo "declared in include/hmig but not exported (add to src/libhmig.map):"
	comm -23 "$tmp/declared" "$tmp/exported" | sed 's/^/  /'
	echo "exported but declared in no public header:"
	comm -13 "$tmp/declared" "$tmp/exported" | sed 's/^/  /'
	exit 1
fi
echo "libhmig.so exports the $(wc -l <"$tmp/declared") functions include/hmig declares"
