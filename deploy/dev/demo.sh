#!/usr/bin/env bash
# make demo: the whole system on its embedded defaults, on one machine.
#
#   PostgreSQL  the local server on 127.0.0.1:5432 when it answers, else a private
#               throwaway cluster started from the installed server binaries
#               (installed with apt-get when we may)
#   MQTT        the broker embedded in sm-edge (`sm-edge broker`), unless
#               SM_DEMO_BROKER=tcp://host:port names one
#   collector   sm-collector on 127.0.0.1:8080 with a signed-webhook channel
#   webhooks    `sm-collector notify receive`, printing every notification
#   edge        sm-edge with the example site config (built-in detectors)
#   models      a local directory (.demo/models) as the model store: after
#               SM_DEMO_TRAIN_AFTER seconds (150) a PCA model is trained from one
#               pump's stored history, signed, published there and promoted, and
#               the edge picks it up (its trusted key comes from `models keygen`)
#   plant       `sm-edge simulate`: 5 pumps × 7 sensors at 1 Hz, first fault within 90 s
#
# Everything lives in .demo/ and stops on Ctrl-C. Ports: SM_DEMO_PORT (8080).
set -eu
cd "$(dirname "$0")/../.."
ROOT=$PWD
DEMO=$ROOT/.demo
BIN=$ROOT/bin
PORT=${SM_DEMO_PORT:-8080}
BROKER_PORT=${SM_DEMO_BROKER_PORT:-18830}
PGPORT_PRIVATE=${SM_DEMO_PGPORT:-55432}
ASSETS=${SM_DEMO_ASSETS:-5}
TRAIN_AFTER=${SM_DEMO_TRAIN_AFTER:-150}

say() { printf '\033[1mdemo:\033[0m %s\n' "$*" >&2; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
	local i
	for i in $(seq 1 150); do port_open "$1" && return 0; sleep 0.2; done
	die "$2 did not start on port $1; see $3"
}

[ -x "$BIN/sm-edge" ] && [ -x "$BIN/sm-collector" ] || die "run 'make demo' (it builds bin/ first)"
port_open "$PORT" && die "port $PORT is taken; set SM_DEMO_PORT to a free port"

