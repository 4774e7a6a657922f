#!/usr/bin/env bash
# Builds a kind node image offline, from Debian's packages and Go modules only: no image is pulled.
#
# What kind's own `kind build node-image` does (pkg/build/nodeimage of the pinned kind), with every
# piece made here:
#   - the node base: a bookworm root filesystem (mmdebstrap) with systemd, containerd, runc and the
#     CNI plugins from Debian, and kind's entrypoint, systemd units and containerd config taken from
#     the pinned kind module (images/base/files), set up as kind's base Dockerfile does;
#   - kubeadm, kubelet, kubectl: the pinned, version-stamped Kubernetes build of the rig
#     (hack/build-tools.sh k8s), copied to /usr/bin;
#   - the images kubeadm and kind run, built FROM scratch or FROM a small bookworm image with the
#     network tools, tagged exactly as `kubeadm config images list` and kind's manifests name them,
#     and imported into the node's containerd (namespace k8s.io) so that nothing is pulled;
#   - /kind/version and /kind/manifests: kind's storage manifest as the pinned kind writes it, and
#     for the pod network hack/kind/network.yaml (kindnetd is not served by the module proxy).
# Where a version kubeadm names is not served by the module proxy, the nearest served patch release
# is built under kubeadm's tag and its real version is recorded in the image label
# dev.kubeforge.source-version: etcd is the rig's pinned etcd, CoreDNS the next patch release.
#
# The image is $NODE_REPO:<Kubernetes version>, labelled with a hash of all its inputs (this
# script, hack/kind/network*, the Go pins, the Debian mirrors); when it exists, nothing is done.
# Usage: hack/kind-node-image.sh [--check]   (root; dockerd is started by hack/docker.sh up)
#   --check: build nothing; exit status 0 when the node image is built and up to date, else 1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_REPO=${KUBEFORGE_KIND_NODE_REPO:-kubeforge.local/kind-node}
SUITE=bookworm
INPUTS_LABEL=dev.kubeforge.inputs
SOURCE_LABEL=dev.kubeforge.source-version
WORK=$KUBEFORGE_CACHE/kind-node
LOG=$KUBEFORGE_CACHE/logs/kind-node-image.log
GO_PINS=(k8s etcd kind coredns local-path-provisioner)
# kind's base image packages (images/base/Dockerfile), less those for rootless and network storage,
# plus what kind builds from source there and Debian packages: containerd, runc, CNI plugins.
NODE_PACKAGES=systemd,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,e2fsprogs,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins
# The base of kube-proxy, the network agent and the local-path images: iptables and its friends.
NET_PACKAGES=iptables,nftables,conntrack,ipset,iproute2,kmod,ca-certificates,curl,jq
PATH_ENV='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

module_version() { (cd "$HACK_DIR/tools/$1" && GOTOOLCHAIN=local go list -m -f '{{.Version}}' "$2"); }
kube_version=$(module_version k8s k8s.io/kubernetes)
node_image=$NODE_REPO:$kube_version

# The bookworm suites of the Debian archive that apt uses here, as sources.list lines.
debian_sources() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' 2>/dev/null |
    awk -v suite="$SUITE" '$1 ~ /debian/ && $2 ~ "^" suite "(-updates|-security)?$" {
      print "deb " $1 " " $2 " main" }' | sort -u
}
sources=$(debian_sources)
[ -n "$sources" ] || sources="deb http://deb.debian.org/debian $SUITE main"
mapfile -t mirrors <<<"$sources"

image_inputs() { docker image inspect -f "{{ index .Config.Labels \"$INPUTS_LABEL\" }}" "$1" 2>/dev/null || true; }

