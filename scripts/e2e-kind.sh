#!/usr/bin/env bash
# `make e2e-kind`: kubetask on a real Kubernetes cluster (kind), end to end.
#
#   1. create a kind cluster (unless one of that name exists)
#   2. build the controller, trainer and gan images (scripts/build-images.sh, docker) and
#      load them into the cluster's node
#   3. `helm install` the chart into a namespace that enforces the restricted Pod Security
#      Standard, and `helm test` it (/readyz through the Service)
#   4. port-forward the API, submit a `datagen` job over REST, wait for `succeeded`, and show
#      it the way an admin would (kubectl get/describe)
#   5. tear down (on failure, print what the cluster knows first)
#
# Needs: docker (running), kind, helm, kubectl, curl, python3, and network access (the base
# images and the Valkey image are pulled). Environment (all optional):
#   KIND_CLUSTER   cluster name (default kubetask-e2e)
#   E2E_NAMESPACE  namespace (default kubetask)
#   E2E_PORT       local port of the port-forward (default 18000)
#   E2E_KEEP=1     keep the cluster afterwards (and reuse it next time)
#   E2E_SKIP_BUILD=1   use images already built (kubetask/<image>:$IMAGE_TAG)
#   IMAGE_TAG      tag to build and install (default e2e); BASE_IMAGE etc. as for build-images.sh
#   E2E_TIMEOUT_S  how long the job may take to succeed (default 600)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

CLUSTER="${KIND_CLUSTER:-kubetask-e2e}"
NAMESPACE="${E2E_NAMESPACE:-kubetask}"
RELEASE=kubetask
PORT="${E2E_PORT:-18000}"
TAG="${IMAGE_TAG:-e2e}"
TIMEOUT_S="${E2E_TIMEOUT_S:-600}"
IMAGES=(controller trainer gan)
URL="http://127.0.0.1:$PORT"
KUBECTL=(kubectl --context "kind-$CLUSTER" --namespace "$NAMESPACE")
FORWARD_PID=""

log() { printf '\n==> %s\n' "$*"; }

for tool in docker kind helm kubectl curl python3; do
    command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is required" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "e2e-kind: the docker daemon is not running" >&2; exit 2; }

diagnose() {
    log "diagnostics"
    "${KUBECTL[@]}" get all,pvc,networkpolicy,events -o wide || true
    "${KUBECTL[@]}" describe pods || true
    "${KUBECTL[@]}" logs "deployment/$RELEASE" --tail=200 || true
}

cleanup() {
    local status=$?
    if [[ -n "$FORWARD_PID" ]]; then
        kill "$FORWARD_PID" 2>/dev/null || true
    fi
    if [[ $status -ne 0 ]]; then
        diagnose
    fi
    if [[ "${E2E_KEEP:-0}" != 1 ]]; then
        log "deleting the kind cluster $CLUSTER"
        kind delete cluster --name "$CLUSTER" || true
    fi
    exit "$status"
}
trap cleanup EXIT

log "kind cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait 180s
fi

if [[ "${E2E_SKIP_BUILD:-0}" != 1 ]]; then
    log "building the images (tag $TAG)"
    ENGINE=docker IMAGE_TAG="$TAG" scripts/build-images.sh "${IMAGES[@]}"
fi
log "loading the images into the cluster"
for image in "${IMAGES[@]}"; do
    kind load docker-image --name "$CLUSTER" "kubetask/$image:$TAG"
done

log "helm install into namespace $NAMESPACE (restricted Pod Security enforced)"
kubectl --context "kind-$CLUSTER" create namespace "$NAMESPACE" --dry-run=client -o yaml \
    | kubectl --context "kind-$CLUSTER" apply -f -
kubectl --context "kind-$CLUSTER" label --overwrite namespace "$NAMESPACE" \
    pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
# kind's storage (local-path) offers ReadWriteOnce only: the default artifact store, the
# in-chart MinIO, needs no more (its claim is mounted by its one pod).
helm upgrade --install "$RELEASE" helm/kubetask \
    --kube-context "kind-$CLUSTER" --namespace "$NAMESPACE" \
    --set image.tag="$TAG" \
    --set tasks.images.trainer.tag="$TAG" \
    --set tasks.images.gan.tag="$TAG" \
    --set artifacts.minio.persistence.keep=false \
    --set artifacts.minio.persistence.size=1Gi \
    --set redis.persistence.size=1Gi
# Not `helm install --wait`: a WaitForFirstConsumer claim binds only when its pod starts;
# the rollouts say when the pods are up.
"${KUBECTL[@]}" rollout status "statefulset/$RELEASE-redis" --timeout=300s
"${KUBECTL[@]}" rollout status "deployment/$RELEASE-minio" --timeout=300s
"${KUBECTL[@]}" rollout status "deployment/$RELEASE" --timeout=300s

log "helm test"
helm test "$RELEASE" --kube-context "kind-$CLUSTER" --namespace "$NAMESPACE" --logs --timeout 5m

log "port-forward to the API on $URL"
"${KUBECTL[@]}" port-forward "service/$RELEASE" "$PORT:8000" >/dev/null 2>&1 &
FORWARD_PID=$!
for _ in $(seq 1 60); do
    curl -sf "$URL/readyz" >/dev/null && break
    sleep 1
done
curl -sf "$URL/readyz"
echo

# The admin token the chart generated (Secret <release>-tokens): every /v1/jobs call needs one.
TOKEN="$("${KUBECTL[@]}" get secret "$RELEASE-tokens" -o jsonpath='{.data.tokens\.json}' \
    | base64 -d | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["token"])')"
AUTH=(-H "Authorization: Bearer $TOKEN")

job_state() {  # a port-forward may drop for a moment: "unreachable", not an exit
    curl -sf "${AUTH[@]}" "$URL/v1/jobs/$1" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])' 2>/dev/null \
        || echo unreachable
}

log "submitting a datagen job"
job_id="$(curl -sf "${AUTH[@]}" -X POST "$URL/v1/jobs" -H 'content-type: application/json' \
    -d '{"kind": "datagen", "params": {"n_per_class": 20, "length": 512}}' \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
echo "job $job_id"

deadline=$((SECONDS + TIMEOUT_S))
state=""
while ((SECONDS < deadline)); do
    state="$(job_state "$job_id")"
    echo "  $(date +%T) $state"
    case "$state" in
    succeeded | failed | cancelled) break ;;
    esac
    sleep 3
done
curl -sf "${AUTH[@]}" "$URL/v1/jobs/$job_id" | python3 -m json.tool
curl -sf "${AUTH[@]}" "$URL/v1/jobs/$job_id/events?since=0" --max-time 10 | tail -n 12 || true
"${KUBECTL[@]}" get jobs -l app.kubernetes.io/managed-by=kubetask -o wide
"${KUBECTL[@]}" describe job "kt-$job_id" | tail -n 15

if [[ "$state" != succeeded ]]; then
    echo "e2e-kind: the job ended '$state', not 'succeeded'" >&2
    exit 1
fi
log "e2e-kind: the datagen job succeeded on a real cluster"
