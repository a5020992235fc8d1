/* stripepay 0.1.0: Stripe payments inside PostgreSQL */
\echo Use "CREATE EXTENSION stripepay" to load this file. \quit

/*
 * Roles.  They are cluster-wide and outlive the extension, so they are made
 * only when absent: a second database's CREATE EXTENSION must not fail.
 */
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'stripepay_admin') THEN
		CREATE ROLE stripepay_admin NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'stripepay_user') THEN
		CREATE ROLE stripepay_user NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'stripepay_webhook') THEN
		CREATE ROLE stripepay_webhook NOLOGIN;
	END IF;
END
$roles$;

GRANT USAGE ON SCHEMA @extschema@ TO stripepay_admin, stripepay_user, stripepay_webhook;

/*
 * Settings: at most one row, created by the first configure().  No row is
 * inserted here, because pg_restore re-runs this script before it restores the
 * dumped row, and a default row would collide with it.
 *
 * The secret key lives in this table rather than in a GUC: GUC values leak
 * through reload log lines, rejected-value messages and pg_db_role_setting.
 * Only the extension owner (a superuser) can read the table.
 */
CREATE TABLE @extschema@.settings (
	singleton		boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	secret_key		text,
	publishable_key text,
	brand_name		text,
	brand_logo		text,
	brand_slogan	text,
	success_url		text,
	cancel_url		text,
	payment_flow	text NOT NULL DEFAULT 'checkout'
		CHECK (payment_flow IN ('checkout', 'payment_intent')),
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE TABLE @extschema@.recurring_payment (
	id				bigserial PRIMARY KEY,
	order_id		bigint NOT NULL,
	price_id		text NOT NULL,
	status			text NOT NULL DEFAULT 'INCOMPLETE'
		CHECK (status IN ('INCOMPLETE', 'INCOMPLETE_EXPIRED', 'TRIALING', 'ACTIVE',
						  'PAST_DUE', 'CANCELED', 'UNPAID', 'PAUSED')),
	checkout_session_id text UNIQUE,
	checkout_url	text,
	subscription_id text UNIQUE,
	customer_id		text,
	current_period_start timestamptz,
	current_period_end timestamptz,
	cancel_at_period_end boolean NOT NULL DEFAULT false,
	canceled_at		timestamptz,
	livemode		boolean,
	created_by		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON @extschema@.recurring_payment (order_id);

/*
 * One row per attempt to be paid: a one-time payment (stripe_pay) or a
 * subscription renewal.  Refunds never change status; they add up in
 * amount_refunded.
 */
CREATE TABLE @extschema@.payment_record (
	id				bigserial PRIMARY KEY,
	order_id		bigint NOT NULL,
	kind			text NOT NULL DEFAULT 'ONE_TIME'
		CHECK (kind IN ('ONE_TIME', 'RENEWAL')),
	recurring_payment_id bigint REFERENCES @extschema@.recurring_payment (id),
	status			text NOT NULL DEFAULT 'PENDING'
		CHECK (status IN ('PENDING', 'SUCCESSFUL', 'FAILED', 'CANCELED')),
	currency		text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
	amount			bigint NOT NULL CHECK (amount > 0),
	amount_refunded bigint NOT NULL DEFAULT 0
		CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
	flow			text NOT NULL
		CHECK (flow IN ('checkout', 'payment_intent', 'invoice')),
	checkout_session_id text UNIQUE,
	checkout_url	text,
	expires_at		timestamptz,
	payment_intent_id text UNIQUE,
	client_secret	text,
	invoice_id		text UNIQUE,
	charge_id		text,
	livemode		boolean,
	failure_code	text,
	failure_message text,
	created_by		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON @extschema@.payment_record (order_id);

CREATE TABLE @extschema@.refund (
	id				bigserial PRIMARY KEY,
	payment_id		bigint NOT NULL REFERENCES @extschema@.payment_record (id),
	order_id		bigint NOT NULL,
	currency		text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
	amount			bigint NOT NULL CHECK (amount > 0),
	status			text NOT NULL DEFAULT 'PENDING'
		CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'CANCELED')),
	stripe_refund_id text UNIQUE,
	reason			text,
	failure_reason	text,
	created_by		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON @extschema@.refund (payment_id);

/* Every Stripe event received, keyed by Stripe's event id: the dedup log. */
CREATE TABLE @extschema@.webhook_event (
	id				text PRIMARY KEY,
	type			text NOT NULL,
	api_version		text,
	livemode		boolean NOT NULL,
	created			timestamptz NOT NULL,
	object_id		text,
	endpoint		text,
	source			text NOT NULL DEFAULT 'webhook'
		CHECK (source IN ('webhook', 'sync')),
	order_id		bigint,
	payment_id		bigint,
	refund_id		bigint,
	recurring_payment_id bigint,
	payload			jsonb NOT NULL,
	received_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON @extschema@.webhook_event (type, created);

/* pg_dump keeps the rows (and sequence positions) of these member objects. */
SELECT pg_catalog.pg_extension_config_dump('@extschema@.settings', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.recurring_payment', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.recurring_payment_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.payment_record', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.payment_record_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refund', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refund_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.webhook_event', '');

/* "sk_test_…1234": enough to tell keys apart, never enough to use one. */
CREATE FUNCTION @extschema@.mask_key(key text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE
	WHEN pg_catalog.length(key) < 12 THEN '…'
	ELSE pg_catalog.substring(key, '^[a-z]+_(?:test_|live_)?')
		 || '…'
		 || pg_catalog.right(key, 4)
END;

/* What an admin may see of the settings: everything but the secret itself. */
CREATE VIEW @extschema@.config AS
SELECT @extschema@.mask_key(secret_key) AS secret_key,
	   publishable_key,
	   CASE
		   WHEN secret_key LIKE '%\_live\_%' THEN 'live'
		   WHEN secret_key LIKE '%\_test\_%' THEN 'test'
	   END AS mode,
	   brand_name, brand_logo, brand_slogan,
	   success_url, cancel_url, payment_flow, updated_at
FROM @extschema@.settings;

CREATE FUNCTION @extschema@.configure(
	secret_key text DEFAULT NULL,
	publishable_key text DEFAULT NULL,
	brand_name text DEFAULT NULL,
	brand_logo text DEFAULT NULL,
	brand_slogan text DEFAULT NULL,
	success_url text DEFAULT NULL,
	cancel_url text DEFAULT NULL,
	payment_flow text DEFAULT NULL)
RETURNS @extschema@.config
AS 'MODULE_PATHNAME', 'stripepay_configure'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.stripe_pay(order_id bigint, currency text, amount numeric)
RETURNS @extschema@.payment_record
AS 'MODULE_PATHNAME', 'stripepay_stripe_pay'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

/*
 * Privileges.  Nothing is open to PUBLIC: the admin hands stripepay_user to
 * application roles and stripepay_admin to the people who manage money.
 */
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;

GRANT EXECUTE ON FUNCTION @extschema@.mask_key(text) TO PUBLIC;
GRANT SELECT ON @extschema@.config TO stripepay_admin;
GRANT EXECUTE ON FUNCTION @extschema@.configure(text, text, text, text, text, text, text, text)
	TO stripepay_admin;

GRANT EXECUTE ON FUNCTION @extschema@.stripe_pay(bigint, text, numeric)
	TO stripepay_user, stripepay_admin;
GRANT SELECT ON @extschema@.payment_record, @extschema@.refund,
	@extschema@.recurring_payment
	TO stripepay_user, stripepay_admin;
GRANT SELECT ON @extschema@.webhook_event TO stripepay_admin;
