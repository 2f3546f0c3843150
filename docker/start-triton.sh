#!/bin/sh
# The one way the Triton server starts: docker-compose.yml, docker/Dockerfile.server (CMD) and
# deploy/k8s/triton-deployment.yaml all run this script; extra arguments are appended to tritonserver's.
#
#   TRITON_MODEL_REPOSITORY   model repository inside the container (default /models)
#   TRITON_MODEL_CONFIG_NAME  custom model configuration to serve, e.g. "gpu" (<model>/configs/gpu.pbtxt;
#                             --model-config-name). Empty: the CPU default config.pbtxt. A name that no model
#                             of the repository has is an error (tritonserver would silently serve config.pbtxt).
#   TRITON_ADMIN_KEY_FILE     file holding the value of the "admin-key" header that unlocks the restricted APIs
#                             (model repository, model config, shared memory, statistics, trace, logging);
#                             default /run/secrets/triton_admin_key (a compose secret or a Kubernetes Secret
#                             volume). The key is read here, never passed in a command line or an environment
#                             variable that `docker inspect` shows. No file: a random key, the APIs stay closed.
#   TRITONSERVER              the server binary (default /opt/tritonserver/bin/tritonserver)
# Health, metadata and inference stay open. Model loading/unloading is off (--model-control-mode=none).
set -eu
: "${TRITON_MODEL_REPOSITORY:=/models}"
: "${TRITON_MODEL_CONFIG_NAME:=}"
: "${TRITON_ADMIN_KEY_FILE:=/run/secrets/triton_admin_key}"
: "${TRITONSERVER:=/opt/tritonserver/bin/tritonserver}"
# glibc malloc: few arenas, blocks of 1 MiB or more mmapped (returned when freed), so the server's memory comes
# back after large frames (docs/reliability.md); the same defaults as facedeid.serving.tritonserver_cli.MALLOC_ENV.
: "${MALLOC_ARENA_MAX:=2}"
: "${MALLOC_MMAP_THRESHOLD_:=1048576}"
: "${MALLOC_TRIM_THRESHOLD_:=4194304}"
export MALLOC_ARENA_MAX MALLOC_MMAP_THRESHOLD_ MALLOC_TRIM_THRESHOLD_

if [ -e "$TRITON_ADMIN_KEY_FILE" ]; then
  if [ ! -r "$TRITON_ADMIN_KEY_FILE" ]; then
    echo "start-triton: $TRITON_ADMIN_KEY_FILE is not readable by uid $(id -u)" >&2
    exit 2
  fi
  ADMIN_KEY=$(tr -d ' \r\n' < "$TRITON_ADMIN_KEY_FILE")
  if [ -z "$ADMIN_KEY" ]; then
    echo "start-triton: $TRITON_ADMIN_KEY_FILE is empty" >&2
    exit 2
  fi
else
  ADMIN_KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  echo "start-triton: no admin key file at $TRITON_ADMIN_KEY_FILE; the restricted APIs are locked with a random key" >&2
fi

CONFIG_FLAG=""
if [ -n "$TRITON_MODEL_CONFIG_NAME" ]; then
  if ! ls "$TRITON_MODEL_REPOSITORY"/*/configs/"$TRITON_MODEL_CONFIG_NAME".pbtxt >/dev/null 2>&1; then
    echo "start-triton: TRITON_MODEL_CONFIG_NAME=$TRITON_MODEL_CONFIG_NAME: no model in $TRITON_MODEL_REPOSITORY has" \
         "configs/$TRITON_MODEL_CONFIG_NAME.pbtxt" >&2
    exit 2
  fi
  CONFIG_FLAG="--model-config-name=$TRITON_MODEL_CONFIG_NAME"
fi

RESTRICTED="model-repository,model-config,shared-memory,statistics,trace,logging"
# shellcheck disable=SC2086  # CONFIG_FLAG is one word or nothing
exec "$TRITONSERVER" \
  --model-repository="${TRITON_MODEL_REPOSITORY}" \
  --model-control-mode=none \
  --strict-readiness=true \
  --exit-on-error=true \
  --grpc-restricted-protocol="${RESTRICTED}:admin-key=${ADMIN_KEY}" \
  --http-restricted-api="${RESTRICTED}:admin-key=${ADMIN_KEY}" \
  $CONFIG_FLAG \
  "$@"