inputs=$(
  {
    cat "${BASH_SOURCE[0]}" "$HACK_DIR"/kind/network*
    for pin in "${GO_PINS[@]}"; do cat "$HACK_DIR/tools/$pin"/*; done
    echo "$sources"
  } | sha256sum | cut -c1-16
)
if [ "${1:-}" = --check ]; then
  "$HACK_DIR/docker.sh" status && [ "$(image_inputs "$node_image")" = "$inputs" ]
  exit
fi
mkdir -p "$WORK" "$(dirname "$LOG")"
"$HACK_DIR/docker.sh" up
if [ "$(image_inputs "$node_image")" = "$inputs" ]; then
  echo "kubeforge: $node_image is up to date" >&2
  exit 0
fi
# mmdebstrap for the root filesystems, gcc and a static libc for pause.
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v gcc >/dev/null || missing+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -f "/usr/lib/$(gcc -dumpmachine 2>/dev/null)/libc.a" ] ||
  missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "${missing[*]} missing, and installing them needs root"
  echo "kubeforge: installing ${missing[*]} with apt (first time only)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"; } >"$WORK/apt.log" 2>&1 || die "installing ${missing[*]} failed (read $WORK/apt.log)"
fi
"$HACK_DIR/build-tools.sh" "${GO_PINS[@]}"
bin=$KUBEFORGE_BIN
# An unstamped kubeadm would name images of a placeholder version.
[ "$("$bin/kubeadm" version -o short)" = "$kube_version" ] || die "$bin/kubeadm is not $kube_version"
echo "kubeforge: building $node_image (log: $LOG)" >&2
start=$SECONDS
: >"$LOG"
step() { echo "kubeforge: $*" >&2; echo "=== $*" >>"$LOG"; }

kind_dir=$(cd "$HACK_DIR/tools/kind" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}' sigs.k8s.io/kind)
k8s_dir=$(cd "$HACK_DIR/tools/k8s" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}' k8s.io/kubernetes)

# rootfs_image <image> <extra inputs> <packages> <Dockerfile lines> [mmdebstrap options]
# A bookworm minbase root filesystem as a Docker image, rebuilt only when its inputs change.
# The Dockerfile lines set its metadata (docker import takes no STOPSIGNAL).
rootfs_image() {
  local image=$1 extra=$2 packages=$3 metadata=$4 hash
  shift 4
  hash=$(echo "$extra $packages $metadata $* $sources" | sha256sum | cut -c1-16)
  [ "$(image_inputs "$image")" = "$hash" ] && return 0
  step "building $image from Debian $SUITE"
  # The merged-usr hook lays out /usr itself, sparing the usrmerge package and the Perl it pulls in.
  mmdebstrap --variant=minbase --include="$packages" --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='APT::Install-Recommends "false"' \
    "$@" --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
    "$SUITE" "$WORK/rootfs.tar" "${mirrors[@]}" >>"$LOG" 2>&1 || die "mmdebstrap failed (read $LOG)"
  docker import "$WORK/rootfs.tar" "$image" >>"$LOG"
  rm -f "$WORK/rootfs.tar"
  printf 'FROM %s\n%s\nLABEL %s=%s\n' "$image" "$metadata" "$INPUTS_LABEL" "$hash" |
    DOCKER_BUILDKIT=0 docker build --tag "$image" - >>"$LOG" 2>&1 || die "building $image failed (read $LOG)"
}

# kind's base image files, with the modes its Dockerfile gives them, and the set-up of its RUN lines.
step "node base"
rm -rf "$WORK/files" && cp -r "$kind_dir/images/base/files" "$WORK/files" && chmod -R u+w,go+rX "$WORK/files"
find "$WORK/files" -type f -exec chmod 0644 {} + && chmod 0755 "$WORK"/files/usr/local/bin/* "$WORK"/files/kind/bin/*
cat >"$WORK/node-setup.sh" <<'SETUP'
set -eu
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
  /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
  /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>/etc/systemd/journald.conf
ln -sf /usr/lib/systemd/systemd /sbin/init
# kind's units and scripts expect its own builds in /usr/local and /opt/cni/bin.
ln -sf /usr/bin/containerd /usr/local/bin/containerd
mkdir -p /opt/cni/bin /etc/kubernetes/manifests
ln -sf /usr/lib/cni/* /opt/cni/bin/
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
ctr oci spec |
  jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
  jq 'del(.process.rlimits)' >/etc/containerd/cri-base.json
# Kubernetes 1.35+ kubelets refuse a cgroup v1 host unless told otherwise (KEP-5573).
sed -i 's#^KUBELET_EXTRA_ARGS=.*#& --fail-cgroupv1=false#' /etc/default/kubelet
SETUP
node_base=kubeforge.local/kind-base:$SUITE
node_base_files=$(cd "$WORK" && find files node-setup.sh -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)
rootfs_image "$node_base" "$node_base_files" "$NODE_PACKAGES" \
  "$(printf '%s\n' 'ENV container=docker' 'STOPSIGNAL SIGRTMIN+3' \
    'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]')" \
  --customize-hook="sync-in $WORK/files /" \
  --customize-hook="copy-in $WORK/node-setup.sh /tmp" \
  --customize-hook='chroot "$1" sh /tmp/node-setup.sh && rm "$1"/tmp/node-setup.sh'
net_base=kubeforge.local/kind-netbase:$SUITE
rootfs_image "$net_base" "" "$NET_PACKAGES" "ENV $PATH_ENV"

# The references kubeadm will run, e.g. registry.k8s.io/etcd:3.6.8-0.
mapfile -t kubeadm_images < <("$bin/kubeadm" config images list --kubernetes-version "$kube_version")
declare -A kubeadm_ref
for component in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause; do
  for ref in "${kubeadm_images[@]}"; do [[ $ref == */$component:* ]] && kubeadm_ref[$component]=$ref; done
  [ -n "${kubeadm_ref[$component]:-}" ] || die "kubeadm $kube_version names no $component image"
