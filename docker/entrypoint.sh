#!/usr/bin/env bash
# fedkd container entrypoint: one image, one role per container.
#
#   entrypoint.sh ROLE [--dry-run] [EXTRA ARGS...]
#
# Roles and the environment they read (defaults in brackets):
#   superlink   flower-superlink with TLS and SuperNode authentication
#               FEDKD_CERTS [/certs]  FEDKD_FLEET_ADDRESS [0.0.0.0:9092]  FEDKD_CONTROL_HOST [0.0.0.0]
#               FEDKD_CONTROL_PORT [8000]  FEDKD_DATABASE [$FLWR_HOME/superlink.db]  FEDKD_AUTH [1]  FEDKD_INSECURE [0]
#   supernode   fedkd-supernode (flower-supernode without its fixed waits) for one partition
#               FEDKD_SUPERLINK (HOST:PORT of the Fleet API, required)  FEDKD_PARTITION_ID (required)
#               FEDKD_NUM_PARTITIONS (required)  FEDKD_NODE_KEY [$FEDKD_CERTS/keys/node-$FEDKD_PARTITION_ID]
#               FEDKD_CLIENTAPPIO_PORT [9094]  FEDKD_STATE_DIR [/state]  FEDKD_DATA_DIR (the node's own
#               data: train/ and test/; unset = its share of the run's dataset)  FEDKD_TRANSFER_DIR (its
#               copy of the public transfer set; with both, `fedkd check-data` runs first, except with
#               --dry-run, and a problem stops the node)  FEDKD_CERTS  FEDKD_AUTH  FEDKD_INSECURE
#   register    fedkd register: every $FEDKD_CERTS/keys/*.pub (or FEDKD_NODE_KEYS) with the SuperLink
#               FEDKD_CONTROL (HOST:PORT of the control API, required)  FEDKD_CERTS  FEDKD_INSECURE
#   app         fedkd submit: run the app on the SuperLink and wait for it
#               FEDKD_CONTROL (required)  FEDKD_CONFIG (a TOML file)  FEDKD_SET ("k=v k=v")  FEDKD_CERTS  FEDKD_INSECURE
#   simulate    fedkd simulate EXTRA ARGS (no Flower processes; Flower's simulation engine)
#   certs       fedkd certs EXTRA ARGS
# --dry-run prints the command it would run (after the same checks) and exits.
# Extra arguments are appended to the command (e.g. `supernode --max-retries 5`).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
fail() { echo "entrypoint: $*" >&2; exit 2; }

need_file() {  # need_file WHAT PATH
  [[ -f "$2" ]] || fail "$1 not found: $2"
}
need_int() {  # need_int NAME VALUE
  [[ "$2" =~ ^[0-9]+$ ]] || fail "$1 must be a non-negative integer, got '${2}'"
}
need_set() {  # need_set NAME
  [[ -n "${!1:-}" ]] || fail "$1 is required for role '$ROLE'"
}
flag() {  # flag NAME DEFAULT -> 0/1
  local value="${!1:-$2}"
  case "$value" in
    1|true|yes) echo 1 ;;
    0|false|no) echo 0 ;;
    *) fail "$1 must be 0 or 1, got '$value'" ;;
  esac
}

ROLE="${1:-}"
[[ -n "$ROLE" ]] || { usage; exit 2; }
shift
case "$ROLE" in -h|--help|help) usage; exit 0 ;; esac
DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi

CERTS="${FEDKD_CERTS:-/certs}"
INSECURE=$(flag FEDKD_INSECURE 0)
AUTH=$(flag FEDKD_AUTH 1)
if [[ "$INSECURE" == 1 ]]; then AUTH=0; fi  # Flower's node authentication needs TLS
export FLWR_HOME="${FLWR_HOME:-/tmp/flwr-home}"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1

