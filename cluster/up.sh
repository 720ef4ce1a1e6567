#!/usr/bin/env bash
# Bring a forecast-tuner Ray cluster up: stage the two secrets the cluster YAMLs copy to every node,
# then run `ray up` from the repository root (the YAMLs' file_mounts are relative to it).
#
#   bash cluster/up.sh cluster/aws.yaml                 # or gcp.yaml / onprem.yaml
#   bash cluster/up.sh cluster/aws.yaml --no-config-cache   # extra arguments go to `ray up`
#   bash cluster/up.sh --stage-only                     # only (re)write cluster/.secrets/
#
# Secrets (mode 600, in cluster/.secrets/, ignored by git, never written into a YAML):
#   ray_auth_token  the cluster's Ray auth token; made once, then kept, so a later `ray up` or a
#                   worker added by the autoscaler uses the same token as the running head.
#   hf_token        your Hugging Face token, from $HF_TOKEN, else from huggingface_hub's token
#                   file (`hf auth login`); empty when you have none (the default checkpoints are
#                   public, so an empty token only means anonymous downloads).
# Afterwards `source cluster/env.sh` points `ray job ...` at the cluster with that token.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
secrets=${FT_SECRETS_DIR:-$here/.secrets}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

stage_only=0
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --stage-only) stage_only=1; shift ;;
  "") usage >&2; exit 2 ;;
esac

umask 077
mkdir -p "$secrets"
chmod 700 "$secrets"

token="$secrets/ray_auth_token"
if [[ ! -s "$token" ]]; then
  # 256 random bits as 64 hex characters, the format `ray get-auth-token --generate` uses.
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$token"
  echo "made a new Ray auth token: $token" >&2
fi
chmod 600 "$token"

hf="$secrets/hf_token"
hf_file=${HF_TOKEN_PATH:-${HF_HOME:-$HOME/.cache/huggingface}/token}
if [[ -n "${HF_TOKEN:-}" ]]; then
  printf '%s' "$HF_TOKEN" > "$hf"
  echo "Hugging Face token: from \$HF_TOKEN" >&2
elif [[ -s "$hf_file" ]]; then
  cp "$hf_file" "$hf"
  echo "Hugging Face token: from $hf_file" >&2
else
  : > "$hf"
  echo "Hugging Face token: none (HF_TOKEN unset); nodes download the public checkpoints anonymously" >&2
fi
chmod 600 "$hf"

mkdir -p "$here/data"   # file-mounted to ~/forecast-data; must exist even when empty

if (( stage_only )); then
  echo "secrets staged in $secrets" >&2
  exit 0
fi

yaml=$1
shift
[[ -f "$yaml" ]] || { echo "error: no cluster config $yaml" >&2; exit 2; }
yaml=$(cd "$(dirname "$yaml")" && pwd)/$(basename "$yaml")

ray_cli=${RAY:-ray}
if ! command -v "$ray_cli" >/dev/null && [[ -x "$repo/.venv/bin/ray" ]]; then
  ray_cli="$repo/.venv/bin/ray"
fi
command -v "$ray_cli" >/dev/null || { echo "error: no \`ray\` on PATH (pip install -c cluster/constraints.txt 'ray[default]')" >&2; exit 2; }
want=$(sed -n 's/^ray==//p' "$here/constraints.txt")
have=$("$ray_cli" --version 2>/dev/null | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p')
if [[ -n "$want" && "$have" != "$want" ]]; then
  echo "error: local ray is ${have:-unknown}, the cluster installs $want (cluster/constraints.txt); they must match" >&2
  exit 2
fi

# Ray >= 2.50 runs autoscaler v2 on clusters made by `ray up`; v2 does not manage the "local"
# provider (ray-project/ray#57153: the head drops its own node and never starts the workers), so
# on-prem clusters keep the v1 autoscaler. Cloud configs use v2.
if grep -Eq '^[[:space:]]+type:[[:space:]]*local([[:space:]]|$)' "$yaml"; then
  export RAY_UP_enable_autoscaler_v2=${RAY_UP_enable_autoscaler_v2:-0}
fi

cd "$repo"   # file_mounts paths ("." and cluster/...) are relative to the repository root
exec "$ray_cli" up -y "$yaml" "$@"
