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

step "5. The payment row as the database holds it"
q <<'SQL'
\x on
SELECT * FROM stripepay.payment_record WHERE order_id = 1;
SQL
echo
echo "Done. (Webhook ingestion, which turns the payment SUCCESSFUL, is not part of this version yet.)"
