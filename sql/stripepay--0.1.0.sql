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
	expires_at		timestamptz,	/* of the Checkout Session */
	subscription_id text UNIQUE,
	customer_id		text,
	current_period_start timestamptz,
	current_period_end timestamptz,
	cancel_at_period_end boolean NOT NULL DEFAULT false,
	canceled_at		timestamptz,
	livemode		boolean,
	event_created	timestamptz,	/* of the newest event applied */
	/* what that event changed from: its previous_attributes we read */
	event_changed_from jsonb,
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
	event_created	timestamptz,	/* of the newest event applied */
	created_by		name NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX ON @extschema@.payment_record (order_id);
CREATE INDEX ON @extschema@.payment_record (charge_id);
CREATE INDEX ON @extschema@.payment_record (recurring_payment_id);

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
	event_created	timestamptz,	/* of the newest event applied */
	/*
	 * The Idempotency-Key of the stripe_refund() call that made this refund
	 * and then rolled back, while no retry of that call has claimed it.
	 */
	unclaimed_key	text,
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

/* lz4 compresses a payload several times faster than pglz, where available */
DO $$
BEGIN
	IF 'lz4' = ANY (SELECT pg_catalog.unnest(enumvals) FROM pg_catalog.pg_settings
					 WHERE name = 'default_toast_compression') THEN
		ALTER TABLE @extschema@.webhook_event ALTER COLUMN payload SET COMPRESSION lz4;
	END IF;
END
$$;

/*
 * Events that name a payment by a Stripe id no payment has yet: a refund
 * whose payment's own events have not come (or which the database learns
 * only from them), the InvoicePayment of a renewal whose invoice.paid has
 * not come.  They are applied when a payment learns the id they wait for.
 */
CREATE TABLE @extschema@.waiting_event (
	stripe_id		text NOT NULL,	/* pi_..., ch_..., in_... */
	event_id		text NOT NULL,	/* in webhook_event */
	facts			jsonb NOT NULL,	/* the event as the ingest decoded it */
	waiting_since	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (stripe_id, event_id)
);
CREATE INDEX ON @extschema@.waiting_event (event_id);

