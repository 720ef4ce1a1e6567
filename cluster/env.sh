# Source this in the shell you use to talk to the cluster:
#
#   source cluster/env.sh
#   ray dashboard cluster/aws.yaml &      # SSH tunnel: localhost:8265 -> the head's dashboard
#   ray job list
#
# It points the `ray job` commands at the tunnelled dashboard and gives them the cluster's auth
# token (the one cluster/up.sh made and copied to every node). It sets RAY_API_SERVER_ADDRESS, not
# RAY_ADDRESS, so a local `tuner run` in the same shell still starts its own local Ray.
_ft_cluster_dir=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)
export RAY_AUTH_MODE=token
unset RAY_AUTH_TOKEN   # it would take precedence over the token file
export RAY_AUTH_TOKEN_PATH="$_ft_cluster_dir/.secrets/ray_auth_token"
export RAY_API_SERVER_ADDRESS="${RAY_API_SERVER_ADDRESS:-http://127.0.0.1:8265}"
[[ -s "$RAY_AUTH_TOKEN_PATH" ]] || echo "warning: no $RAY_AUTH_TOKEN_PATH yet (bash cluster/up.sh makes it)" >&2
unset _ft_cluster_dir
