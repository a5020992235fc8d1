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

-- the payment actionflow: when Stripe confirms the payment, mark the order
CREATE FUNCTION mark_order_paid() RETURNS trigger
LANGUAGE plpgsql SET search_path = public AS $$
BEGIN
	IF NOT NEW.already_processed THEN
		UPDATE orders SET status = lower(NEW.payment_status) WHERE id = NEW.order_id;
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
	cancel_url   => 'https://shop.example/cart');
SQL

step "3. stripe_pay(): a Checkout Session for order 1"
q <<'SQL'
\x on
SELECT id, order_id, status, currency, amount, checkout_session_id, checkout_url, expires_at
  FROM stripepay.stripe_pay(1, 'usd', 1999);
SQL

session=$(psql -X -A -t -c "SELECT checkout_session_id FROM stripepay.payment_record WHERE order_id = 1")
url=$(psql -X -A -t -c "SELECT checkout_url FROM stripepay.payment_record WHERE order_id = 1")

step "4. The buyer pays"
if [ -n "$api_base" ]; then
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
	step "5. The payment row as the database holds it"
	q <<'SQL'
\x on
SELECT * FROM stripepay.payment_record WHERE order_id = 1;
SQL
	echo
	echo "Once Stripe's webhook reaches stripe_ingest_webhook() (see the README), the row turns SUCCESSFUL."
	exit 0
fi

step "5. Stripe's signed webhook events reach stripe_ingest_webhook()"
secret=whsec_demo5WbX5kEWLlfzsGNjH64I8lOOqUB6e9Hj
q -v secret="$secret" <<'SQL'
SELECT endpoint, secret, live FROM stripepay.add_webhook_secret(:'secret');
SQL
# a front end listening for payments
psql -X -q -c "LISTEN stripepay_payment" -c "SELECT pg_sleep(3)" >"$SP_TMP/listen.out" 2>&1 &
listener=$!
sleep 0.5
python3 - "$SP_EMULATOR_URL" "$secret" <<'PY'
import hashlib, hmac, json, subprocess, sys, time, urllib.request
base, secret = sys.argv[1], sys.argv[2]
events = json.load(urllib.request.urlopen(base + "/_emulator/events", timeout=10))
for event in events:
    body = json.dumps(event, indent=2).encode()
    t = int(time.time())
    header = f"t={t},v1=" + hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    out = subprocess.run(["psql", "-X", "-A", "-t", "-F", " | ", "-c",
                          f"SELECT * FROM stripepay.stripe_ingest_webhook('\\x{body.hex()}'::bytea, '{header}')"],
                         capture_output=True, text=True, check=True).stdout.strip()
    print("  " + out)
PY
wait "$listener" || true

step "6. The payment is SUCCESSFUL, the trigger marked the order paid, and the listener heard it"
q <<'SQL'
SELECT id, order_id, status, amount, payment_intent_id, charge_id FROM stripepay.payment_record WHERE order_id = 1;
TABLE orders;
SQL
grep 'Asynchronous notification' "$SP_TMP/listen.out" || echo "(no notification arrived)"
