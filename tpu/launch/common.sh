# Shared by the launch scripts: argument reading, and `run`, which prints a command instead of
# running it under --dry-run (so every script's path can be checked without a Cloud project).
set -euo pipefail

DRY_RUN=${DRY_RUN:-0}
NAME="" ZONE="" TYPE="" PROJECT="" RUNTIME="${RUNTIME:-}" REPO="${REPO:-}" REF="${REF:-main}" SPOT=0 BUCKET=""
COMMAND=()

usage_error() { echo "error: $1; $2" >&2; exit 2; }

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --name) NAME="$2"; shift 2 ;;
      --zone) ZONE="$2"; shift 2 ;;
      --type) TYPE="$2"; shift 2 ;;
      --project) PROJECT="$2"; shift 2 ;;
      --runtime) RUNTIME="$2"; shift 2 ;;
      --repo) REPO="$2"; shift 2 ;;
      --ref) REF="$2"; shift 2 ;;
      --bucket) BUCKET="$2"; shift 2 ;;
      --spot) SPOT=1; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      --) shift; COMMAND=("$@"); break ;;
      -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) usage_error "unknown argument $1" "see $0 --help" ;;
    esac
  done
  [[ -n "$NAME" ]] || usage_error "--name is required" "give the TPU VM's name"
  [[ -n "$ZONE" ]] || usage_error "--zone is required" "give the zone, e.g. us-east5-a"
}

# The runtime image for each generation (Cloud TPU's "software versions").
default_runtime() {
  case "$1" in
    v4*) echo "tpu-ubuntu2204-base" ;;
    v5p*) echo "v2-alpha-tpuv5" ;;
    v5e*|v5litepod*) echo "v2-alpha-tpuv5-lite" ;;
    v6e*) echo "v2-alpha-tpuv6e" ;;
    *) usage_error "unknown accelerator type $1" "use e.g. v5p-16, v5litepod-32, v6e-8" ;;
  esac
}

gcloud_tpu() {
  local project=()
  [[ -n "$PROJECT" ]] && project=(--project "$PROJECT")
  run gcloud compute tpus tpu-vm "$@" --zone "$ZONE" "${project[@]}"
}

# Run a command on every worker of the slice (each host runs the same program; JAX finds the
# others through the TPU metadata and jax.distributed.initialize()).
on_all_workers() {
  gcloud_tpu ssh "$NAME" --worker=all --command "$1"
}

run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}
