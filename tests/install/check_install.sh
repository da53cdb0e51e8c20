#!/usr/bin/env bash
# Checks what `meson install` puts in place: kvnode, kvctl, kvsim and kvbench in the
# bindir; the client headers under include/kvraft/; the static library; kvraft-client.pc.
# Then builds client_example.cc with nothing but `pkg-config --cflags --libs
# kvraft-client`, starts the installed kvnode (a single-node cluster) and runs the
# example against it.
#
#   check_install.sh BUILD_DIR        quick (the meson test 'install', a few seconds):
#                                     installs BUILD_DIR into a temporary DESTDIR and
#                                     points the installed .pc file at it
#   check_install.sh --fresh [PREFIX] the full check: configures a release build in
#                                     /tmp/inst-build with --prefix=PREFIX (default
#                                     /tmp/kvprefix), builds, installs, checks (minutes)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/kvraft-install-check.XXXXXX)
node_pid=
cleanup() {
  if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check_install: $*" >&2; exit 1; }

extra_flags=()
if [ "${1:-}" = "--fresh" ]; then
  prefix=${2:-/tmp/kvprefix}
  build=/tmp/inst-build
  rm -rf "$build"
  meson setup "$build" "$src" --prefix="$prefix" --buildtype=release >/dev/null
  ninja -C "$build" install >/dev/null
  root=$prefix
else
  build=${1:?usage: check_install.sh BUILD_DIR | --fresh [PREFIX]}
  build=$(cd "$build" && pwd)
  prefix=$(meson introspect --buildoptions "$build" |
           python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
  sanitize=$(meson introspect --buildoptions "$build" |
             python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"))')
  # A sanitized build's library needs the sanitizer runtime at link time.
  if [ "$sanitize" != "none" ]; then extra_flags+=("-fsanitize=$sanitize"); fi
  DESTDIR="$work/dest" meson install -C "$build" --no-rebuild --quiet >/dev/null
  root=$work/dest$prefix
fi

# Where meson put things (bindir/includedir/libdir as configured).
dirs=$(meson introspect --buildoptions "$build" |
       python3 -c 'import json,sys; o={x["name"]: x["value"] for x in json.load(sys.stdin)}; print(o["bindir"], o["includedir"], o["libdir"])')
read -r bindir includedir libdir <<<"$dirs"
for exe in kvnode kvctl kvsim kvbench; do
  [ -x "$root/$bindir/$exe" ] || fail "$root/$bindir/$exe is not installed"
done
for h in net/kv_client.h core/command.h core/membership.h core/shared_bytes.h core/types.h; do
  [ -f "$root/$includedir/kvraft/$h" ] || fail "header kvraft/$h is not installed"
done
[ -f "$root/$libdir/libkvraft-client.a" ] || fail "libkvraft-client.a is not installed"
pc_dir=$root/$libdir/pkgconfig
[ -f "$pc_dir/kvraft-client.pc" ] || fail "kvraft-client.pc is not installed"
if [ "${1:-}" != "--fresh" ]; then
  # The DESTDIR copy: make its prefix point where it actually is.
  sed -i "s|^prefix=.*|prefix=$root|" "$pc_dir/kvraft-client.pc"
fi

export PKG_CONFIG_PATH=$pc_dir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
flags=$(pkg-config --cflags --libs kvraft-client) || fail "pkg-config kvraft-client failed"
# shellcheck disable=SC2086  # the flags are words
c++ -O1 "${extra_flags[@]}" -o "$work/client_example" "$here/client_example.cc" $flags ||
  fail "client_example does not build with: $flags"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
raft=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$root/$bindir/kvnode" --id 1 --data-dir "$work/data" --client-addr "127.0.0.1:$port" \
  --raft-addr "127.0.0.1:$raft" 2>"$work/kvnode.log" &
node_pid=$!
"$work/client_example" "127.0.0.1:$port" || { cat "$work/kvnode.log" >&2; fail "client_example failed"; }
"$root/$bindir/kvctl" --endpoints "127.0.0.1:$port" get greeting | grep -qx hello ||
  fail "the installed kvctl does not read what the example wrote"
echo "check_install: ok ($root)"
