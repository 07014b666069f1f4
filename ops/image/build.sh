#!/usr/bin/env bash
# Build the IMP image with buildah on a machine that cannot pull from Docker Hub (this project's build
# machines): a Debian bookworm base made with debootstrap stands in for python:3.11-slim, and pip
# reads the machine's local package mirrors, mounted read-only into the build (never copied into a layer).
#
#   sudo ops/image/build.sh                       # CPU image localhost/imp:0.1.0
#   TAG=localhost/imp:dev ops/image/build.sh
#   # the CUDA variant with PyPI's torch (its CUDA 13 build; see the Dockerfile on Whisper and CUDA 12):
#   VARIANT=cuda TAG=localhost/imp-cuda:0.1.0 TORCH_VERSION=2.13.0 WHEELS= ops/image/build.sh
#
# With Docker Hub and PyPI in reach, none of this is needed: `docker build -t imp .` (or podman/buildah
# build) uses the Dockerfile's defaults. Needs: buildah, debootstrap (Debian packages), root.
# Environment (defaults in brackets):
#   TAG [localhost/imp:0.1.0]   BASE [localhost/imp-base:bookworm]   DEBIAN_MIRROR [http://deb.debian.org/debian]
#   VARIANT [cpu]: cpu or cuda   TORCH_VERSION [the variant's]: the torch release to install, e.g. 2.13.0
#   PIP_MIRRORS ["/opt/pypi/simple /opt/pypi-more/simple"]: local simple indexes, each a folder whose parent
#               is mounted (the index pages link to ../files/); missing ones are skipped
#   WHEELS [/opt/wheels]: a folder of wheels (pip --find-links; the CPU torch wheel lies there)
#   CA_BUNDLE [/etc/ssl/certs/ca-certificates.crt]: this machine's CA bundle, for a TLS-inspecting proxy
#   STORAGE_DRIVER [containers' default: overlay where the kernel allows, else set vfs]
#   BUILDAH_ISOLATION [chroot]: what works as root inside a container
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TAG=${TAG:-localhost/imp:0.1.0}
VARIANT=${VARIANT:-cpu}
TORCH_VERSION=${TORCH_VERSION:-}
BASE=${BASE:-localhost/imp-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PIP_MIRRORS=${PIP_MIRRORS:-/opt/pypi/simple /opt/pypi-more/simple}
WHEELS=${WHEELS-/opt/wheels}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
# buildah 1.28 ignores a STORAGE_DRIVER environment variable; the flag is what it reads.
buildah() { command buildah ${STORAGE_DRIVER:+--storage-driver "$STORAGE_DRIVER"} "$@"; }

make_base() {
  # A minimal bookworm with Debian's python3.11: what python:3.11-slim gives, without Docker Hub.
  # python3-distutils: python3.11-venv needs the virtual python3.11-distutils, which debootstrap does not resolve.
  local rootfs
  rootfs=$(mktemp -d /tmp/imp-base.XXXXXX)
  echo "making $BASE with debootstrap ($DEBIAN_MIRROR)"
  debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR" >/dev/null
  cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security bookworm-security main
EOF
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  local ctr
  ctr=$(buildah from scratch)
  buildah copy "$ctr" "$rootfs" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd '["python3.11"]' \
    --label org.opencontainers.image.description="Debian bookworm minbase with python3.11 (debootstrap)" "$ctr"
  buildah commit --rm "$ctr" "$BASE" >/dev/null
  rm -rf "$rootfs"
}

buildah inspect --type image "$BASE" >/dev/null 2>&1 || make_base

# --format docker: the OCI image format has no HEALTHCHECK, and buildah drops it there.
args=(--format docker --network host --layers -f "$ROOT/Dockerfile" -t "$TAG" --build-arg "BASE=$BASE"
      --build-arg "VARIANT=$VARIANT"
      # torch comes from $WHEELS (the CPU wheel) or PyPI here; download.pytorch.org is not reachable
      --build-arg "TORCH_INDEX_URL=")
[ -n "$TORCH_VERSION" ] && args+=(--build-arg "TORCH_VERSION=$TORCH_VERSION")
extra=""
for index in $PIP_MIRRORS; do
  [ -d "$index" ] || continue
  parent=$(dirname "$index")
  args+=(--volume "$parent:$parent:ro")
  extra="$extra file://$index"
done
[ -n "$extra" ] && args+=(--build-arg "PIP_EXTRA_INDEX_URL=${extra# }")
if [ -n "$WHEELS" ] && [ -d "$WHEELS" ]; then
  args+=(--volume "$WHEELS:$WHEELS:ro" --build-arg "PIP_FIND_LINKS=$WHEELS")
fi
if [ -f "$CA_BUNDLE" ]; then
  args+=(--volume "$CA_BUNDLE:/run/imp-build-ca.crt:ro" --build-arg "PIP_CERT=/run/imp-build-ca.crt")
fi

start=$(date +%s)
buildah build "${args[@]}" "$ROOT"
echo "built $TAG in $(( $(date +%s) - start )) s"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$TAG"
