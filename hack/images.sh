#!/usr/bin/env bash
# Builds kubeforge's container images: <prefix>/operator, <prefix>/trainer, <prefix>/crawler (hack/images.env).
#
# The wheels are built and resolved on the host with the project's Python (pip reaches PyPI or
# whatever index pip is configured for), into a per-image build context under
# ${XDG_CACHE_HOME:-~/.cache}/kubeforge/images/: wheels/deps/ and wheels/app/. So the one
# Dockerfile (hack/Dockerfile, COMPONENT=<component>) installs offline and the context holds
# nothing else from the repository.
# BASE_IMAGE picks the base (e.g. python:3.11-slim-bookworm); unset, the local Debian base is
# built (hack/base-image.sh) and used, since no image can be pulled on these machines. Docker's
# layer cache makes a second run with unchanged inputs rebuild nothing.
# Usage: [BASE_IMAGE=...] hack/images.sh [operator|trainer|crawler ...]   (default: all three)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/images.env"

PYTHON=${PYTHON:-$REPO_ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || die "no Python at $PYTHON to build the wheels with (run make venv, or set PYTHON)"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(operator trainer crawler)
for component in "${components[@]}"; do
  [ -d "$REPO_ROOT/$component/kubeforge_$component" ] ||
    die "unknown image '$component' (operator, trainer or crawler)"
done

"$HACK_DIR/docker.sh" up
if [ -z "${BASE_IMAGE:-}" ]; then
  "$HACK_DIR/base-image.sh"
  BASE_IMAGE=$KUBEFORGE_BASE_IMAGE
fi

# pip picks wheels for the host: the image needs the same Python minor version, and a C library
# no older than the host's (a manylinux wheel for a newer glibc would not load in the image).
platform_probe='import platform, sys; print("%d.%d" % sys.version_info[:2], platform.libc_ver()[1])'
read -r host_python host_glibc < <("$PYTHON" -c "$platform_probe")
read -r base_python base_glibc < <(docker run --rm --entrypoint python3 "$BASE_IMAGE" -c "$platform_probe") ||
  die "cannot run python3 in the base image $BASE_IMAGE"
[ "$host_python" = "$base_python" ] ||
  die "the wheels are built with Python $host_python but $BASE_IMAGE has Python $base_python"
[ "$(printf '%s\n' "$host_glibc" "$base_glibc" | sort -V | tail -1)" = "$base_glibc" ] ||
  die "the wheels are built against glibc $host_glibc but $BASE_IMAGE has glibc $base_glibc"

mkdir -p "$KUBEFORGE_CACHE/logs"
for component in "${components[@]}"; do
  image=$KUBEFORGE_IMAGE_PREFIX/$component:$KUBEFORGE_IMAGE_TAG
  context=$KUBEFORGE_CACHE/images/$component
  log=$KUBEFORGE_CACHE/logs/image-$component.log
  start=$SECONDS
  rm -rf "$context"
  mkdir -p "$context/wheels/deps" "$context/wheels/app"
  "$PYTHON" -m pip wheel --quiet --progress-bar off --wheel-dir "$context/wheels/deps" \
    "${REPO_ROOT}[$component]" >"$log" 2>&1 || die "building the wheels of $image failed (read $log)"
  mv "$context"/wheels/deps/kubeforge-*.whl "$context/wheels/app/"
  previous=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "COMPONENT=$component")
  if [ "$component" = trainer ]; then
    # The NVIDIA container runtime exposes the node's GPUs (the device plugin narrows this to
    # the pod's) and the CUDA libraries that torch needs.
    build_args+=(--build-arg NVIDIA_VISIBLE_DEVICES=all
      --build-arg NVIDIA_DRIVER_CAPABILITIES=compute,utility)
  fi
  # The classic builder: BuildKit would need its frontend image, which cannot be pulled here.
  DOCKER_BUILDKIT=0 docker build --tag "$image" "${build_args[@]}" \
    --file "$HACK_DIR/Dockerfile" "$context" >>"$log" 2>&1 ||
    die "building $image failed (read $log)"
  rm -rf "$context"
  current=$(docker image inspect -f '{{.Id}}' "$image")
  # The image this one replaces, unless something still uses it.
  if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
  size=$(docker image inspect -f '{{.Size}}' "$image")
  echo "kubeforge: $image: $((size / 1000000)) MB, built in $((SECONDS - start)) s (log: $log)" >&2
done
