#!/usr/bin/env bash
# Builds the local Debian base of kubeforge's images, for machines that cannot pull any image.
#
# mmdebstrap makes a minimal bookworm root filesystem from Debian's packages (Python 3.11 with venv,
# CA certificates; no documentation, man pages or locales, as in Debian's slim images), and
# `docker import` turns it into $KUBEFORGE_BASE_IMAGE (hack/images.env). The packages come from the
# Debian mirrors that apt already uses on this machine. The image carries a label with the hash of
# its inputs (this script, the package list and the mirrors): when an image with that label exists,
# nothing is done.
# Usage: hack/base-image.sh   (needs root and a Docker daemon: hack/docker.sh up)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/images.env"

SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates,tzdata
INPUTS_LABEL=dev.kubeforge.base.inputs
WORK=$KUBEFORGE_CACHE/base-image

# The bookworm suites of the Debian archive that apt is configured with here, as sources.list lines.
debian_sources() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' 2>/dev/null |
    awk -v suite="$SUITE" '$1 ~ /debian/ && $2 ~ "^" suite "(-updates|-security)?$" {
      print "deb " $1 " " $2 " main" }' | sort -u
}

mkdir -p "$WORK"
sources=$(debian_sources)
[ -n "$sources" ] || sources="deb http://deb.debian.org/debian $SUITE main"
inputs=$( (cat "${BASH_SOURCE[0]}"; echo "$PACKAGES"; echo "$sources") | sha256sum | cut -c1-16)
current=$(docker image inspect -f "{{ index .Config.Labels \"$INPUTS_LABEL\" }}" \
  "$KUBEFORGE_BASE_IMAGE" 2>/dev/null || true)
[ "$current" = "$inputs" ] && exit 0

if ! command -v mmdebstrap >/dev/null; then
  [ "$(id -u)" -eq 0 ] || die "mmdebstrap is not installed and installing it needs root"
  echo "kubeforge: installing Debian's mmdebstrap with apt (first time only)" >&2
  apt-get update -qq >"$WORK/apt.log" 2>&1 || die "apt-get update failed (read $WORK/apt.log)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap \
    >>"$WORK/apt.log" 2>&1 || die "installing mmdebstrap failed (read $WORK/apt.log)"
fi

echo "kubeforge: building $KUBEFORGE_BASE_IMAGE from Debian $SUITE (log: $WORK/build.log)" >&2
start=$SECONDS
rootfs=$WORK/rootfs.tar
mapfile -t mirrors <<<"$sources"
# The merged-usr hook lays out /usr itself, sparing the usrmerge package and the Perl it pulls in.
if ! mmdebstrap --variant=minbase --include="$PACKAGES" --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --aptopt='APT::Install-Recommends "false"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
  "$SUITE" "$rootfs" "${mirrors[@]}" >"$WORK/build.log" 2>&1; then
  die "mmdebstrap failed (read $WORK/build.log)"
fi
docker import \
  --change "LABEL $INPUTS_LABEL=$inputs" \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  "$rootfs" "$KUBEFORGE_BASE_IMAGE" >>"$WORK/build.log"
rm -f "$rootfs"
echo "kubeforge: built $KUBEFORGE_BASE_IMAGE in $((SECONDS - start)) s" >&2
