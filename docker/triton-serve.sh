#!/bin/sh
# Start tritonserver with the project's locked-down defaults; extra arguments are appended.
#   TRITON_MODEL_REPOSITORY  model repository inside the container (default /models)
#   TRITON_ADMIN_KEY         value of the "admin-key" request header that unlocks the restricted APIs
#                            (model repository, model config, shared memory, statistics, trace, logging).
#                            Unset: a random key is used, so those APIs stay closed for everyone.
# Health, metadata and inference stay open. Model loading/unloading is off (--model-control-mode=none).
set -eu
: "${TRITON_MODEL_REPOSITORY:=/models}"
if [ -z "${TRITON_ADMIN_KEY:-}" ]; then
  TRITON_ADMIN_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  echo "triton-serve: TRITON_ADMIN_KEY is not set; the restricted APIs are locked with a random key" >&2
fi
RESTRICTED="model-repository,model-config,shared-memory,statistics,trace,logging"
exec /opt/tritonserver/bin/tritonserver \
  --model-repository="${TRITON_MODEL_REPOSITORY}" \
  --model-control-mode=none \
  --strict-readiness=true \
  --exit-on-error=true \
  --grpc-restricted-protocol="${RESTRICTED}:admin-key=${TRITON_ADMIN_KEY}" \
  --http-restricted-api="${RESTRICTED}:admin-key=${TRITON_ADMIN_KEY}" \
  "$@"
