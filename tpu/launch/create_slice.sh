#!/usr/bin/env bash
# Create a Cloud TPU VM slice.
#
#   tpu/launch/create_slice.sh --name vilasr-sft --zone us-east5-a --type v5p-16 [--spot] [--project P] [--dry-run]
#
# --type is Cloud TPU's accelerator type (v5p-16 = 8 chips; `vilasr plan --topology v5p-16` says
# whether a step fits). --spot asks for preemptible capacity (resume.sh brings the run back).
source "$(dirname "$0")/common.sh"
parse_args "$@"
[[ -n "$TYPE" ]] || usage_error "--type is required" "give an accelerator type such as v5p-16"
RUNTIME=${RUNTIME:-$(default_runtime "$TYPE")}
extra=()
[[ "$SPOT" == 1 ]] && extra=(--spot)
gcloud_tpu create "$NAME" --accelerator-type "$TYPE" --version "$RUNTIME" "${extra[@]}"