rm -rf "$DEMO"
mkdir -p "$DEMO"
PIDS=()
PG_PRIVATE=""
cleanup() {
	trap - EXIT INT TERM
	say "stopping"
	local i
	for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$PG_PRIVATE" ]; then
		pg_as "$PGBIN/pg_ctl" -D "$PG_PRIVATE" -m fast -w stop >/dev/null 2>&1 || true
		rm -rf "$PG_PRIVATE"
	fi
	say "stopped; logs are in .demo/"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- PostgreSQL -------------------------------------------------------------
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
DB=smartmaint_demo
if port_open 5432 && command -v psql >/dev/null && psql -qAt -h 127.0.0.1 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
	say "PostgreSQL: using the local server on 127.0.0.1:5432 (database $DB, recreated)"
	psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
	export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
else
	PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
	if [ -z "$PGBIN" ]; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
			say "installing PostgreSQL with apt-get"
			apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
			PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
		else
			die "PostgreSQL is needed: install it (sudo apt-get install -y postgresql) or start one on 127.0.0.1:5432 with a trusted 'postgres' role"
		fi
	fi
	PG_PRIVATE=$(mktemp -d /tmp/smartmaint-demo-pg.XXXXXX)
	[ "$(id -u)" = 0 ] && chown postgres "$PG_PRIVATE"
	say "PostgreSQL: starting a private cluster on 127.0.0.1:$PGPORT_PRIVATE ($PG_PRIVATE)"
	pg_as "$PGBIN/initdb" -D "$PG_PRIVATE" -A trust -U postgres >"$DEMO/initdb.log" 2>&1 || die "initdb failed; see .demo/initdb.log"
	pg_as "$PGBIN/pg_ctl" -D "$PG_PRIVATE" -w -l "$PG_PRIVATE/log" \
		-o "-p $PGPORT_PRIVATE -k $PG_PRIVATE -c listen_addresses=127.0.0.1" start >/dev/null ||
		die "the private PostgreSQL did not start; see $PG_PRIVATE/log"
	pg_as "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT_PRIVATE" -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null
	export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT_PRIVATE/$DB?sslmode=disable"
fi

# ---- collector ---------------------------------------------------------------
"$BIN/sm-collector" migrate 2>"$DEMO/migrate.log" || die "migrate failed; see .demo/migrate.log"
"$BIN/sm-collector" edge register --name demo-line1 >"$DEMO/edge.token" 2>>"$DEMO/migrate.log"
"$BIN/sm-collector" apikey create --name demo-viewer --role viewer >"$DEMO/viewer.key" 2>>"$DEMO/migrate.log"
"$BIN/sm-collector" apikey create --name demo-operator --role operator >"$DEMO/operator.key" 2>>"$DEMO/migrate.log"
# Model store: a local directory (same layout as an S3 bucket) and a signing key.
export SM_COLLECTOR_MODELS_DIR=$DEMO/models
mkdir -p "$SM_COLLECTOR_MODELS_DIR"
"$BIN/sm-collector" models keygen --out "$DEMO/models.key" >"$DEMO/models.pub" 2>>"$DEMO/migrate.log" ||
	die "models keygen failed; see .demo/migrate.log"
export SM_DEMO_WEBHOOK_SECRET
SM_DEMO_WEBHOOK_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
WEBHOOK_PORT=$((PORT + 19))
cat >"$DEMO/collector.yaml" <<YAML
version: 1
listen: 127.0.0.1:$PORT
log: {level: info, format: text}
alerts:
  public_base_url: http://127.0.0.1:$PORT
  auto_resolve_after: 2m
notify:
  group_window: 2s
  backoff_min: 1s
  channels:
    - name: demo-webhook
      type: webhook
      url: http://127.0.0.1:$WEBHOOK_PORT/
      secret: {env: SM_DEMO_WEBHOOK_SECRET}
  routes:
    - channels: [demo-webhook]
YAML
"$BIN/sm-collector" notify receive --listen "127.0.0.1:$WEBHOOK_PORT" --secret-env SM_DEMO_WEBHOOK_SECRET \
	>"$DEMO/webhooks.jsonl" 2>"$DEMO/webhooks.log" &
PIDS+=($!)
"$BIN/sm-collector" serve --config "$DEMO/collector.yaml" >"$DEMO/collector.log" 2>&1 &
PIDS+=($!)
wait_port "$PORT" sm-collector .demo/collector.log

# ---- broker -------------------------------------------------------------------
if [ -n "${SM_DEMO_BROKER:-}" ]; then
	BROKER=$SM_DEMO_BROKER
	say "MQTT: using $BROKER"
else
	port_open "$BROKER_PORT" && die "port $BROKER_PORT is taken; set SM_DEMO_BROKER_PORT"
	"$BIN/sm-edge" broker --listen "127.0.0.1:$BROKER_PORT" --data-dir "$DEMO/broker" >"$DEMO/broker.log" 2>&1 &
	PIDS+=($!)
	BROKER=tcp://127.0.0.1:$BROKER_PORT
	wait_port "$BROKER_PORT" "the embedded broker" .demo/broker.log
	say "MQTT: embedded broker on $BROKER"
fi

# ---- edge -----------------------------------------------------------------------
"$BIN/sm-edge" config example |
	sed -e "s#^data_dir: .*#data_dir: $DEMO/edge-data#" \
		-e "s#^  listen: 127.0.0.1:9470#  listen: 127.0.0.1:$((PORT + 1390))#" \
		-e "s#^  url: tcp://127.0.0.1:1883#  url: $BROKER#" \
		-e "s#^  client_id: sm-edge-riverside-line1#  client_id: sm-edge-demo-line1#" \
		-e "s#^edge_id: riverside-line1#edge_id: demo-line1#" \
		-e "s#^  url: http://127.0.0.1:8080#  url: http://127.0.0.1:$PORT#" \
		-e "s#^  token_file: /etc/sm-edge/collector.token#  token_file: $DEMO/edge.token\n  batch_delay: 200ms#" \
		-e "s#^  status_interval: 30s#  status_interval: 10s#" \
		-e "s#^  format: json       \# json#  format: text       \# json#" \
		>"$DEMO/edge.yaml"
cat >>"$DEMO/edge.yaml" <<YAML

models:
  dir: $SM_COLLECTOR_MODELS_DIR
  poll_interval: 10s
  trusted_keys: ["$(cat "$DEMO/models.pub")"]
YAML
"$BIN/sm-edge" config validate --config "$DEMO/edge.yaml" >/dev/null 2>"$DEMO/edge-validate.log" ||
	die "the demo edge config does not validate; see .demo/edge-validate.log"
ADMIN=127.0.0.1:$((PORT + 1390))
"$BIN/sm-edge" run --config "$DEMO/edge.yaml" >"$DEMO/edge.log" 2>&1 &
PIDS+=($!)
wait_port "$((PORT + 1390))" sm-edge .demo/edge.log

# ---- plant ------------------------------------------------------------------------
"$BIN/sm-edge" simulate --broker "$BROKER" --site riverside --line line1 --assets "$ASSETS" --rate 1 \
	--truth "$DEMO/truth.jsonl" --progress 30s >"$DEMO/simulate.json" 2>"$DEMO/simulate.log" &
PIDS+=($!)

VIEWER=$(cat "$DEMO/viewer.key")
cat >&2 <<INFO

  Smart Maintenance demo is running ($ASSETS pumps × 7 sensors at 1 Hz; a fault is injected within 90 s).

  API            http://127.0.0.1:$PORT/api/v1/   (OpenAPI: /openapi.json)
  viewer key     $VIEWER
                 (operator key for ack/resolve: .demo/operator.key)
    curl -H "Authorization: Bearer $VIEWER" http://127.0.0.1:$PORT/api/v1/sensors
    curl -H "Authorization: Bearer $VIEWER" http://127.0.0.1:$PORT/api/v1/alerts
    curl -H "Authorization: Bearer $VIEWER" http://127.0.0.1:$PORT/metrics
  edge status    bin/sm-edge status --config $DEMO/edge.yaml --admin $ADMIN
  edge metrics   curl -H "Authorization: Bearer \$(cat $DEMO/edge-data/admin.token)" http://$ADMIN/metrics
  webhooks       .demo/webhooks.jsonl (signed notifications, verified on receipt)
  models         .demo/models (manifest + signed artifacts); a model is trained at ${TRAIN_AFTER}s
  ground truth   .demo/truth.jsonl (the faults the simulator injected)
  logs           .demo/*.log

  Ctrl-C stops everything.

INFO

# Report progress until Ctrl-C: readings stored, alerts, notifications.
if ! command -v curl >/dev/null; then
	say "curl is not installed, so no progress lines; the demo runs until Ctrl-C"
	while true; do
		for p in "${PIDS[@]}"; do
			kill -0 "$p" 2>/dev/null || die "a demo process stopped unexpectedly; see the logs in .demo/"
		done
		sleep 5
	done
fi
api() { curl -fsS -H "Authorization: Bearer $VIEWER" "http://127.0.0.1:$PORT$1" 2>/dev/null || true; }

# train_model fits a PCA model to one pump's stored history (a pump without
# an injected fault so far, when there is one), publishes it to the model
# directory and promotes it for that pump's sensors. Failure is reported,
# never fatal: the edge keeps its built-in detectors.
train_model() {
	local asset="" n sensors glob from to out name
	for n in $(seq "$ASSETS" -1 1); do
		if ! grep -q "\"pump$n\"" "$DEMO/truth.jsonl" 2>/dev/null; then asset=pump$n; break; fi
	done
	[ -n "$asset" ] || asset=pump1
	sensors=$(api "/api/v1/sensors?limit=1000" | grep -o "\"id\":\"[^\"]*/$asset/[^\"]*\"" | cut -d'"' -f4 | paste -sd, -)
	if [ -z "$sensors" ]; then
		say "model: no stored sensors for $asset yet; the edge keeps its built-in detectors"
		return
	fi
	glob=${sensors%%,*}; glob=${glob%/*}/*   # this pump's sensors: site/line/pumpN/*
	from=$(date -u -d "@$start" +%Y-%m-%dT%H:%M:%SZ)
	to=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	out=$DEMO/model-$asset.json
	if ! name=$("$BIN/sm-collector" models train --sensors "$sensors" --from "$from" --to "$to" --kind pca \
		--name "demo-$asset" --out "$out" 2>"$DEMO/train.log"); then
		say "model: training for $asset failed ($(tail -1 "$DEMO/train.log")); the edge keeps its built-in detectors"
		return
	fi
	if ! "$BIN/sm-collector" models publish "$out" --key "$DEMO/models.key" --promote "sensor=$glob" \
		>/dev/null 2>>"$DEMO/train.log"; then
		say "model: publishing $name failed ($(tail -1 "$DEMO/train.log")); the edge keeps its built-in detectors"
		return
	fi
	say "model: trained $name from $asset's history ($from..$to, $(echo "$sensors" | tr , '\n' | wc -l) sensors), published to .demo/models and promoted for $glob; the edge picks it up within 10 s (see .demo/train.log)"
}
edge_models() {
	"$BIN/sm-edge" status --config "$DEMO/edge.yaml" --admin "$ADMIN" 2>/dev/null | sed -n 's/^models[[:space:]]*//p' | paste -sd, - || true
}

first_alert=""
trained=""
start=$(date +%s)
while true; do
	for p in "${PIDS[@]}"; do
		kill -0 "$p" 2>/dev/null || die "a demo process stopped unexpectedly; see the logs in .demo/"
	done
	sleep 10
	alerts=$(api "/api/v1/alerts?limit=100" | grep -o '"id":' | wc -l)
	sensors=$(api "/api/v1/sensors?limit=1000" | grep -o '"last_value"' | wc -l)
	notes=$(wc -l <"$DEMO/webhooks.jsonl")
	say "$(( $(date +%s) - start ))s: $sensors sensors reporting, $alerts alert(s), $notes notification(s) delivered; edge models: $(edge_models)"
	if [ -z "$first_alert" ] && [ "$alerts" -gt 0 ]; then
		first_alert=1
		say "first alert after $(( $(date +%s) - start ))s:"
		api "/api/v1/alerts?limit=1" | head -c 700 >&2; echo >&2
	fi
	if [ -z "$trained" ] && [ $(( $(date +%s) - start )) -ge "$TRAIN_AFTER" ]; then
		trained=1
		train_model
	fi
done
