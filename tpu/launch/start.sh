#!/usr/bin/env bash
# Start the same vilasr command on every worker of a slice, in the background, logging to
# ~/vilasr/run.log on each worker. Put --out under /gcs (install.sh --bucket) so that every worker
# and a resumed slice see the same checkpoints.
#
#   tpu/launch/start.sh --name vilasr-sft --zone us-east5-a [--dry-run] -- \
#       vilasr train cold-start --model /data/Qwen2.5-VL-7B-Instruct --data /data/vilasr.json --out /gcs/runs/cold
source "$(dirname "$0")/common.sh"
parse_args "$@"
[[ ${#COMMAND[@]} -gt 0 ]] || usage_error "no command after --" "end the options with -- and give the vilasr command"
printf -v cmd ' %q' "${COMMAND[@]}"
on_all_workers "cd vilasr && nohup .venv/bin/${cmd# } > run.log 2>&1 < /dev/null &"
