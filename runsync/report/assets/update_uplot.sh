#!/usr/bin/env bash
# Rebuild the vendored uPlot files in this directory from its npm package and verify them.
#
#   ./update_uplot.sh            npm pack uplot@$VERSION into a temp dir, check the tarball's sha256,
#                                copy dist/uPlot.iife.min.js, dist/uPlot.min.css and LICENSE here,
#                                then check each file's sha256
#   ./update_uplot.sh --check    only check the files here against the recorded hashes (no network)
#   NEW_VERSION=1.6.33 ./update_uplot.sh --bump
#                                fetch another version and print the hashes to record below
#                                (review the upstream changes, update VERSION and the hashes, rerun)
#
# Uses the npm client as configured on the machine (its registry setting); needs npm, tar, sha256sum.
set -euo pipefail

VERSION=1.6.32
TARBALL_SHA256=4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d
FILES=(uPlot.iife.min.js uPlot.min.css LICENSE)
FILE_SHA256=(
  19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f
  df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04
  8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd
)

here=$(cd "$(dirname "$0")" && pwd)

check_files() {
  local bad=0 i got
  for i in "${!FILES[@]}"; do
    got=$(sha256sum "$here/${FILES[$i]}" | cut -d' ' -f1)
    if [ "$got" != "${FILE_SHA256[$i]}" ]; then
      echo "MISMATCH ${FILES[$i]}: sha256 $got, recorded ${FILE_SHA256[$i]}" >&2
      bad=1
    fi
  done
  [ "$bad" -eq 0 ] && echo "uPlot $VERSION: ${FILES[*]} match the recorded sha256"
  return "$bad"
}

fetch() {  # fetch VERSION DIR -> prints the tarball path
  (cd "$2" && npm pack --silent "uplot@$1" >/dev/null)
  echo "$2/uplot-$1.tgz"
}

case "${1:-}" in
  --check)
    check_files
    ;;
  --bump)
    : "${NEW_VERSION:?set NEW_VERSION=x.y.z}"
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    tgz=$(fetch "$NEW_VERSION" "$tmp")
    tar -xzf "$tgz" -C "$tmp"
    echo "VERSION=$NEW_VERSION"
    echo "TARBALL_SHA256=$(sha256sum "$tgz" | cut -d' ' -f1)"
    for f in dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE; do
      echo "  $(sha256sum "$tmp/package/$f" | cut -d' ' -f1)  # $(basename "$f")"
    done
    grep -m1 '"license"' "$tmp/package/package.json"
    ;;
  "")
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    tgz=$(fetch "$VERSION" "$tmp")
    got=$(sha256sum "$tgz" | cut -d' ' -f1)
    if [ "$got" != "$TARBALL_SHA256" ]; then
      echo "uplot-$VERSION.tgz has sha256 $got, recorded $TARBALL_SHA256: refusing to use it" >&2
      exit 1
    fi
    tar -xzf "$tgz" -C "$tmp"
    cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$tmp/package/LICENSE" "$here/"
    check_files
    ;;
  *)
    echo "usage: $0 [--check | --bump]" >&2
    exit 2
    ;;
esac
