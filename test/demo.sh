#!/usr/bin/env bash
# The whole loop on a throwaway cluster: an orders table, keys and brand,
# stripe_pay(), the Checkout URL and the payment row, then the buyer pays.
# Runs against the local Stripe emulator, or against real Stripe test mode
# when STRIPE_SECRET_KEY=sk_test_... is set.
set -euo pipefail
. "$(dirname "$0")/lib/env.sh"

if [ -n "${STRIPE_SECRET_KEY:-}" ]; then
	case "$STRIPE_SECRET_KEY" in
	sk_test_* | rk_test_*) ;;
	*) sp_die "the demo runs in test mode only: STRIPE_SECRET_KEY must start with sk_test_ or rk_test_" ;;
	esac
fi

sp_install_deps
sp_build_install
sp_make_tmp

if [ -n "${STRIPE_SECRET_KEY:-}" ]; then
	sp_log "using real Stripe test mode"
	api_base=""
	key=$STRIPE_SECRET_KEY
else
	sp_emulator_start
	sp_log "using the local Stripe emulator at $SP_EMULATOR_URL"
	api_base=$SP_EMULATOR_URL
	key=sk_test_demo4eC39HqLyjWDarjtT1zdp7dc
fi
sp_cluster_start "$api_base"

q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
# stripepay-relay receives the emulator's webhooks; setup_webhooks() makes the
# account's four endpoints point at it and stores their signing secrets.
start_relay() {
	step "3. stripepay-relay, and the webhook endpoints that point at it"
	relay_port=$(sp_free_port)
	q <<-'SQL'
	CREATE ROLE demo_relay LOGIN IN ROLE stripepay_webhook;
	SQL
	PGUSER=demo_relay "$SP_ROOT/src/relay/stripepay-relay" --listen "127.0.0.1:$relay_port" \
		>"$SP_TMP/relay.log" 2>&1 &
	relay_pid=$!
	trap 'kill $relay_pid 2>/dev/null; sp_teardown' EXIT
	for _ in $(seq 1 50); do
		python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
			"http://127.0.0.1:$relay_port/healthz" 2>/dev/null && break
		sleep 0.1
	done
	echo "stripepay-relay listens on 127.0.0.1:$relay_port; setup_webhooks() makes the four endpoints:"
	q -v base="http://127.0.0.1:$relay_port" <<-'SQL'
	SELECT endpoint, url, created FROM stripepay.setup_webhooks(:'base');
	SQL
}



step() { printf '\n\033[1m%s\033[0m\n' "$*"; }

step "1. CREATE EXTENSION and an application table"
q <<'SQL'
CREATE EXTENSION stripepay;
CREATE TABLE orders (
	id       bigserial PRIMARY KEY,
	item     text NOT NULL,
	currency text NOT NULL,
	amount   bigint NOT NULL,
	status   text NOT NULL DEFAULT 'new'
);
INSERT INTO orders (item, currency, amount) VALUES ('A year of cheese', 'usd', 1999);
TABLE orders;

-- the role the actionflow triggers run as: what they touch, and nothing else
CREATE ROLE demo_flows;
GRANT SELECT, UPDATE ON orders TO demo_flows;

-- the payment actionflow: when Stripe confirms the payment, mark the order
-- paid, if what was paid is what the order costs
CREATE FUNCTION mark_order_paid() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
	IF NOT NEW.already_processed THEN
		UPDATE orders
		   SET status = CASE NEW.payment_status WHEN 'SUCCESSFUL' THEN 'paid'
						 ELSE lower(NEW.payment_status) END
		 WHERE id = NEW.order_id AND amount = NEW.amount AND currency = NEW.currency;
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER mark_order_paid AFTER INSERT ON stripepay.payment_flow
	FOR EACH ROW EXECUTE FUNCTION mark_order_paid();
SQL

