#!/usr/bin/env bash
# Submit a tuning experiment to a running Ray cluster as a Ray job (`ray job submit`) and print
# its job id (the only line on stdout; everything else goes to stderr).
#
#   bash cluster/submit.sh CONFIG [options] [-- more `tuner run` options]
#   bash cluster/submit.sh --resume NAME --storage STORAGE [options]
#
#   CONFIG               experiment YAML (a file, or a name in configs/experiments/)
#   --resume NAME        submit `tuner resume NAME` instead: continues a stopped or crashed run
#   --storage S          where experiments live: s3://bucket/prefix, gs://..., or a path every node
#                        shares (default: the config's `storage`)
#   --name N             experiment name (default: the config's `name`)
#   --address URL        job server: the dashboard's address (default $RAY_API_SERVER_ADDRESS,
#                        else http://127.0.0.1:8265, where `ray dashboard cluster/<x>.yaml` forwards)
#   --submission-id ID   the job id (default: ft-<name>-<UTC time>)
#   --follow             stream the job's log until it ends; exit 1 unless it succeeded
#   --installed          do not upload code: run the `tuner` installed on the nodes at `ray up`
#                        (CONFIG is then a name or a path on the head node)
#
# By default the job's working directory is a snapshot of this checkout's tuner/ and configs/ plus
# CONFIG (as experiment.yaml): Ray uploads it and every process of the job (driver, model actors,
# trials) imports that code, so a job runs exactly what you submitted; the nodes' installed
# environment provides the dependencies (CUDA torch, Ray). The driver runs on the head node:
#   tuner run --config experiment.yaml --address auto [--name N] [--storage S] [...]
#
# Then:  ray job logs -f ID     ray job status ID     ray job stop ID     ray job list
# (`source cluster/env.sh` first: it sets the address and the cluster's auth token for them).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
die() { echo "error: $*" >&2; exit 2; }

address=${RAY_API_SERVER_ADDRESS:-http://127.0.0.1:8265}
config="" resume="" storage="" name="" job_id="" follow=0 ship=1
extra=()
while (( $# )); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --resume) resume=${2:?--resume needs a name}; shift 2 ;;
    --storage) storage=${2:?--storage needs a value}; shift 2 ;;
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --address) address=${2:?--address needs a URL}; shift 2 ;;
    --submission-id) job_id=${2:?--submission-id needs a value}; shift 2 ;;
    --follow) follow=1; shift ;;
    --installed) ship=0; shift ;;
    --) shift; extra=("$@"); break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z "$config" ]] || die "one CONFIG only (got $config and $1)"; config=$1; shift ;;
  esac
done

if [[ -n "$resume" ]]; then
  [[ -z "$config" ]] || die "--resume takes no CONFIG: the stored config of $resume is used"
  [[ -n "$storage" ]] || die "--resume needs --storage (where $resume lives, e.g. s3://bucket/tuner)"
  name=$resume
else
  [[ -n "$config" ]] || { usage >&2; exit 2; }
fi

# Token authentication: the cluster's token, staged by cluster/up.sh, unless one is given.
export RAY_AUTH_MODE=token
if [[ -z "${RAY_AUTH_TOKEN:-}" && -z "${RAY_AUTH_TOKEN_PATH:-}" && -s "$here/.secrets/ray_auth_token" ]]; then
  export RAY_AUTH_TOKEN_PATH="$here/.secrets/ray_auth_token"
fi

ray_cli=${RAY:-ray}
if ! command -v "$ray_cli" >/dev/null && [[ -x "$repo/.venv/bin/ray" ]]; then
  ray_cli="$repo/.venv/bin/ray"
fi
command -v "$ray_cli" >/dev/null || die "no \`ray\` on PATH"

runtime_env='{"env_vars": {"PYTHONUNBUFFERED": "1"}}'
submit_args=()
if (( ship )); then
  stage=$(mktemp -d "${TMPDIR:-/tmp}/ft-job.XXXXXX")
  trap 'rm -rf "$stage"' EXIT
  cp -R "$repo/tuner" "$repo/configs" "$stage/"
  find "$stage" -name __pycache__ -type d -prune -exec rm -rf {} +
  submit_args+=(--working-dir "$stage")
fi

if [[ -n "$resume" ]]; then
  cmd=(tuner resume "$resume" --storage "$storage" --address auto)
  label="$resume-resume"
else
  if (( ship )); then
    file=$config
    if [[ ! -f "$file" && -f "$repo/configs/experiments/$config.yaml" ]]; then
      file="$repo/configs/experiments/$config.yaml"
    fi
    [[ -f "$file" ]] || die "no experiment config $config (a file, or a name in configs/experiments/)"
    cp "$file" "$stage/experiment.yaml"
    cmd=(tuner run --config experiment.yaml --address auto)
    # The config's `name:` (plain or quoted), only to label the job id.
    stem=$(sed -n "s/^name:[[:space:]]*[\"']\{0,1\}\([A-Za-z0-9._-]*\).*/\1/p" "$file" | head -n 1)
  else
    cmd=(tuner run --config "$config" --address auto)
    stem=$(basename "$config" .yaml)
  fi
  [[ -n "$name" ]] && cmd+=(--name "$name")
  [[ -n "$storage" ]] && cmd+=(--storage "$storage")
  label=${name:-${stem:-experiment}}
fi
cmd+=(${extra[@]+"${extra[@]}"})   # (bash 3.2 on macOS: no empty "${a[@]}" under set -u)
job_id=${job_id:-ft-$label-$(date -u +%Y%m%d-%H%M%S)}

echo "submitting to $address as $job_id: ${cmd[*]}" >&2
"$ray_cli" job submit --address "$address" --submission-id "$job_id" --no-wait \
  --runtime-env-json "$runtime_env" ${submit_args[@]+"${submit_args[@]}"} \
  --metadata-json "{\"experiment\": \"${name:-$label}\"}" \
  -- "${cmd[@]}" >&2

rc=0
if (( follow )); then
  "$ray_cli" job logs --address "$address" --follow "$job_id" >&2 || true
  status=$("$ray_cli" job status --address "$address" "$job_id" 2>&1 | tail -n 3)
  echo "$status" >&2
  grep -qi "succeeded" <<<"$status" || rc=1
else
  cat >&2 <<EOF
job $job_id submitted. Follow it with:
  ray job logs --address $address --follow $job_id
  ray job status --address $address $job_id
  ray job stop --address $address $job_id
EOF
fi
echo "$job_id"
exit $rc
