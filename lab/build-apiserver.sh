#!/usr/bin/env bash
# Build a real kube-apiserver from Debian bookworm's `kubernetes` source package (1.20.2, ships vendor/).
# Usage: build-apiserver.sh CACHE_DIR MIRROR_URI
# Leaves CACHE_DIR/kube-apiserver (static binary). Uses a private apt configuration for the deb-src
# line; the machine's own apt sources are not touched.
set -euo pipefail
cache=$1 mirror=$2
work="$cache/apiserver-build"
apt_dir="$cache/apt"
mkdir -p "$work" "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/sources.list.d"
echo "deb-src $mirror bookworm main" > "$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
          -o "APT::Sandbox::User=root")
echo "[lab] apiserver: fetching bookworm's kubernetes source package index"
apt-get "${apt_opts[@]}" -q update >/dev/null
cd "$work"
if ! ls -d kubernetes-*/ >/dev/null 2>&1; then
  echo "[lab] apiserver: downloading and unpacking the kubernetes source package"
  apt-get "${apt_opts[@]}" -q source kubernetes/bookworm >/dev/null
fi
src=$(ls -d "$work"/kubernetes-*/ | head -1); src=${src%/}
mkdir -p "$work/.go/src/k8s.io"
ln -sfn "$src" "$work/.go/src/k8s.io/kubernetes"
echo "[lab] apiserver: compiling cmd/kube-apiserver (about 3-6 minutes on 2 cores)"
cd "$work/.go/src/k8s.io/kubernetes"
GOPATH="$work/.go" GOCACHE="$work/.gocache" CGO_ENABLED=0 GOFLAGS=-mod=vendor \
  make WHAT=cmd/kube-apiserver >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }
bin=$(find "$work/.go/src/k8s.io/kubernetes/_output" -type f -name kube-apiserver -perm -u+x | head -1)
install -m 0755 "$bin" "$cache/kube-apiserver.tmp"
"$cache/kube-apiserver.tmp" --version
mv "$cache/kube-apiserver.tmp" "$cache/kube-apiserver"
