#!/usr/bin/env bash
# Bring a run back after a preemption: if the slice is gone or PREEMPTED, delete what is left,
# create it again, install, and start the same command. The trainer resumes from the newest
# checkpoint in its --out (a folder under the --bucket mount /gcs, so it outlives the VMs). Run it from cron or a loop.
#
#   tpu/launch/resume.sh --name vilasr-sft --zone us-east5-a --type v5p-16 --repo URL [--spot] [--dry-run] -- vilasr train ...
source "$(dirname "$0")/common.sh"
parse_args "$@"
[[ -n "$TYPE" && -n "$REPO" && ${#COMMAND[@]} -gt 0 ]] || \
  usage_error "--type, --repo and a command after -- are required" "give what create, install and start need"
here=$(dirname "$0")
if [[ "$DRY_RUN" == 1 ]]; then
  state="${ASSUME_STATE:-PREEMPTED}"
  echo "# dry run: assuming the slice is $state"
else
  project=()
  [[ -n "$PROJECT" ]] && project=(--project "$PROJECT")
  state=$(gcloud compute tpus tpu-vm describe "$NAME" --zone "$ZONE" "${project[@]}" --format='value(state)' \
          2>/dev/null || echo MISSING)
fi
case "$state" in
  READY) echo "$NAME is READY: nothing to do"; exit 0 ;;
  CREATING|STARTING|RESTARTING|REPAIRING) echo "$NAME is $state: try again later"; exit 0 ;;
esac
pass=(--name "$NAME" --zone "$ZONE")
[[ -n "$PROJECT" ]] && pass+=(--project "$PROJECT")
[[ "$DRY_RUN" == 1 ]] && pass+=(--dry-run)
[[ "$state" != MISSING ]] && gcloud_tpu delete "$NAME" --quiet
spot=()
[[ "$SPOT" == 1 ]] && spot=(--spot)
bash "$here/create_slice.sh" "${pass[@]}" --type "$TYPE" "${spot[@]}"
bucket=()
[[ -n "$BUCKET" ]] && bucket=(--bucket "$BUCKET")
bash "$here/install.sh" "${pass[@]}" --repo "$REPO" --ref "$REF" "${bucket[@]}"
bash "$here/start.sh" "${pass[@]}" -- "${COMMAND[@]}"
