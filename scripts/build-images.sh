#!/usr/bin/env bash
# Build kubetask's images (`make images`): controller, trainer and gan, or the ones named.
#
#   scripts/build-images.sh [controller] [trainer] [gan]
#
# Environment (all optional):
#   ENGINE         docker or podman (default: docker if its daemon answers, else podman)
#   IMAGE_PREFIX   image names are $IMAGE_PREFIX/<image> (default: kubetask)
#   IMAGE_TAG      tag of all three (default: the version in pyproject.toml, which is the
#                  chart's appVersion, so `helm install` finds them without --set)
#   BASE_IMAGE     base of all three; unset: each Dockerfile's own default
#   CONTROLLER_BASE_IMAGE, TRAINER_BASE_IMAGE, GAN_BASE_IMAGE   base of one image
#   BUILD_FLAGS    extra flags for `build` (e.g. --network=host, --pull)
#
# The build context is a fresh folder holding only what the images copy (pyproject.toml,
# README.md and the four packages), so a local .venv or data never reach the engine.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if [[ -z "${ENGINE:-}" ]]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        ENGINE=docker
    elif command -v podman >/dev/null; then
        ENGINE=podman
    else
        echo "build-images: neither a running docker nor podman found (set ENGINE)" >&2
        exit 1
    fi
fi
PREFIX="${IMAGE_PREFIX:-kubetask}"
TAG="${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)}"
IMAGES=("$@")
if [[ ${#IMAGES[@]} -eq 0 ]]; then
    IMAGES=(controller trainer gan)
fi

CONTEXT="$(mktemp -d "${TMPDIR:-/tmp}/kubetask-context.XXXXXX")"
trap 'rm -rf "$CONTEXT"' EXIT
cp -r pyproject.toml README.md kubetask api controller jobs images "$CONTEXT/"
find "$CONTEXT" -name __pycache__ -type d -prune -exec rm -rf {} +

for image in "${IMAGES[@]}"; do
    dockerfile="images/$image/Dockerfile"
    if [[ ! -f "$dockerfile" ]]; then
        echo "build-images: no $dockerfile" >&2
        exit 2
    fi
    upper="$(echo "$image" | tr '[:lower:]' '[:upper:]')"
    base_var="${upper}_BASE_IMAGE"
    base="${!base_var:-${BASE_IMAGE:-}}"
    args=()
    if [[ -n "$base" ]]; then
        args+=(--build-arg "BASE_IMAGE=$base")
    fi
    # shellcheck disable=SC2086  # BUILD_FLAGS is a list of flags
    echo "+ $ENGINE build ${BUILD_FLAGS:-} ${args[*]} -t $PREFIX/$image:$TAG -f $dockerfile"
    # shellcheck disable=SC2086
    "$ENGINE" build ${BUILD_FLAGS:-} "${args[@]}" -t "$PREFIX/$image:$TAG" \
        -f "$CONTEXT/$dockerfile" "$CONTEXT"
done
