#!/usr/bin/env bash
# Install vilasr on every worker of a slice, with the README's command plus the `tpu` extra;
# with --bucket, mount that Cloud Storage bucket at /gcs on every worker (gcsfuse), so that a
# run folder under /gcs is shared by the workers and outlives the slice.
#
#   tpu/launch/install.sh --name vilasr-sft --zone us-east5-a --repo https://example.org/vilasr.git [--ref main] [--bucket B] [--dry-run]
source "$(dirname "$0")/common.sh"
parse_args "$@"
[[ -n "$REPO" ]] || usage_error "--repo is required" "give the git URL of this repository"
if [[ -n "$BUCKET" ]]; then
  on_all_workers "set -e; sudo mkdir -p /gcs && sudo chmod a+rwx /gcs; mountpoint -q /gcs || gcsfuse --implicit-dirs $BUCKET /gcs"
fi
on_all_workers "set -e; if [ -d vilasr ]; then git -C vilasr fetch -q origin && git -C vilasr checkout -q $REF; \
else git clone -q $REPO vilasr && git -C vilasr checkout -q $REF; fi; cd vilasr; \
python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'"