step "2. Keys and brand (the secret key is stored, and shown masked)"
# the key travels as a psql variable, never inside the script's text
q -v key="$key" <<'SQL'
\x on
SELECT * FROM stripepay.configure(
	secret_key   => :'key',
	brand_name   => 'Cheese & Co.',
	brand_slogan => 'Cheese, delivered',
	brand_logo   => 'https://images.example/cheese.png',
	success_url  => 'https://shop.example/thanks?session={CHECKOUT_SESSION_ID}',
	cancel_url   => 'https://shop.example/cart',
	flow_role    => 'demo_flows');
SQL

[ -n "$api_base" ] && start_relay

step "4. stripe_pay(): a Checkout Session for order 1"
q <<'SQL'
\x on
SELECT id, order_id, status, currency, amount, checkout_session_id, checkout_url, expires_at
  FROM stripepay.stripe_pay(1, 'usd', 1999);
SQL

session=$(psql -X -A -t -c "SELECT checkout_session_id FROM stripepay.payment_record WHERE order_id = 1")
url=$(psql -X -A -t -c "SELECT checkout_url FROM stripepay.payment_record WHERE order_id = 1")

step "5. The buyer pays"
if [ -n "$api_base" ]; then
	# a front end listening for payments
	psql -X -q -c "LISTEN stripepay_payment" -c "SELECT pg_sleep(4)" >"$SP_TMP/listen.out" 2>&1 &
	listener=$!
	sleep 0.5
	echo "The buyer opens $url and pays; here the emulator plays the buyer."
	python3 - "$SP_EMULATOR_URL/_emulator/checkout/sessions/$session/complete" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=b'{"outcome": "paid"}', method="POST",
                             headers={"Content-Type": "application/json"})
s = json.load(urllib.request.urlopen(req, timeout=10))
print("session", s["id"], "status", s["status"], "payment_status", s["payment_status"],
      "payment_intent", s["payment_intent"])
PY
else
	echo "Open this URL and pay with the test card 4242 4242 4242 4242:"
	echo "  $url"
fi

if [ -z "$api_base" ]; then
	step "6. The payment row as the database holds it"
	q <<'SQL'
\x on
SELECT * FROM stripepay.payment_record WHERE order_id = 1;
SQL
	echo
	echo "Once Stripe's webhook reaches stripe_ingest_webhook() (see the README), the row turns SUCCESSFUL."
	exit 0
fi

step "6. Stripe's signed webhooks travel through stripepay-relay into the database"
echo "The emulator delivers the buyer's events, signed, to the relay:"
python3 - "$SP_EMULATOR_URL" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
def call(method, path, body=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                 method=method, headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))
call("POST", "/_emulator/webhooks/flush", {"timeout": 20})
for d in call("GET", "/_emulator/deliveries"):
    print(f"  {d['type']:<28} -> {d['url'].split('/stripe/')[-1]:<12} HTTP {d['status']}")
PY
wait "$listener" || true
echo "The relay's log:"
sed 's/^/  /' "$SP_TMP/relay.log"

step "7. The payment is SUCCESSFUL, the trigger marked the order paid, and the listener heard it"
q <<'SQL'
SELECT id, order_id, status, amount, payment_intent_id, charge_id FROM stripepay.payment_record WHERE order_id = 1;
TABLE orders;
SQL
grep 'Asynchronous notification' "$SP_TMP/listen.out" || echo "(no notification arrived)"

# the demo shows the loop working, or fails
paid=$(psql -X -A -t -c "SELECT p.status || ' ' || o.status FROM stripepay.payment_record p
	JOIN orders o ON o.id = p.order_id WHERE p.order_id = 1")
if [ "$paid" != "SUCCESSFUL paid" ] || ! grep -q 'Asynchronous notification' "$SP_TMP/listen.out"; then
	sp_die "the loop did not complete: payment and order are \"$paid\""
fi
step "The whole loop ran: paid at the emulator, verified, recorded, the order marked paid, the front end told."