/* pg_dump keeps the rows (and sequence positions) of these member objects. */
SELECT pg_catalog.pg_extension_config_dump('@extschema@.settings', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.recurring_payment', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.recurring_payment_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.payment_record', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.payment_record_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refund', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refund_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.webhook_event', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.waiting_event', '');

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

/* ----------------------------------------------------------------
 * Webhooks
 * ----------------------------------------------------------------
 */

/*
 * Signing secrets, several per endpoint while one is rotated out.  Readable
 * by the extension owner only, like the API key.
 */
CREATE TABLE @extschema@.webhook_secret (
	id				bigserial PRIMARY KEY,
	endpoint		text NOT NULL DEFAULT 'default' CHECK (endpoint ~ '^[A-Za-z0-9_.-]{1,64}$'),
	secret			text NOT NULL,
	expires_at		timestamptz,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	UNIQUE (endpoint, secret)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.webhook_secret', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.webhook_secret_id_seq', '');

CREATE VIEW @extschema@.webhook_secrets AS
SELECT id, endpoint, @extschema@.mask_key(secret) AS secret, expires_at,
	   expires_at IS NULL OR expires_at > pg_catalog.now() AS live, created_at
FROM @extschema@.webhook_secret;

CREATE FUNCTION @extschema@.add_webhook_secret(
	secret text,
	endpoint text DEFAULT 'default',
	expires_at timestamptz DEFAULT NULL)
RETURNS @extschema@.webhook_secrets
AS 'MODULE_PATHNAME', 'stripepay_add_webhook_secret'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

/*
 * The actionflows.  Each is a table that stripepay appends a row to when its
 * flow fires, inside the ingest's transaction: attach your logic with
 * CREATE TRIGGER ... AFTER INSERT ON stripepay.payment_flow ...  A failing
 * trigger rolls the whole event back, and Stripe delivers it again.
 */
CREATE TABLE @extschema@.payment_flow (
	id				bigserial PRIMARY KEY,
	event_id		text NOT NULL,
	event_type		text NOT NULL,
	order_id		bigint NOT NULL,
	payment_id		bigint NOT NULL,
	payment_status	text NOT NULL,
	already_processed boolean NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE TABLE @extschema@.refund_flow (
	id				bigserial PRIMARY KEY,
	event_id		text NOT NULL,
	event_type		text NOT NULL,
	order_id		bigint NOT NULL,
	payment_id		bigint NOT NULL,
	refund_id		bigint NOT NULL,
	refund_status	text NOT NULL,
	amount			bigint NOT NULL,
	already_processed boolean NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE TABLE @extschema@.subscription_flow (
	id				bigserial PRIMARY KEY,
	event_id		text NOT NULL,
	event_type		text NOT NULL,
	order_id		bigint NOT NULL,
	recurring_payment_id bigint NOT NULL,
	status			text NOT NULL,
	previous_status text,
	cancel_at_period_end boolean NOT NULL,
	already_processed boolean NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);

/*
 * A renewal charge.  order_id starts as the subscription's order; a BEFORE
 * INSERT trigger may create the renewal's own order and set NEW.order_id,
 * which then becomes the new payment record's order.
 */
CREATE TABLE @extschema@.deduction_flow (
	id				bigserial PRIMARY KEY,
	event_id		text NOT NULL,
	event_type		text NOT NULL,
	recurring_payment_id bigint NOT NULL,
	subscription_order_id bigint NOT NULL,
	payment_id		bigint NOT NULL,
	order_id		bigint NOT NULL,
	invoice_id		text NOT NULL,
	currency		text NOT NULL,
	amount			bigint NOT NULL,
	already_processed boolean NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);

SELECT pg_catalog.pg_extension_config_dump('@extschema@.payment_flow', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.payment_flow_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refund_flow', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refund_flow_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.subscription_flow', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.subscription_flow_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.deduction_flow', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.deduction_flow_id_seq', '');

/*
 * Never regress.  Events arrive in any order and `created` has one-second
 * resolution, so a state moves only forward in its lifecycle: a terminal
 * state is never left (except for a better terminal one: money that moved
 * beats an expiry), a terminal state beats any other whatever its time,
 * and between the others the newer event wins, a tie going to the state
 * further along.  One implementation in C (sp_rules.c), shared with the
 * ingest's own path for payments.
 */
CREATE FUNCTION @extschema@._advances(kind text, cur_status text, cur_at timestamptz,
									  new_status text, new_at timestamptz)
RETURNS boolean
AS 'MODULE_PATHNAME', 'stripepay_advances'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

/*
 * Notifications go out on commit only, from the notifier worker that drains
 * this outbox (sp_notify.c); stripepay.notify = off skips them.  Unlogged:
 * like NOTIFY itself, nothing here outlives a crash.
 */
CREATE UNLOGGED TABLE @extschema@.notify_outbox (
	id				bigserial PRIMARY KEY,	/* the order they are sent in */
	channel			text NOT NULL,
	payload			text NOT NULL
);

CREATE FUNCTION @extschema@._notify(channel text, payload jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'stripepay_notify'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;

/* A metadata value as a row id, or NULL: metadata is free text. */
CREATE FUNCTION @extschema@._id(value text)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN value ~ '^[0-9]{1,18}$' THEN value::bigint END;

CREATE TYPE @extschema@._links AS (
	order_id bigint, payment_id bigint, refund_id bigint, recurring_payment_id bigint);

/*
 * One-time payments: Checkout Sessions and PaymentIntents.  The row is
 * found by Stripe's ids first, then by the id in the metadata (a row whose
 * Stripe ids are not yet known), and otherwise adopted from the event when
 * it names an order: a payment whose creating transaction rolled back, or
 * that was made in the dashboard, is still recorded.
 */
CREATE FUNCTION @extschema@._apply_payment(f jsonb, at timestamptz)
RETURNS @extschema@._links
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t text := f->>'type';
	is_session boolean := f->>'object_type' = 'checkout.session';
	sess text := CASE WHEN is_session THEN f->>'object_id' END;
	pi text := CASE WHEN is_session THEN f->>'payment_intent' ELSE f->>'object_id' END;
	target text;
	r stripepay.payment_record;
	moved boolean;
	links stripepay._links;
BEGIN
	target := CASE t
		WHEN 'checkout.session.completed' THEN
			CASE WHEN f->>'payment_status' IN ('paid', 'no_payment_required') THEN 'SUCCESSFUL' ELSE 'PENDING' END
		WHEN 'checkout.session.async_payment_succeeded' THEN 'SUCCESSFUL'
		WHEN 'checkout.session.async_payment_failed' THEN 'FAILED'
		WHEN 'checkout.session.expired' THEN 'CANCELED'
		WHEN 'payment_intent.succeeded' THEN 'SUCCESSFUL'
		WHEN 'payment_intent.payment_failed' THEN 'FAILED'
		WHEN 'payment_intent.canceled' THEN 'CANCELED'
		WHEN 'payment_intent.processing' THEN 'PENDING'
	END;

	IF sess IS NOT NULL THEN
		SELECT * INTO r FROM stripepay.payment_record WHERE checkout_session_id = sess FOR UPDATE;
	END IF;
	IF r.id IS NULL AND pi IS NOT NULL THEN
		SELECT * INTO r FROM stripepay.payment_record WHERE payment_intent_id = pi FOR UPDATE;
	END IF;
	IF r.id IS NULL AND stripepay._id(f->>'payment_id') IS NOT NULL THEN
		SELECT * INTO r FROM stripepay.payment_record
		 WHERE id = stripepay._id(f->>'payment_id')
		   AND order_id IS NOT DISTINCT FROM coalesce(stripepay._id(f->>'order_id'), order_id)
		   AND (sess IS NULL OR checkout_session_id IS NULL OR checkout_session_id = sess)
		   AND (pi IS NULL OR payment_intent_id IS NULL OR payment_intent_id = pi)
		FOR UPDATE;
	END IF;
	IF r.id IS NULL THEN
		IF stripepay._id(f->>'order_id') IS NULL OR coalesce(f->>'amount_total', f->>'amount') IS NULL
		   OR coalesce((f->>'amount_total')::bigint, (f->>'amount')::bigint) <= 0
		   OR coalesce(f->>'currency', '') !~ '^[a-z]{3}$' THEN
			links.order_id := stripepay._id(f->>'order_id');
			RETURN links;		/* recorded, linked by its order if any */
		END IF;
		INSERT INTO stripepay.payment_record
			(order_id, currency, amount, flow, checkout_session_id, payment_intent_id,
			 livemode, created_by)
		VALUES (stripepay._id(f->>'order_id'), f->>'currency',
				coalesce((f->>'amount_total')::bigint, (f->>'amount')::bigint),
				CASE WHEN is_session THEN 'checkout' ELSE 'payment_intent' END,
				sess, pi, (f->>'livemode')::boolean, 'stripe')
		ON CONFLICT DO NOTHING
		RETURNING * INTO r;
		IF r.id IS NULL THEN
			/*
			 * Another event of this payment adopted it first (there was no
			 * row to lock, so nothing kept us apart): apply to its row.
			 */
			SELECT * INTO r FROM stripepay.payment_record
			 WHERE checkout_session_id = sess OR payment_intent_id = pi
			 LIMIT 1 FOR UPDATE;
			IF r.id IS NULL THEN
				RAISE EXCEPTION 'stripepay: payment of event % vanished', f->>'id';
			END IF;
		END IF;
	END IF;

	moved := stripepay._advances('payment', r.status, r.event_created, target, at);
	UPDATE stripepay.payment_record SET
		status = CASE WHEN moved THEN target ELSE status END,
		event_created = CASE WHEN moved THEN at ELSE event_created END,
		checkout_session_id = coalesce(checkout_session_id, sess),
		payment_intent_id = coalesce(payment_intent_id, pi),
		charge_id = coalesce(f->>'charge', charge_id),
		livemode = coalesce(livemode, (f->>'livemode')::boolean),
		failure_code = CASE WHEN moved AND target = 'FAILED'
			THEN coalesce(f->>'decline_code', f->>'failure_code', 'payment_failed')
			WHEN moved THEN NULL ELSE failure_code END,
		failure_message = CASE WHEN moved AND target = 'FAILED' THEN f->>'failure_message'
			WHEN moved THEN NULL ELSE failure_message END,
		updated_at = now()
	 WHERE id = r.id
	RETURNING * INTO r;

	IF target IN ('SUCCESSFUL', 'FAILED', 'CANCELED') THEN
		INSERT INTO stripepay.payment_flow
			(event_id, event_type, order_id, payment_id, payment_status, already_processed)
		VALUES (f->>'id', t, r.order_id, r.id, r.status, NOT (moved AND r.status = target));
	END IF;
	IF moved THEN
		PERFORM stripepay._notify('stripepay_payment', jsonb_build_object(
			'event_id', f->>'id', 'payment_id', r.id, 'order_id', r.order_id,
			'status', r.status, 'amount', r.amount, 'currency', r.currency));
	END IF;
	/*
	 * Refunds that came first are applied once the payment has succeeded,
	 * after its own flow: a trigger sees the order paid, then refunded.
	 */
	IF r.status = 'SUCCESSFUL' THEN
		PERFORM stripepay._apply_waiting(r.payment_intent_id, r.charge_id);
	END IF;

	links.order_id := r.order_id;
	links.payment_id := r.id;
	RETURN links;
END
$$;

/* Keeps payment_record.amount_refunded equal to the refunds that count. */
CREATE FUNCTION @extschema@._sum_refunds(pid bigint)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	UPDATE stripepay.payment_record p SET
		amount_refunded = least(p.amount, (SELECT coalesce(sum(r.amount), 0) FROM stripepay.refund r
			WHERE r.payment_id = p.id AND r.status IN ('PENDING', 'SUCCEEDED'))),
		updated_at = now()
	 WHERE p.id = pid;
END;

/* One refund, from refund.* events or from a charge's embedded list. */
CREATE FUNCTION @extschema@._apply_one_refund(f jsonb, at timestamptz, rid text,
											  stripe_status text, ramount bigint)
RETURNS @extschema@._links
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target text := CASE stripe_status
		WHEN 'pending' THEN 'PENDING' WHEN 'requires_action' THEN 'PENDING'
		WHEN 'succeeded' THEN 'SUCCEEDED' WHEN 'failed' THEN 'FAILED'
		WHEN 'canceled' THEN 'CANCELED' END;
	r stripepay.refund;
	p stripepay.payment_record;
	moved boolean;
	prev text;
	links stripepay._links;
	/* a charge's embedded refunds name it as the event's object */
	ch text := coalesce(nullif(f->>'charge', ''),
						CASE WHEN f->>'object_type' = 'charge' THEN nullif(f->>'object_id', '') END);
BEGIN
	SELECT * INTO r FROM stripepay.refund WHERE stripe_refund_id = rid FOR UPDATE;
	IF r.id IS NULL AND stripepay._id(f->>'refund_id') IS NOT NULL THEN
		SELECT * INTO r FROM stripepay.refund
		 WHERE id = stripepay._id(f->>'refund_id') AND stripe_refund_id IS NULL FOR UPDATE;
	END IF;
	IF r.id IS NULL THEN
		/* a refund made elsewhere (the dashboard): find its payment */
		SELECT * INTO p FROM stripepay.payment_record
		 WHERE (nullif(f->>'payment_intent', '') IS NOT NULL AND payment_intent_id = f->>'payment_intent')
			OR (ch IS NOT NULL AND charge_id = ch)
		 LIMIT 1 FOR UPDATE;
		IF p.status IS DISTINCT FROM 'SUCCESSFUL' AND ramount > 0 THEN
			/*
			 * Its payment is unknown, or has not succeeded here yet.  A
			 * payment that succeeds takes these ids' locks before it looks
			 * for waiting refunds (after its row lock, as here): look again
			 * under them, and wait only if it has still not succeeded.
			 */
			PERFORM stripepay._lock_ids(f->>'payment_intent', ch);
			SELECT * INTO p FROM stripepay.payment_record
			 WHERE (nullif(f->>'payment_intent', '') IS NOT NULL AND payment_intent_id = f->>'payment_intent')
				OR (ch IS NOT NULL AND charge_id = ch)
			 LIMIT 1 FOR UPDATE;
			IF p.status IS DISTINCT FROM 'SUCCESSFUL' THEN
				PERFORM stripepay._wait(f, f->>'payment_intent', ch);
				links.order_id := coalesce(p.order_id, stripepay._id(f->>'order_id'));
				links.payment_id := p.id;
				RETURN links;
			END IF;
		END IF;
		IF p.id IS NULL OR ramount IS NULL OR ramount <= 0 THEN
			links.order_id := stripepay._id(f->>'order_id');
			RETURN links;
		END IF;
		/* stripe_refund() may have made it while we waited for the lock */
		SELECT * INTO r FROM stripepay.refund WHERE stripe_refund_id = rid FOR UPDATE;
	END IF;
	IF r.id IS NULL THEN
		/*
		 * Made by stripe_refund() (its metadata says so) in a transaction
		 * that rolled back: a retry of that call claims this refund by its
		 * key instead of making another.
		 */
		INSERT INTO stripepay.refund (payment_id, order_id, currency, amount, stripe_refund_id,
									  reason, unclaimed_key, created_by)
		VALUES (p.id, p.order_id, p.currency, ramount, rid, f->>'reason',
				CASE WHEN stripepay._id(f->>'refund_id') IS NOT NULL THEN nullif(f->>'refund_key', '') END,
				'stripe')
		RETURNING * INTO r;
	END IF;

	/* the payment first, then the refund: the order stripe_refund() locks in */
	SELECT * INTO p FROM stripepay.payment_record WHERE id = r.payment_id FOR UPDATE;
	SELECT * INTO r FROM stripepay.refund WHERE id = r.id FOR UPDATE;
	prev := r.status;
	moved := stripepay._advances('refund', r.status, r.event_created, target, at);
	UPDATE stripepay.refund SET
		status = CASE WHEN moved THEN target ELSE status END,
		event_created = CASE WHEN moved THEN at ELSE event_created END,
		stripe_refund_id = coalesce(stripe_refund_id, rid),
		failure_reason = CASE WHEN moved AND target = 'FAILED' THEN f->>'failure_reason' ELSE failure_reason END,
		updated_at = now()
	 WHERE id = r.id
	RETURNING * INTO r;
	PERFORM stripepay._sum_refunds(r.payment_id);

	IF target IN ('SUCCEEDED', 'FAILED', 'CANCELED') THEN
		INSERT INTO stripepay.refund_flow
			(event_id, event_type, order_id, payment_id, refund_id, refund_status, amount, already_processed)
		VALUES (f->>'id', f->>'type', r.order_id, r.payment_id, r.id, r.status, r.amount,
				NOT (moved AND r.status = target AND prev IS DISTINCT FROM target));
	END IF;
	IF moved AND r.status IS DISTINCT FROM prev THEN
		PERFORM stripepay._notify('stripepay_refund', jsonb_build_object(
			'event_id', f->>'id', 'refund_id', r.id, 'payment_id', r.payment_id,
			'order_id', r.order_id, 'status', r.status, 'amount', r.amount));
	END IF;

	links.order_id := r.order_id;
	links.payment_id := r.payment_id;
	links.refund_id := r.id;
	RETURN links;
END
$$;

CREATE FUNCTION @extschema@._apply_refunds(f jsonb, at timestamptz)
RETURNS @extschema@._links
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	links stripepay._links;
	one stripepay._links;
	x jsonb;
BEGIN
	IF f->>'object_type' = 'refund' THEN
		RETURN stripepay._apply_one_refund(f, at, f->>'object_id', f->>'status', (f->>'amount')::bigint);
	END IF;
	/* charge.refunded: API versions before 2022-11-15 embed the refunds */
	FOR x IN SELECT value FROM jsonb_array_elements(coalesce(f->'refunds', '[]')) LOOP
		one := stripepay._apply_one_refund(f, at, x->>'id', x->>'status', (x->>'amount')::bigint);
		links := (coalesce(links.order_id, one.order_id), coalesce(links.payment_id, one.payment_id),
				  coalesce(links.refund_id, one.refund_id), NULL);
	END LOOP;
	IF links.payment_id IS NULL THEN
		SELECT order_id, id INTO links.order_id, links.payment_id FROM stripepay.payment_record
		 WHERE payment_intent_id = f->>'payment_intent' OR charge_id = f->>'object_id' LIMIT 1;
	END IF;
	IF links.payment_id IS NULL THEN
		/* to be linked to its payment once that is known (see _apply_one_refund) */
		PERFORM stripepay._lock_ids(f->>'payment_intent', f->>'object_id');
		SELECT order_id, id INTO links.order_id, links.payment_id FROM stripepay.payment_record
		 WHERE payment_intent_id = f->>'payment_intent' OR charge_id = f->>'object_id' LIMIT 1;
		IF links.payment_id IS NULL THEN
			PERFORM stripepay._wait(f, f->>'payment_intent', f->>'object_id');
		END IF;
	END IF;
	RETURN links;
END
$$;

/* Subscriptions, and the Checkout Sessions that start them. */
CREATE FUNCTION @extschema@._apply_subscription(f jsonb, at timestamptz)
RETURNS @extschema@._links
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t text := f->>'type';
	is_session boolean := f->>'object_type' = 'checkout.session';
	sub text := CASE WHEN is_session THEN f->>'subscription' ELSE f->>'object_id' END;
	target text;
	r stripepay.recurring_payment;
	moved boolean;
	prev text;
	prev_cape boolean;
	links stripepay._links;
BEGIN
	target := CASE
		WHEN is_session AND t = 'checkout.session.expired' THEN 'INCOMPLETE_EXPIRED'
		WHEN is_session THEN NULL
		ELSE upper(f->>'status') END;
	IF target IS NOT NULL AND target NOT IN ('INCOMPLETE', 'INCOMPLETE_EXPIRED', 'TRIALING', 'ACTIVE',
											 'PAST_DUE', 'CANCELED', 'UNPAID', 'PAUSED') THEN
		target := NULL;			/* a status newer than this version knows */
	END IF;

	IF sub IS NOT NULL THEN
		SELECT * INTO r FROM stripepay.recurring_payment WHERE subscription_id = sub FOR UPDATE;
	END IF;
	IF r.id IS NULL AND is_session THEN
		SELECT * INTO r FROM stripepay.recurring_payment WHERE checkout_session_id = f->>'object_id' FOR UPDATE;
	END IF;
	IF r.id IS NULL AND stripepay._id(f->>'recurring_payment_id') IS NOT NULL THEN
		SELECT * INTO r FROM stripepay.recurring_payment
		 WHERE id = stripepay._id(f->>'recurring_payment_id')
		   AND (subscription_id IS NULL OR subscription_id = sub) FOR UPDATE;
	END IF;
	IF r.id IS NULL THEN
		IF stripepay._id(f->>'order_id') IS NULL OR f->>'price_id' IS NULL OR is_session THEN
			links.order_id := stripepay._id(f->>'order_id');
			RETURN links;
		END IF;
		INSERT INTO stripepay.recurring_payment (order_id, price_id, subscription_id, livemode, created_by)
		VALUES (stripepay._id(f->>'order_id'), f->>'price_id', sub, (f->>'livemode')::boolean, 'stripe')
		ON CONFLICT (subscription_id) DO NOTHING;
		SELECT * INTO r FROM stripepay.recurring_payment WHERE subscription_id = sub FOR UPDATE;
	END IF;

	prev := r.status;
	prev_cape := r.cancel_at_period_end;
	moved := stripepay._advances('subscription', r.status, r.event_created, target, at);
	/*
	 * Stripe's "created" counts seconds, and a subscription can change twice
	 * in one (a renewal's period, then its declined payment).  Of two such
	 * changes, the one in the state the applied event changed from is older,
	 * unless it changed from the applied one's state in turn: a change and
	 * its undoing (cancel, then resume) say nothing of their order, and the
	 * later arrival wins, as before.
	 */
	IF moved AND at = r.event_created AND r.event_changed_from IS NOT NULL
	   AND target = coalesce(r.event_changed_from->>'status', r.status)
	   AND coalesce((f->>'cancel_at_period_end')::boolean, r.cancel_at_period_end)
		   = coalesce((r.event_changed_from->>'cancel_at_period_end')::boolean, r.cancel_at_period_end)
	   AND (target IS DISTINCT FROM r.status
			OR (f->>'cancel_at_period_end')::boolean IS DISTINCT FROM r.cancel_at_period_end)
	   AND NOT (upper(nullif(f->>'previous_status', '')) IS NOT DISTINCT FROM r.status
				OR (f->>'previous_cancel_at_period_end')::boolean IS NOT DISTINCT FROM r.cancel_at_period_end) THEN
		moved := false;
	END IF;
	UPDATE stripepay.recurring_payment SET
		status = CASE WHEN moved THEN target ELSE status END,
		event_created = CASE WHEN moved THEN at ELSE event_created END,
		event_changed_from = CASE WHEN moved THEN nullif(jsonb_strip_nulls(jsonb_build_object(
			'status', upper(nullif(f->>'previous_status', '')),
			'cancel_at_period_end', (f->>'previous_cancel_at_period_end')::boolean)), '{}')
			ELSE event_changed_from END,
		subscription_id = coalesce(subscription_id, sub),
		customer_id = coalesce(f->>'customer', customer_id),
		price_id = CASE WHEN moved THEN coalesce(f->>'price_id', price_id) ELSE price_id END,
		current_period_start = CASE WHEN moved AND f ? 'period_start'
			THEN to_timestamp((f->>'period_start')::bigint) ELSE current_period_start END,
		current_period_end = CASE WHEN moved AND f ? 'period_end'
			THEN to_timestamp((f->>'period_end')::bigint) ELSE current_period_end END,
		cancel_at_period_end = CASE WHEN moved AND f ? 'cancel_at_period_end'
			THEN (f->>'cancel_at_period_end')::boolean ELSE cancel_at_period_end END,
		canceled_at = CASE WHEN moved AND f ? 'canceled_at'
			THEN to_timestamp((f->>'canceled_at')::bigint) ELSE canceled_at END,
		livemode = coalesce(livemode, (f->>'livemode')::boolean),
		updated_at = now()
	 WHERE id = r.id
	RETURNING * INTO r;

	IF target IS NOT NULL THEN
		INSERT INTO stripepay.subscription_flow
			(event_id, event_type, order_id, recurring_payment_id, status, previous_status,
			 cancel_at_period_end, already_processed)
		VALUES (f->>'id', t, r.order_id, r.id, r.status, prev, r.cancel_at_period_end,
				NOT (moved AND (r.status IS DISTINCT FROM prev OR r.cancel_at_period_end <> prev_cape)));
	END IF;
	IF moved AND (r.status IS DISTINCT FROM prev OR r.cancel_at_period_end <> prev_cape) THEN
		PERFORM stripepay._notify('stripepay_recurring_payment', jsonb_build_object(
			'event_id', f->>'id', 'recurring_payment_id', r.id, 'order_id', r.order_id,
			'status', r.status, 'cancel_at_period_end', r.cancel_at_period_end));
	END IF;

	links.order_id := r.order_id;
	links.recurring_payment_id := r.id;
	RETURN links;
END
$$;

/*
 * Invoices.  A paid renewal (billing_reason subscription_cycle) becomes a
 * new SUCCESSFUL payment record, once per invoice however often Stripe
 * delivers it, and fires the deduction flow.  The first invoice of a
 * subscription is not a renewal.
 */
CREATE FUNCTION @extschema@._apply_invoice(f jsonb, at timestamptz)
RETURNS @extschema@._links
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s stripepay.recurring_payment;
	p stripepay.payment_record;
	d stripepay.deduction_flow;
	links stripepay._links;
BEGIN
	SELECT * INTO s FROM stripepay.recurring_payment
	 WHERE subscription_id = f->>'subscription'
		OR (subscription_id IS NULL AND id = stripepay._id(f->>'sub_recurring_payment_id'))
	 LIMIT 1 FOR UPDATE;
	IF s.id IS NULL THEN
		links.order_id := stripepay._id(coalesce(f->>'sub_order_id', f->>'order_id'));
		RETURN links;
	END IF;
	links.order_id := s.order_id;
	links.recurring_payment_id := s.id;

	IF f->>'type' <> 'invoice.paid' OR f->>'billing_reason' IS DISTINCT FROM 'subscription_cycle'
	   OR coalesce((f->>'amount_paid')::bigint, 0) <= 0 THEN
		IF f->>'type' = 'invoice.paid' THEN
			/* no payment will learn this invoice: nothing is to wait for it */
			DELETE FROM stripepay.waiting_event WHERE stripe_id = f->>'object_id';
		END IF;
		RETURN links;
	END IF;

	INSERT INTO stripepay.payment_record
		(order_id, kind, recurring_payment_id, status, currency, amount, flow, invoice_id,
		 payment_intent_id, charge_id, livemode, event_created, created_by)
	VALUES (s.order_id, 'RENEWAL', s.id, 'SUCCESSFUL', f->>'currency', (f->>'amount_paid')::bigint,
			'invoice', f->>'object_id', f->>'payment_intent', f->>'charge',
			(f->>'livemode')::boolean, at, 'stripe')
	ON CONFLICT (invoice_id) DO NOTHING
	RETURNING * INTO p;
	IF p.id IS NULL THEN
		/* an invoice already turned into a payment: nothing moves twice */
		SELECT id INTO links.payment_id FROM stripepay.payment_record WHERE invoice_id = f->>'object_id';
		RETURN links;
	END IF;

	INSERT INTO stripepay.deduction_flow
		(event_id, event_type, recurring_payment_id, subscription_order_id, payment_id, order_id,
		 invoice_id, currency, amount, already_processed)
	VALUES (f->>'id', f->>'type', s.id, s.order_id, p.id, s.order_id, p.invoice_id, p.currency,
			p.amount, false)
	RETURNING * INTO d;
	IF d.order_id <> p.order_id THEN
		UPDATE stripepay.payment_record SET order_id = d.order_id WHERE id = p.id;
	END IF;
	PERFORM stripepay._notify('stripepay_payment', jsonb_build_object(
		'event_id', f->>'id', 'payment_id', p.id, 'order_id', d.order_id, 'status', p.status,
		'amount', p.amount, 'currency', p.currency, 'recurring_payment_id', s.id));
	PERFORM stripepay._apply_waiting(p.invoice_id, p.payment_intent_id, p.charge_id);

	links.order_id := d.order_id;
	links.payment_id := p.id;
	RETURN links;
END
$$;

/*
 * An InvoicePayment (invoice_payment.paid, API 2025-03-31 and later): the
 * only place those versions name the PaymentIntent and charge that paid an
 * invoice in a webhook, so the renewal payment learns them here, and can
 * then be refunded.  Before its invoice.paid has come, it waits.
 */
CREATE FUNCTION @extschema@._apply_invoice_payment(f jsonb, at timestamptz)
RETURNS @extschema@._links
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p stripepay.payment_record;
	links stripepay._links;
BEGIN
	IF f->>'type' <> 'invoice_payment.paid' OR coalesce(f->>'invoice', '') = '' THEN
		RETURN NULL;
	END IF;
	SELECT * INTO p FROM stripepay.payment_record WHERE invoice_id = f->>'invoice' FOR UPDATE;
	IF p.id IS NULL THEN
		/* _apply_invoice takes the invoice's lock before it looks for us */
		PERFORM stripepay._lock_ids(f->>'invoice');
		SELECT * INTO p FROM stripepay.payment_record WHERE invoice_id = f->>'invoice' FOR UPDATE;
		IF p.id IS NULL THEN
			PERFORM stripepay._wait(f, f->>'invoice');
			RETURN NULL;
		END IF;
	END IF;
	/* a PaymentIntent or charge another row holds stays with it */
	UPDATE stripepay.payment_record SET
		payment_intent_id = coalesce(payment_intent_id,
			(SELECT f->>'payment_intent' WHERE NOT EXISTS
				(SELECT FROM stripepay.payment_record WHERE payment_intent_id = f->>'payment_intent'))),
		charge_id = coalesce(charge_id, f->>'charge'),
		updated_at = now()
	 WHERE id = p.id
	RETURNING * INTO p;
	PERFORM stripepay._apply_waiting(p.payment_intent_id, p.charge_id);
	links.order_id := p.order_id;
	links.payment_id := p.id;
	links.recurring_payment_id := p.recurring_payment_id;
	RETURN links;
END
$$;

/* What one event does to the tables, by its object; NULL for the others. */
CREATE FUNCTION @extschema@._dispatch(f jsonb, at timestamptz)
RETURNS @extschema@._links
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
RETURN CASE
	WHEN f->>'object_type' = 'checkout.session' AND f->>'mode' = 'subscription' THEN stripepay._apply_subscription(f, at)
	WHEN f->>'object_type' = 'checkout.session' AND f->>'mode' = 'setup' THEN NULL
	WHEN f->>'object_type' IN ('checkout.session', 'payment_intent') THEN stripepay._apply_payment(f, at)
	WHEN f->>'object_type' = 'refund' OR f->>'type' = 'charge.refunded' THEN stripepay._apply_refunds(f, at)
	WHEN f->>'object_type' = 'subscription' THEN stripepay._apply_subscription(f, at)
	WHEN f->>'object_type' = 'invoice' THEN stripepay._apply_invoice(f, at)
	WHEN f->>'object_type' = 'invoice_payment' THEN stripepay._apply_invoice_payment(f, at)
END;

/*
 * The locks that keep an event from waiting while a payment learns one of
 * its ids: taken, in one order, by both sides (see _apply_one_refund).
 * The C path (sp_apply.c) takes the same ones.
 */
CREATE FUNCTION @extschema@._lock_ids(VARIADIC ids text[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT pg_advisory_xact_lock(hashtextextended('stripepay.wait:' || i, 0))
	  FROM (SELECT DISTINCT i COLLATE "C" AS i FROM unnest(ids) i WHERE i <> '') d
	 ORDER BY i;
END;

/*
 * Keeps an event until a payment knows one of ids, for at most 30 days:
 * Stripe keeps events no longer, and an id no payment learns by then
 * belongs to a payment stripepay does not keep (a subscription's first
 * invoice, a charge made elsewhere).
 */
CREATE FUNCTION @extschema@._wait(f jsonb, VARIADIC ids text[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	DELETE FROM stripepay.waiting_event WHERE waiting_since < now() - interval '30 days';
	INSERT INTO stripepay.waiting_event (stripe_id, event_id, facts)
	SELECT DISTINCT i, f->>'id', f FROM unnest(ids) i WHERE i <> ''
	ON CONFLICT DO NOTHING;
END;

/*
 * Applies, once each, the events that waited for one of ids, which a
 * payment (locked by the caller) has just learned, and links them.
 */
CREATE FUNCTION @extschema@._apply_waiting(VARIADIC ids text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	w record;
	n bigint;
	links stripepay._links;
BEGIN
	PERFORM stripepay._lock_ids(VARIADIC ids);
	/* in the order Stripe made them, so that the flows fire in that order */
	FOR w IN SELECT * FROM (SELECT DISTINCT ON (event_id) event_id, facts FROM stripepay.waiting_event
							 WHERE stripe_id = ANY (ids)) d
			  ORDER BY (facts->>'created')::bigint, event_id LOOP
		DELETE FROM stripepay.waiting_event WHERE event_id = w.event_id;
		GET DIAGNOSTICS n = ROW_COUNT;
		CONTINUE WHEN n = 0;	/* applied by a transaction we waited for */
		links := stripepay._dispatch(w.facts, to_timestamp((w.facts->>'created')::bigint));
		UPDATE stripepay.webhook_event SET
			order_id = coalesce(links.order_id, order_id),
			payment_id = coalesce(links.payment_id, payment_id),
			refund_id = coalesce(links.refund_id, refund_id),
			recurring_payment_id = coalesce(links.recurring_payment_id, recurring_payment_id)
		 WHERE id = w.facts->>'id';
	END LOOP;
END
$$;

/*
 * Records one verified, decoded event and applies it, once: the event id's
 * primary key makes a second (or concurrent) delivery wait for the first and
 * then find it there.  Returns true when the event was already processed.
 */
CREATE FUNCTION @extschema@._ingest(f jsonb, payload text, endpoint text, source text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	at timestamptz := to_timestamp((f->>'created')::bigint);
	t text := f->>'type';
	obj text := f->>'object_type';
	links stripepay._links;
BEGIN
	/*
	 * A payment's row before the event's, as the C path (sp_apply.c) locks
	 * them: it comes here when it found no payment, and one may have been
	 * committed since.
	 */
	IF obj = 'payment_intent' OR (obj = 'checkout.session' AND coalesce(f->>'mode', '') NOT IN ('subscription', 'setup')) THEN
		PERFORM FROM stripepay.payment_record
		 WHERE checkout_session_id = CASE WHEN obj = 'checkout.session' THEN f->>'object_id' END
			OR payment_intent_id = CASE WHEN obj = 'checkout.session' THEN f->>'payment_intent' ELSE f->>'object_id' END
			OR id = stripepay._id(f->>'payment_id')
		   FOR UPDATE;
	END IF;

	INSERT INTO stripepay.webhook_event (id, type, api_version, livemode, created, object_id,
										 endpoint, source, payload)
	VALUES (f->>'id', t, f->>'api_version', (f->>'livemode')::boolean, at, f->>'object_id',
			endpoint, source, payload::jsonb)
	ON CONFLICT (id) DO NOTHING;
	IF NOT FOUND THEN
		RETURN true;
	END IF;

	links := stripepay._dispatch(f, at);
	IF links IS NULL THEN
		/* an event we do not act on (charge.failed, ...): link what it names */
		SELECT order_id, id INTO links.order_id, links.payment_id FROM stripepay.payment_record
		 WHERE payment_intent_id = f->>'payment_intent' OR charge_id = f->>'charge'
			OR payment_intent_id = f->>'object_id' OR charge_id = f->>'object_id'
		 LIMIT 1;
		links.order_id := coalesce(links.order_id, stripepay._id(coalesce(f->>'order_id', f->>'sub_order_id')));
	END IF;

	IF links.order_id IS NOT NULL OR links.payment_id IS NOT NULL
	   OR links.refund_id IS NOT NULL OR links.recurring_payment_id IS NOT NULL THEN
		UPDATE stripepay.webhook_event SET
			order_id = links.order_id, payment_id = links.payment_id,
			refund_id = links.refund_id, recurring_payment_id = links.recurring_payment_id
		 WHERE id = f->>'id';
	END IF;
	RETURN false;
END
$$;

CREATE FUNCTION @extschema@.stripe_ingest_webhook(payload text, signature text, endpoint text DEFAULT NULL,
	OUT event_id text, OUT event_type text, OUT already_processed boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'stripepay_ingest_webhook_text'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.stripe_ingest_webhook(payload bytea, signature text, endpoint text DEFAULT NULL,
	OUT event_id text, OUT event_type text, OUT already_processed boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'stripepay_ingest_webhook_bytea'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.stripe_refund(payment_id bigint, refund_amount numeric)
RETURNS @extschema@.refund
AS 'MODULE_PATHNAME', 'stripepay_stripe_refund'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.stripe_subscribe(order_id bigint, price_id text)
RETURNS @extschema@.recurring_payment
AS 'MODULE_PATHNAME', 'stripepay_stripe_subscribe'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.stripe_cancel_subscription(recurring_payment_id bigint,
													   at_period_end boolean DEFAULT false)
RETURNS @extschema@.recurring_payment
AS 'MODULE_PATHNAME', 'stripepay_stripe_cancel_subscription'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.stripe_resume_subscription(recurring_payment_id bigint)
RETURNS @extschema@.recurring_payment
AS 'MODULE_PATHNAME', 'stripepay_stripe_resume_subscription'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

/*
 * A change made through the API (cancel, resume): the same state rules and
 * the same subscription flow as a webhook's, so the flow sees it once, first
 * from here, then with already_processed from Stripe's event.
 */
CREATE FUNCTION @extschema@._subscription_changed(rp_id bigint, new_status text,
	new_cancel_at_period_end boolean, new_canceled_at timestamptz, at timestamptz, cause text)
RETURNS @extschema@.recurring_payment
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r stripepay.recurring_payment;
	prev text;
	prev_cape boolean;
	moved boolean;
BEGIN
	SELECT * INTO r FROM stripepay.recurring_payment WHERE id = rp_id FOR UPDATE;
	prev := r.status;
	prev_cape := r.cancel_at_period_end;
	moved := stripepay._advances('subscription', r.status, r.event_created, new_status, at);
	IF NOT moved THEN
		RETURN r;
	END IF;
	UPDATE stripepay.recurring_payment SET
		status = new_status, event_created = at,
		cancel_at_period_end = coalesce(new_cancel_at_period_end, cancel_at_period_end),
		canceled_at = coalesce(new_canceled_at, canceled_at), updated_at = now(),
		/* what this change changed from, as its webhook will say */
		event_changed_from = nullif(jsonb_strip_nulls(jsonb_build_object(
			'status', CASE WHEN new_status IS DISTINCT FROM status THEN status END,
			'cancel_at_period_end', CASE WHEN coalesce(new_cancel_at_period_end, cancel_at_period_end)
											  <> cancel_at_period_end THEN cancel_at_period_end END)), '{}')
	 WHERE id = rp_id
	RETURNING * INTO r;
	IF r.status IS NOT DISTINCT FROM prev AND r.cancel_at_period_end = prev_cape THEN
		RETURN r;
	END IF;
	INSERT INTO stripepay.subscription_flow
		(event_id, event_type, order_id, recurring_payment_id, status, previous_status,
		 cancel_at_period_end, already_processed)
	VALUES (cause, cause, r.order_id, r.id, r.status, prev, r.cancel_at_period_end, false);
	PERFORM stripepay._notify('stripepay_recurring_payment', jsonb_build_object(
		'recurring_payment_id', r.id, 'order_id', r.order_id, 'status', r.status,
		'cancel_at_period_end', r.cancel_at_period_end));
	RETURN r;
END
$$;

/* The webhook endpoints setup_webhooks() made in the Stripe account. */
CREATE TABLE @extschema@.webhook_endpoint (
	name			text PRIMARY KEY,
	stripe_id		text NOT NULL UNIQUE,
	url				text NOT NULL,
	enabled_events	text[] NOT NULL,
	api_version		text NOT NULL,
	livemode		boolean,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.webhook_endpoint', '');

CREATE FUNCTION @extschema@.setup_webhooks(base_url text,
	OUT endpoint text, OUT stripe_id text, OUT url text, OUT created boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stripepay_setup_webhooks'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.remove_webhooks()
RETURNS integer
AS 'MODULE_PATHNAME', 'stripepay_remove_webhooks'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

/*
 * Recovery: what webhooks did not bring, asked of Stripe.  sync_events feeds
 * the events we lack through the webhook path (source 'sync');
 * refresh_payment applies one payment's state as Stripe shows it.
 */
CREATE FUNCTION @extschema@.sync_events(since timestamptz DEFAULT NULL,
	OUT synced_from timestamptz, OUT fetched integer, OUT applied integer, OUT already_had integer)
RETURNS record
AS 'MODULE_PATHNAME', 'stripepay_sync_events'
LANGUAGE C VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION @extschema@.refresh_payment(payment_id bigint)
RETURNS @extschema@.payment_record
AS 'MODULE_PATHNAME', 'stripepay_refresh_payment'
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
GRANT EXECUTE ON FUNCTION @extschema@.stripe_subscribe(bigint, text),
	@extschema@.stripe_cancel_subscription(bigint, boolean),
	@extschema@.stripe_resume_subscription(bigint)
	TO stripepay_user, stripepay_admin;
/* refunds are closed by default: admins only */
GRANT EXECUTE ON FUNCTION @extschema@.stripe_refund(bigint, numeric) TO stripepay_admin;
GRANT SELECT ON @extschema@.payment_record, @extschema@.refund,
	@extschema@.recurring_payment
	TO stripepay_user, stripepay_admin;
GRANT SELECT ON @extschema@.webhook_event, @extschema@.waiting_event TO stripepay_admin;

GRANT SELECT ON @extschema@.webhook_secrets, @extschema@.webhook_endpoint TO stripepay_admin;
GRANT EXECUTE ON FUNCTION @extschema@.setup_webhooks(text), @extschema@.remove_webhooks()
	TO stripepay_admin;
GRANT EXECUTE ON FUNCTION @extschema@.add_webhook_secret(text, text, timestamptz) TO stripepay_admin;
GRANT EXECUTE ON FUNCTION @extschema@.sync_events(timestamptz) TO stripepay_admin;
/* the role that paid may ask about its own payments; admins about any */
GRANT EXECUTE ON FUNCTION @extschema@.refresh_payment(bigint) TO stripepay_user, stripepay_admin;
GRANT EXECUTE ON FUNCTION @extschema@.stripe_ingest_webhook(text, text, text),
	@extschema@.stripe_ingest_webhook(bytea, text, text)
	TO stripepay_webhook, stripepay_admin;
/*
 * The actionflows: anyone may read them.  Triggers on them are the owner's
 * to attach: they run inside the SECURITY DEFINER ingest, so a trigger
 * function runs as the extension's owner, and TRIGGER granted to a role
 * would let it run anything as a superuser (and read the secret key).
 */
GRANT SELECT ON @extschema@.payment_flow, @extschema@.refund_flow,
	@extschema@.subscription_flow, @extschema@.deduction_flow TO stripepay_admin, stripepay_user;