done
# kind's own images: the storage manifest's, and the sandbox image of its containerd config.
sandbox_image=$(sed -n 's/^ *sandbox_image = "\(.*\)"$/\1/p' "$WORK/files/etc/containerd/config.toml")
# go_const <file> <name>: the value of a Go string constant made of literals and other constants.
go_const() {
  python3 - "$1" "$2" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
consts = {m[1]: m[2] for m in re.finditer(r'^const (\w+) = "([^"]*)"', src, re.M)}
expr = re.search(r"^const %s = (`[^`]*`(?:\s*\+\s*(?:\w+|`[^`]*`))*)" % sys.argv[2], src, re.M)[1]
parts = re.findall(r"`([^`]*)`|(\w+)", expr)
print("".join(raw if raw or not name else consts[name] for raw, name in parts), end="")
PY
}
storage_go=$kind_dir/pkg/build/nodeimage/const_storage.go
mkdir -p "$WORK/manifests"
go_const "$storage_go" defaultStorageManifest >"$WORK/manifests/default-storage.yaml"
provisioner_image=$(sed -n 's/^const storageProvisionerImage = "\(.*\)"$/\1/p' "$storage_go")
helper_image=$(sed -n 's/^const storageHelperImage = "\(.*\)"$/\1/p' "$storage_go")
network_image=kubeforge.local/kind-network:$inputs
sed "s#@NETWORK_IMAGE@#$network_image#" "$HACK_DIR/kind/network.yaml" >"$WORK/manifests/default-cni.yaml"