tls_server_args() {
  need_file "CA certificate" "$CERTS/ca.crt"
  need_file "server certificate" "$CERTS/server.pem"
  need_file "server private key" "$CERTS/server.key"
  cmd+=(--ssl-ca-certfile "$CERTS/ca.crt" --ssl-certfile "$CERTS/server.pem" --ssl-keyfile "$CERTS/server.key")
}
connection_args() {
  need_set FEDKD_CONTROL
  cmd+=(--superlink "$FEDKD_CONTROL")
  if [[ "$INSECURE" == 1 ]]; then
    cmd+=(--insecure)
  else
    need_file "CA certificate" "$CERTS/ca.crt"
    cmd+=(--ca "$CERTS/ca.crt")
  fi
}
config_args() {
  if [[ -n "${FEDKD_CONFIG:-}" ]]; then need_file "config file (FEDKD_CONFIG)" "$FEDKD_CONFIG"; cmd+=(--config "$FEDKD_CONFIG"); fi
  local pair
  for pair in ${FEDKD_SET:-}; do
    [[ "$pair" == *=* ]] || fail "FEDKD_SET holds '$pair'; expected KEY=VALUE pairs separated by spaces"
    cmd+=(--set "$pair")
  done
}
node_keys() {  # the public keys to register
  local keys=()
  if [[ -n "${FEDKD_NODE_KEYS:-}" ]]; then
    read -r -a keys <<< "$FEDKD_NODE_KEYS"
  else
    shopt -s nullglob
    keys=("$CERTS"/keys/*.pub)
    shopt -u nullglob
  fi
  [[ ${#keys[@]} -gt 0 ]] || fail "no SuperNode public keys: none in $CERTS/keys and FEDKD_NODE_KEYS unset"
  local key
  for key in "${keys[@]}"; do need_file "SuperNode public key" "$key"; done
  cmd+=("${keys[@]}")
}

cmd=()
case "$ROLE" in
  superlink)
    control_port="${FEDKD_CONTROL_PORT:-8000}"
    need_int FEDKD_CONTROL_PORT "$control_port"
    cmd=(flower-superlink --host "${FEDKD_CONTROL_HOST:-0.0.0.0}" --port "$control_port"
         --fleet-api-address "${FEDKD_FLEET_ADDRESS:-0.0.0.0:9092}"
         --database "${FEDKD_DATABASE:-$FLWR_HOME/superlink.db}" --disable-runtime-dependency-installation)
    if [[ "$INSECURE" == 1 ]]; then cmd+=(--insecure); else tls_server_args; fi
    if [[ "$AUTH" == 1 ]]; then cmd+=(--enable-supernode-auth); fi
    ;;
  supernode)
    need_set FEDKD_SUPERLINK
    need_set FEDKD_PARTITION_ID
    need_set FEDKD_NUM_PARTITIONS
    need_int FEDKD_PARTITION_ID "$FEDKD_PARTITION_ID"
    need_int FEDKD_NUM_PARTITIONS "$FEDKD_NUM_PARTITIONS"
    (( FEDKD_PARTITION_ID < FEDKD_NUM_PARTITIONS )) \
      || fail "FEDKD_PARTITION_ID ($FEDKD_PARTITION_ID) must be below FEDKD_NUM_PARTITIONS ($FEDKD_NUM_PARTITIONS)"
    port="${FEDKD_CLIENTAPPIO_PORT:-9094}"
    need_int FEDKD_CLIENTAPPIO_PORT "$port"
    node_config="partition-id=$FEDKD_PARTITION_ID num-partitions=$FEDKD_NUM_PARTITIONS"
    node_config+=" state-dir=\"${FEDKD_STATE_DIR:-/state}\""
    if [[ -n "${FEDKD_DATA_DIR:-}" ]]; then node_config+=" data-dir=\"$FEDKD_DATA_DIR\""; fi
    if [[ -n "${FEDKD_TRANSFER_DIR:-}" ]]; then node_config+=" transfer-dir=\"$FEDKD_TRANSFER_DIR\""; fi
    if [[ -n "${FEDKD_DATA_DIR:-}" && -n "${FEDKD_TRANSFER_DIR:-}" && "$DRY_RUN" != 1 ]]; then
      # Flower starts the ClientApp only when the first message arrives: check the node's files now, all at once.
      # (Not with --dry-run: the data are mounted in the container that runs the node.)
      fedkd check-data "$FEDKD_DATA_DIR" --transfer "$FEDKD_TRANSFER_DIR" --quiet >&2 \
        || fail "FEDKD_DATA_DIR=$FEDKD_DATA_DIR has the problems listed above (fedkd check-data); fix them first"
    fi
    if [[ "$INSECURE" != 1 && "$AUTH" == 1 ]]; then  # the ClientApp proves its client id with the same key
      node_config+=" auth-key=\"${FEDKD_NODE_KEY:-$CERTS/keys/node-$FEDKD_PARTITION_ID}\""
    fi
    cmd=(fedkd-supernode --superlink "$FEDKD_SUPERLINK" --host 127.0.0.1 --port "$port"
         --node-config "$node_config")
    if [[ "$INSECURE" == 1 ]]; then
      cmd+=(--insecure)
    else
      need_file "CA certificate" "$CERTS/ca.crt"
      cmd+=(--root-certificates "$CERTS/ca.crt")
    fi
    if [[ "$AUTH" == 1 ]]; then
      key="${FEDKD_NODE_KEY:-$CERTS/keys/node-$FEDKD_PARTITION_ID}"
      need_file "SuperNode private key" "$key"
      cmd+=(--auth-supernode-private-key "$key")
    fi
    ;;
  register)
    cmd=(fedkd register)
    connection_args
    node_keys
    ;;
  app)
    cmd=(fedkd submit --app "${FEDKD_APP_DIR:-/app}")
    connection_args
    config_args
    ;;
  simulate) cmd=(fedkd simulate) ;;
  certs) cmd=(fedkd certs) ;;
  *) echo "entrypoint: unknown role '$ROLE'" >&2; usage >&2; exit 2 ;;
esac
cmd+=("$@")

if [[ "$DRY_RUN" == 1 ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
mkdir -p "$FLWR_HOME"
exec "${cmd[@]}"