# image <ref> <source version> <Dockerfile body> <files...>: builds one image from those files.
built_images=()
image() {
  local ref=$1 version=$2 body=$3 context=$WORK/context
  shift 3
  rm -rf "$context" && mkdir -p "$context"
  [ $# -eq 0 ] || cp "$@" "$context/"
  printf '%s\nLABEL %s=%s\n' "$body" "$SOURCE_LABEL" "$version" >"$context/Dockerfile"
  DOCKER_BUILDKIT=0 docker build --tag "$ref" "$context" >>"$LOG" 2>&1 || die "building $ref failed (read $LOG)"
  built_images+=("$ref")
}
step "component images"
for component in kube-apiserver kube-controller-manager kube-scheduler; do
  image "${kubeadm_ref[$component]}" "$kube_version" \
    "FROM scratch
COPY $component /usr/local/bin/$component
ENV $PATH_ENV" "$bin/$component"
done
# kubeadm's DaemonSet runs /usr/local/bin/kube-proxy, which needs iptables.
image "${kubeadm_ref[kube-proxy]}" "$kube_version" "FROM $net_base
COPY kube-proxy /usr/local/bin/kube-proxy" "$bin/kube-proxy"
etcd_version=$(module_version etcd go.etcd.io/etcd/server/v3)
image "${kubeadm_ref[etcd]}" "$etcd_version" "FROM scratch
COPY etcd /usr/local/bin/etcd
ENV $PATH_ENV" "$bin/etcd"
# kubeadm's Deployment gives no command: the image's entrypoint is CoreDNS.
coredns_version=$(module_version coredns github.com/coredns/coredns)
image "${kubeadm_ref[coredns]}" "$coredns_version" "FROM scratch
COPY coredns /coredns
EXPOSE 53 53/udp
ENTRYPOINT [\"/coredns\"]" "$bin/coredns"
# pause, as the Kubernetes release builds it (build/pause/Makefile), under kubeadm's tag and kind's.
pause_ref=${kubeadm_ref[pause]}
gcc -Os -Wall -Werror -static -DVERSION="v${pause_ref##*:}-kubeforge" -o "$WORK/pause" \
  "$k8s_dir/build/pause/linux/pause.c" >>"$LOG" 2>&1 || die "building pause failed (read $LOG)"
strip "$WORK/pause"
for ref in "$pause_ref" "$sandbox_image"; do
  image "$ref" "${pause_ref##*:}" 'FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]' "$WORK/pause"
done
# The storage manifest runs `local-path-provisioner` by name, and its helper pods /bin/sh scripts.
provisioner_version=$(module_version local-path-provisioner github.com/rancher/local-path-provisioner)
image "$provisioner_image" "$provisioner_version" "FROM $net_base
COPY local-path-provisioner /usr/local/bin/local-path-provisioner" "$bin/local-path-provisioner"
image "$helper_image" "$SUITE" "FROM $net_base"
image "$network_image" "$inputs" "FROM $net_base
COPY network-agent.sh /usr/local/bin/network-agent
CMD [\"/usr/local/bin/network-agent\"]" "$HACK_DIR/kind/network-agent.sh"

step "node image"
docker save "${built_images[@]}" -o "$WORK/images.tar"
node=$(docker run -d --entrypoint=sleep --security-opt seccomp=unconfined "$node_base" infinity)
trap 'docker rm -f -v "$node" >/dev/null 2>&1 || true' EXIT
for binary in kubeadm kubelet kubectl; do
  docker cp "$bin/$binary" "$node:/usr/bin/$binary"
done
docker exec "$node" chown root:root /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
printf '%s' "$kube_version" | docker exec -i "$node" sh -c 'cat >/kind/version'
docker cp "$WORK/manifests" "$node:/kind/manifests"
docker exec "$node" bash -c 'nohup containerd >/dev/null 2>&1 &
  for _ in $(seq 30); do [ -S /run/containerd/containerd.sock ] && break; sleep 1; done
  ctr version >/dev/null' >>"$LOG" 2>&1 || die "containerd did not start in the node base (read $LOG)"
docker exec -i "$node" ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests - \
  <"$WORK/images.tar" >>"$LOG" 2>&1 || die "importing the images into the node failed (read $LOG)"
rm -f "$WORK/images.tar"
imported=$(docker exec "$node" ctr --namespace=k8s.io images ls -q)
# containerd's names are fully qualified: docker.io/ for the references without a registry host.
for ref in "${built_images[@]}"; do
  case ${ref%%/*} in *.* | *:* | localhost) ;; *) ref=docker.io/$ref ;; esac
  grep -qxF "$ref" <<<"$imported" || die "$ref is missing from the node's containerd (read $LOG)"
done
# sleep, the container's init, reaps nothing: wait for containerd to be a zombie, not to be gone.
docker exec "$node" bash -c 'pid=$(pgrep -x containerd) && kill "$pid"
  while ! grep -q "^$pid (containerd) Z" "/proc/$pid/stat"; do sleep 1; done'
docker commit --change "LABEL $INPUTS_LABEL=$inputs" \
  --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' --change 'CMD []' \
  "$node" "$node_image" >>"$LOG"
size=$(docker image inspect -f '{{.Size}}' "$node_image")
echo "kubeforge: built $node_image ($((size / 1000000)) MB) in $((SECONDS - start)) s" >&2
