/* stripepay 0.1.0 to 0.2.0 */
\echo Use "ALTER EXTENSION stripepay UPDATE TO '0.2.0'" to load this file. \quit

/*
 * The rules of applying an event move from PL/pgSQL into the C library: the
 * functions that held them go.  Every function becomes SECURITY INVOKER and
 * takes its owner's rights in C, knowing its caller (sp_call.c); users'
 * triggers run as the flow role or the calling role, never as the owner.
 */
DROP FUNCTION @extschema@._ingest(jsonb, text, text, text);
DROP FUNCTION @extschema@._dispatch(jsonb, timestamptz);
DROP FUNCTION @extschema@._apply_payment(jsonb, timestamptz);
DROP FUNCTION @extschema@._apply_refunds(jsonb, timestamptz);
DROP FUNCTION @extschema@._apply_one_refund(jsonb, timestamptz, text, text, bigint);
DROP FUNCTION @extschema@._apply_subscription(jsonb, timestamptz);
DROP FUNCTION @extschema@._apply_invoice(jsonb, timestamptz);
DROP FUNCTION @extschema@._apply_invoice_payment(jsonb, timestamptz);
DROP FUNCTION @extschema@._apply_waiting(text[]);
DROP FUNCTION @extschema@._wait(jsonb, text[]);
DROP FUNCTION @extschema@._lock_ids(text[]);
DROP FUNCTION @extschema@._sum_refunds(bigint);
DROP FUNCTION @extschema@._subscription_changed(bigint, text, boolean, timestamptz, timestamptz, text);
DROP FUNCTION @extschema@._id(text);
DROP FUNCTION @extschema@._notify(text, jsonb);
DROP TYPE @extschema@._links;

/* ---------------------------------------------------------------- tables */

ALTER TABLE @extschema@.settings
	ADD COLUMN flow_role regrole,
	ADD COLUMN event_retention interval NOT NULL DEFAULT '90 days';

/* what the newest event applied changed from, as columns instead of JSON */
ALTER TABLE @extschema@.recurring_payment
	ADD COLUMN changed_from_status text,
	ADD COLUMN changed_from_cancel_at_period_end boolean,
	ADD COLUMN cancel_at timestamptz,
	ADD COLUMN changed_from_cancel_at timestamptz;
UPDATE @extschema@.recurring_payment SET
	changed_from_status = pg_catalog.upper(event_changed_from OPERATOR(pg_catalog.->>) 'status'),
	changed_from_cancel_at_period_end =
		(event_changed_from OPERATOR(pg_catalog.->>) 'cancel_at_period_end')::boolean
 WHERE event_changed_from IS NOT NULL;
/* Stripe sets cancel_at when a subscription cancels at its period's end */
UPDATE @extschema@.recurring_payment SET cancel_at = current_period_end
 WHERE cancel_at_period_end AND status NOT IN ('CANCELED', 'INCOMPLETE_EXPIRED');
ALTER TABLE @extschema@.recurring_payment DROP COLUMN event_changed_from;

/* a waiting event is applied from its payload in webhook_event */
ALTER TABLE @extschema@.waiting_event DROP COLUMN facts;

ALTER TABLE @extschema@.payment_flow ADD COLUMN amount bigint, ADD COLUMN currency text;
UPDATE @extschema@.payment_flow f SET amount = p.amount, currency = p.currency
  FROM @extschema@.payment_record p WHERE p.id = f.payment_id;
ALTER TABLE @extschema@.refund_flow ADD COLUMN currency text;
UPDATE @extschema@.refund_flow f SET currency = r.currency
  FROM @extschema@.refund r WHERE r.id = f.refund_id;
ALTER TABLE @extschema@.subscription_flow ADD COLUMN cancel_at timestamptz;

/* ---------------------------------------------------------------- functions */

CREATE OR REPLACE FUNCTION @extschema@.mask_key(key text)
RETURNS text
AS 'MODULE_PATHNAME', 'stripepay_mask_key'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@._settings_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'stripepay_settings_changed'
LANGUAGE C;
CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
	ON @extschema@.settings FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._settings_changed();
CREATE TRIGGER webhook_secret_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
	ON @extschema@.webhook_secret FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._settings_changed();

/*
 * The users' triggers on these tables, which pg_dump leaves out of a dump
 * (it dumps no definition of an extension's table): recorded as rows, which
 * it keeps; restore_user_triggers() makes them again after a restore
 * (sp_user_triggers.c).
 */
CREATE TABLE @extschema@.user_trigger (
	table_name		name NOT NULL,
	trigger_name	name NOT NULL,
	definition		text NOT NULL,
	enabled			text NOT NULL CHECK (enabled IN ('O', 'D', 'R', 'A')),
	recorded_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (table_name, trigger_name)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.user_trigger', '');
/* a row without its trigger stops the calls that fire flows: they look again */
CREATE TRIGGER user_trigger_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
	ON @extschema@.user_trigger FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._settings_changed();

CREATE FUNCTION @extschema@._user_triggers_changed()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'stripepay_user_triggers_changed'
LANGUAGE C
SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION @extschema@._user_triggers_dropped()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'stripepay_user_triggers_dropped'
LANGUAGE C
SET search_path = pg_catalog, pg_temp;
CREATE EVENT TRIGGER stripepay_user_triggers ON ddl_command_end
	WHEN TAG IN ('CREATE TRIGGER', 'ALTER TRIGGER', 'ALTER TABLE', 'CREATE RULE')
	EXECUTE FUNCTION @extschema@._user_triggers_changed();
CREATE EVENT TRIGGER stripepay_user_triggers_dropped ON sql_drop
	EXECUTE FUNCTION @extschema@._user_triggers_dropped();

CREATE FUNCTION @extschema@.restore_user_triggers(OUT table_name name, OUT trigger_name name)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stripepay_restore_user_triggers'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

/* the triggers made before this update, recorded now */
CREATE FUNCTION @extschema@._user_triggers_record()
RETURNS void
AS 'MODULE_PATHNAME', 'stripepay_user_triggers_record'
LANGUAGE C
SET search_path = pg_catalog, pg_temp;
SELECT @extschema@._user_triggers_record();
DROP FUNCTION @extschema@._user_triggers_record();

/* the config view reads the key file too: a view over a C function */
DROP FUNCTION @extschema@.configure(text, text, text, text, text, text, text, text);
DROP VIEW @extschema@.config;

CREATE FUNCTION @extschema@._config(
	OUT secret_key text, OUT publishable_key text, OUT mode text, OUT brand_name text,
	OUT brand_logo text, OUT brand_slogan text, OUT success_url text, OUT cancel_url text,
	OUT payment_flow text, OUT updated_at timestamptz, OUT flow_role text,
	OUT event_retention interval, OUT secret_key_file text, OUT webhook_secrets_file text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stripepay_config'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;

CREATE VIEW @extschema@.config AS
SELECT * FROM @extschema@._config();

CREATE FUNCTION @extschema@.configure(
	secret_key text DEFAULT NULL,
	publishable_key text DEFAULT NULL,
	brand_name text DEFAULT NULL,
	brand_logo text DEFAULT NULL,
	brand_slogan text DEFAULT NULL,
	success_url text DEFAULT NULL,
	cancel_url text DEFAULT NULL,
	payment_flow text DEFAULT NULL,
	flow_role text DEFAULT NULL,
	event_retention interval DEFAULT NULL)
RETURNS @extschema@.config
AS 'MODULE_PATHNAME', 'stripepay_configure'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

ALTER FUNCTION @extschema@.add_webhook_secret(text, text, timestamptz) SECURITY INVOKER;
ALTER FUNCTION @extschema@.stripe_pay(bigint, text, numeric) SECURITY INVOKER;
ALTER FUNCTION @extschema@.stripe_refund(bigint, numeric) SECURITY INVOKER;
ALTER FUNCTION @extschema@.stripe_subscribe(bigint, text) SECURITY INVOKER;
ALTER FUNCTION @extschema@.stripe_cancel_subscription(bigint, boolean) SECURITY INVOKER;
ALTER FUNCTION @extschema@.stripe_resume_subscription(bigint) SECURITY INVOKER;
ALTER FUNCTION @extschema@.stripe_ingest_webhook(text, text, text) SECURITY INVOKER;
ALTER FUNCTION @extschema@.stripe_ingest_webhook(bytea, text, text) SECURITY INVOKER;
ALTER FUNCTION @extschema@.setup_webhooks(text) SECURITY INVOKER;
ALTER FUNCTION @extschema@.remove_webhooks() SECURITY INVOKER;
ALTER FUNCTION @extschema@.sync_events(timestamptz) SECURITY INVOKER;
ALTER FUNCTION @extschema@.refresh_payment(bigint) SECURITY INVOKER;

/*
 * A procedure, so that it commits after each batch; without SET clauses,
 * which would forbid that: it sets its search_path itself.
 */
CREATE PROCEDURE @extschema@.prune_events(older_than interval DEFAULT NULL,
	INOUT deleted bigint DEFAULT NULL, INOUT kept bigint DEFAULT NULL,
	INOUT pruned_before timestamptz DEFAULT NULL, INOUT batches integer DEFAULT NULL)
AS 'MODULE_PATHNAME', 'stripepay_prune_events'
LANGUAGE C;

/* A notification through the notifier's path, for its tests. */
CREATE FUNCTION @extschema@._notify(channel text, payload text)
RETURNS void
AS 'MODULE_PATHNAME', 'stripepay_notify'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;

/* ---------------------------------------------------------------- privileges */

REVOKE ALL ON FUNCTION @extschema@._settings_changed(), @extschema@._config(),
	@extschema@.configure(text, text, text, text, text, text, text, text, text, interval),
	@extschema@._notify(text, text)
	FROM PUBLIC;
REVOKE ALL ON PROCEDURE @extschema@.prune_events(interval, bigint, bigint, timestamptz, integer)
	FROM PUBLIC;
REVOKE ALL ON @extschema@.config FROM PUBLIC;
REVOKE ALL ON @extschema@.user_trigger FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._user_triggers_changed(), @extschema@._user_triggers_dropped(),
	@extschema@.restore_user_triggers() FROM PUBLIC;

GRANT SELECT ON @extschema@.config TO stripepay_admin;
GRANT SELECT ON @extschema@.user_trigger TO stripepay_admin;
GRANT EXECUTE ON FUNCTION @extschema@._config() TO stripepay_admin;
GRANT EXECUTE ON FUNCTION @extschema@.configure(text, text, text, text, text, text, text, text,
												text, interval)
	TO stripepay_admin;
GRANT EXECUTE ON PROCEDURE @extschema@.prune_events(interval, bigint, bigint, timestamptz, integer)
	TO stripepay_admin;

/* ---------------------------------------------------------------- the catalog's documentation */

COMMENT ON FUNCTION @extschema@.stripe_pay(bigint, text, numeric) IS
'Takes a payment for an order: records a PENDING payment_record and creates its Stripe Checkout Session (or PaymentIntent); returns the row with checkout_url (or client_secret). amount is in the currency''s smallest unit. A double click returns the open payment; a paid order is refused (SP011).';
COMMENT ON FUNCTION @extschema@.stripe_refund(bigint, numeric) IS
'Refunds part or all of a SUCCESSFUL payment, never more than is left (SP014), never twice; returns the PENDING refund row, which Stripe''s webhook confirms. stripepay_admin only.';
COMMENT ON FUNCTION @extschema@.stripe_subscribe(bigint, text) IS
'Starts a subscription to a recurring Stripe Price through Checkout; returns the INCOMPLETE recurring_payment row with checkout_url.';
COMMENT ON FUNCTION @extschema@.stripe_cancel_subscription(bigint, boolean) IS
'Cancels a subscription now, or at the end of its current period (at_period_end => true: Stripe''s cancel_at = min_period_end). Only the role that subscribed, or an admin.';
COMMENT ON FUNCTION @extschema@.stripe_resume_subscription(bigint) IS
'Undoes a scheduled cancellation, at the period''s end or at a date. Only the role that subscribed, or an admin.';
COMMENT ON FUNCTION @extschema@.stripe_ingest_webhook(text, text, text) IS
'Verifies a Stripe webhook delivery (the body as text, in a UTF8 database), records it once in webhook_event and applies it; returns (event_id, event_type, already_processed). Nothing is parsed before the signature holds.';
COMMENT ON FUNCTION @extschema@.stripe_ingest_webhook(bytea, text, text) IS
'Verifies a Stripe webhook delivery (the body byte for byte), records it once in webhook_event and applies it; returns (event_id, event_type, already_processed). Nothing is parsed before the signature holds.';
COMMENT ON FUNCTION @extschema@.configure(text, text, text, text, text, text, text, text, text, interval) IS
'Sets stripepay''s settings: keys, brand, redirect URLs, payment flow, the flow role user triggers run as, the event retention. Only what is passed changes; '''' clears. Its statement is kept out of the server log''s messages.';
COMMENT ON FUNCTION @extschema@.add_webhook_secret(text, text, timestamptz) IS
'Stores a webhook signing secret (whsec_...) for an endpoint, or sets the expiry of one stored: several may be live while one is rotated out. Its statement is kept out of the server log''s messages.';
COMMENT ON FUNCTION @extschema@.setup_webhooks(text) IS
'Makes the four webhook endpoints (payment, refund, subscription, deduction) at base_url/stripe/<name> in the Stripe account and stores their secrets. Idempotent.';
COMMENT ON FUNCTION @extschema@.remove_webhooks() IS
'Deletes stripepay''s webhook endpoints from the Stripe account; their secrets stay live an hour. Returns how many were deleted.';
COMMENT ON FUNCTION @extschema@.sync_events(timestamptz) IS
'Fetches from Stripe the events created since a time (default: the newest held) and applies those not held yet, oldest first, as webhooks would be. One transaction.';
COMMENT ON FUNCTION @extschema@.refresh_payment(bigint) IS
'Reads a payment''s Checkout Session and PaymentIntent from Stripe and applies the outcome found, as its webhook would.';
COMMENT ON PROCEDURE @extschema@.prune_events(interval, bigint, bigint, timestamptz, integer) IS
'Deletes webhook_event rows older than a window (default: the event_retention setting, 90 days; at least 30 days and the webhook tolerance), in batches each committed on its own; keeps waiting events and the events each row''s state came from. CALL it outside a transaction block.';
COMMENT ON FUNCTION @extschema@.mask_key(text) IS
'A key as sk_test_…1234: enough to tell keys apart, never enough to use one.';
COMMENT ON FUNCTION @extschema@._config() IS
'The rows of the config view. Internal.';
COMMENT ON FUNCTION @extschema@._settings_changed() IS
'Trigger: drops every backend''s cached settings and secrets when a transaction that changed them commits. Internal.';
COMMENT ON FUNCTION @extschema@._advances(text, text, timestamptz, text, timestamptz) IS
'The never-regress rule: whether an event bringing new_status at new_at may replace cur_status of cur_at. Internal, for tests.';
COMMENT ON FUNCTION @extschema@._notify(text, text) IS
'Queues a notification through the notifier worker. Internal, for tests.';

COMMENT ON TABLE @extschema@.settings IS
'The settings row, secret key included: superusers only. Admins read stripepay.config.';
COMMENT ON VIEW @extschema@.config IS
'The settings, with the secret key masked and its mode; the flow role; the event retention; the key files in use.';
COMMENT ON VIEW @extschema@.webhook_secrets IS
'The webhook signing secrets, masked, with whether each is live.';
COMMENT ON TABLE @extschema@.webhook_secret IS
'The webhook signing secrets themselves: superusers only.';
COMMENT ON TABLE @extschema@.webhook_endpoint IS
'The endpoints setup_webhooks() made in the Stripe account.';
COMMENT ON TABLE @extschema@.notify_outbox IS
'Notifications queued for the notifier worker, sent after commit. Unlogged.';
COMMENT ON TABLE @extschema@.waiting_event IS
'Events that name a payment by a Stripe id no payment has yet; applied when one learns it, for at most 30 days.';

COMMENT ON TABLE @extschema@.user_trigger IS
'The triggers users made on stripepay''s tables, recorded after each DDL: pg_dump leaves those triggers out of a dump but keeps these rows; after pg_restore, restore_user_triggers() makes them again.';
COMMENT ON COLUMN @extschema@.user_trigger.definition IS 'The trigger''s CREATE TRIGGER, as pg_get_triggerdef gives it.';
COMMENT ON COLUMN @extschema@.user_trigger.enabled IS 'pg_trigger.tgenabled: O (enabled), D (disabled), R (replica), A (always).';
COMMENT ON FUNCTION @extschema@.restore_user_triggers() IS
'After pg_restore: makes the triggers on stripepay''s tables that stripepay.user_trigger records and the restore did not make, in their state; returns those made. Until then, calls that fire flows are refused (SP035). Superusers only.';
COMMENT ON FUNCTION @extschema@._user_triggers_changed() IS
'Event trigger: records the users'' triggers on the stripepay tables a DDL command touched in user_trigger; refuses triggers on tables stripepay writes as their owner, and rules. Internal.';
COMMENT ON FUNCTION @extschema@._user_triggers_dropped() IS
'Event trigger: forgets the users'' triggers on stripepay''s tables that a drop removed. Internal.';
COMMENT ON EVENT TRIGGER stripepay_user_triggers IS
'Keeps stripepay.user_trigger equal to the users'' triggers on stripepay''s tables.';
COMMENT ON EVENT TRIGGER stripepay_user_triggers_dropped IS
'Keeps stripepay.user_trigger equal to the users'' triggers on stripepay''s tables, after drops.';

COMMENT ON TABLE @extschema@.payment_record IS
'One row per attempt to be paid: a one-time payment (stripe_pay) or a subscription''s renewal.';
COMMENT ON COLUMN @extschema@.payment_record.order_id IS 'Your order.';
COMMENT ON COLUMN @extschema@.payment_record.kind IS 'ONE_TIME, or RENEWAL for a subscription''s renewal charge.';
COMMENT ON COLUMN @extschema@.payment_record.recurring_payment_id IS 'The subscription a renewal belongs to.';
COMMENT ON COLUMN @extschema@.payment_record.status IS 'PENDING, SUCCESSFUL, FAILED or CANCELED; refunds do not change it.';
COMMENT ON COLUMN @extschema@.payment_record.currency IS 'Lower-case ISO 4217 code.';
COMMENT ON COLUMN @extschema@.payment_record.amount IS 'In the currency''s smallest unit (1999 is 19.99 USD).';
COMMENT ON COLUMN @extschema@.payment_record.amount_refunded IS 'The refunds that are PENDING or SUCCEEDED, added up.';
COMMENT ON COLUMN @extschema@.payment_record.flow IS 'checkout, payment_intent or invoice.';
COMMENT ON COLUMN @extschema@.payment_record.checkout_url IS 'Where to send the buyer (Checkout).';
COMMENT ON COLUMN @extschema@.payment_record.client_secret IS 'For Stripe Elements or a mobile SDK (payment_intent flow).';
COMMENT ON COLUMN @extschema@.payment_record.failure_code IS 'Why the payment failed: Stripe''s decline or error code.';
COMMENT ON COLUMN @extschema@.payment_record.event_created IS 'created of the newest Stripe event applied: the never-regress rule.';
COMMENT ON COLUMN @extschema@.payment_record.created_by IS 'The role that called stripe_pay, or stripe for a payment learnt from Stripe.';

COMMENT ON TABLE @extschema@.refund IS
'One row per refund, made by stripe_refund or in the Stripe dashboard.';
COMMENT ON COLUMN @extschema@.refund.payment_id IS 'The payment refunded.';
COMMENT ON COLUMN @extschema@.refund.amount IS 'In the currency''s smallest unit.';
COMMENT ON COLUMN @extschema@.refund.status IS 'PENDING, SUCCEEDED, FAILED or CANCELED.';
COMMENT ON COLUMN @extschema@.refund.unclaimed_key IS 'The key of a stripe_refund call that rolled back after Stripe made this refund, until its retry claims it.';
COMMENT ON COLUMN @extschema@.refund.created_by IS 'The role that called stripe_refund, or stripe for a refund made elsewhere.';

COMMENT ON TABLE @extschema@.recurring_payment IS
'One row per subscription, following Stripe''s webhooks.';
COMMENT ON COLUMN @extschema@.recurring_payment.status IS 'Stripe''s status, upper-cased: INCOMPLETE, INCOMPLETE_EXPIRED, TRIALING, ACTIVE, PAST_DUE, CANCELED, UNPAID, PAUSED.';
COMMENT ON COLUMN @extschema@.recurring_payment.cancel_at_period_end IS 'Stripe''s flag: the subscription cancels when its current period ends.';
COMMENT ON COLUMN @extschema@.recurring_payment.cancel_at IS 'When a scheduled cancellation takes effect (Stripe''s cancel_at), by date or at the period''s end; NULL when none is scheduled.';
COMMENT ON COLUMN @extschema@.recurring_payment.canceled_at IS 'When it was canceled, or when the cancellation was requested.';
COMMENT ON COLUMN @extschema@.recurring_payment.changed_from_status IS 'The status the newest event applied changed from (its previous_attributes): orders two changes of one second.';
COMMENT ON COLUMN @extschema@.recurring_payment.changed_from_cancel_at_period_end IS 'cancel_at_period_end before the newest event applied, when it changed it.';
COMMENT ON COLUMN @extschema@.recurring_payment.changed_from_cancel_at IS 'cancel_at before the newest event applied, when it changed it; -infinity when none was scheduled.';
COMMENT ON COLUMN @extschema@.recurring_payment.event_created IS 'created of the newest Stripe event applied: the never-regress rule.';

COMMENT ON TABLE @extschema@.webhook_event IS
'Every Stripe event received or synced, keyed by its id, with its payload; kept until prune_events removes it.';
COMMENT ON COLUMN @extschema@.webhook_event.id IS 'Stripe''s event id (evt_...).';
COMMENT ON COLUMN @extschema@.webhook_event.created IS 'When Stripe made the event.';
COMMENT ON COLUMN @extschema@.webhook_event.object_id IS 'The id of the Stripe object the event is about.';
COMMENT ON COLUMN @extschema@.webhook_event.endpoint IS 'The endpoint name it was delivered to; NULL for any, or for a sync.';
COMMENT ON COLUMN @extschema@.webhook_event.source IS 'webhook, or sync for an event sync_events fetched.';
COMMENT ON COLUMN @extschema@.webhook_event.order_id IS 'The order the event concerns, when known.';
COMMENT ON COLUMN @extschema@.webhook_event.payment_id IS 'The payment_record the event concerns, when known.';
COMMENT ON COLUMN @extschema@.webhook_event.refund_id IS 'The refund the event concerns, when known.';
COMMENT ON COLUMN @extschema@.webhook_event.recurring_payment_id IS 'The subscription the event concerns, when known.';
COMMENT ON COLUMN @extschema@.webhook_event.payload IS 'The event as Stripe sent it.';

COMMENT ON TABLE @extschema@.payment_flow IS
'The payment actionflow: a row for each event that brings a payment SUCCESSFUL, FAILED or CANCELED. Attach your AFTER INSERT trigger here; it runs as the flow role.';
COMMENT ON COLUMN @extschema@.payment_flow.payment_status IS 'The payment''s status after the event.';
COMMENT ON COLUMN @extschema@.payment_flow.already_processed IS 'True when the outcome was known already: act only when false.';
COMMENT ON COLUMN @extschema@.payment_flow.amount IS 'What Stripe says the payment is for, in the smallest unit: check it against your order.';
COMMENT ON COLUMN @extschema@.payment_flow.currency IS 'The currency of amount.';
COMMENT ON TABLE @extschema@.refund_flow IS
'The refund actionflow: a row for each event that brings a refund SUCCEEDED, FAILED or CANCELED. Runs as the flow role.';
COMMENT ON COLUMN @extschema@.refund_flow.refund_status IS 'The refund''s status after the event.';
COMMENT ON COLUMN @extschema@.refund_flow.amount IS 'The refund''s amount, in the smallest unit.';
COMMENT ON COLUMN @extschema@.refund_flow.currency IS 'The currency of amount.';
COMMENT ON COLUMN @extschema@.refund_flow.already_processed IS 'True when the outcome was known already: act only when false.';
COMMENT ON TABLE @extschema@.subscription_flow IS
'The subscription actionflow: a row for each event (or cancel, resume) that brings a subscription''s status. Runs as the flow role.';
COMMENT ON COLUMN @extschema@.subscription_flow.previous_status IS 'The status before the event.';
COMMENT ON COLUMN @extschema@.subscription_flow.cancel_at IS 'When the subscription will end, if a cancellation is scheduled; NULL otherwise.';
COMMENT ON COLUMN @extschema@.subscription_flow.already_processed IS 'True when nothing changed (status, cancel_at_period_end, cancel_at): act only when false.';
COMMENT ON TABLE @extschema@.deduction_flow IS
'The deduction actionflow: a row for each renewal Stripe charged. A BEFORE INSERT trigger may set order_id to the renewal''s own order. Runs as the flow role.';
COMMENT ON COLUMN @extschema@.deduction_flow.subscription_order_id IS 'The subscription''s order.';
COMMENT ON COLUMN @extschema@.deduction_flow.order_id IS 'The renewal''s order: the subscription''s, unless your BEFORE INSERT trigger sets another; it becomes the renewal payment''s order.';
COMMENT ON COLUMN @extschema@.deduction_flow.amount IS 'What the invoice charged, in the smallest unit.';

/* The remaining columns, so that \d+ describes every one. */
COMMENT ON COLUMN @extschema@.settings.singleton IS 'Always true: the table has one row.';
COMMENT ON COLUMN @extschema@.settings.secret_key IS 'The Stripe secret or restricted key (sk_..., rk_...); superusers only, shown masked in config.';
COMMENT ON COLUMN @extschema@.settings.publishable_key IS 'The publishable key (pk_...), for your front end.';
COMMENT ON COLUMN @extschema@.settings.brand_name IS 'The product name Checkout shows.';
COMMENT ON COLUMN @extschema@.settings.brand_logo IS 'An https URL of an image Checkout shows.';
COMMENT ON COLUMN @extschema@.settings.brand_slogan IS 'A description Checkout shows under the name.';
COMMENT ON COLUMN @extschema@.settings.success_url IS 'Where Checkout sends the buyer after paying; may hold {CHECKOUT_SESSION_ID}.';
COMMENT ON COLUMN @extschema@.settings.cancel_url IS 'Where Checkout sends a buyer who goes back.';
COMMENT ON COLUMN @extschema@.settings.payment_flow IS 'checkout (stripe_pay returns a checkout_url) or payment_intent (a client_secret).';
COMMENT ON COLUMN @extschema@.settings.updated_at IS 'When configure() last changed a setting.';
COMMENT ON COLUMN @extschema@.settings.flow_role IS 'The role your triggers on the flows run as; NULL: the calling role.';
COMMENT ON COLUMN @extschema@.settings.event_retention IS 'prune_events()''s default window: at least 30 days and the webhook tolerance.';

COMMENT ON COLUMN @extschema@.config.secret_key IS 'The secret key, masked (sk_test_...1234).';
COMMENT ON COLUMN @extschema@.config.publishable_key IS 'The publishable key.';
COMMENT ON COLUMN @extschema@.config.mode IS 'test or live, from the secret key.';
COMMENT ON COLUMN @extschema@.config.brand_name IS 'The product name Checkout shows.';
COMMENT ON COLUMN @extschema@.config.brand_logo IS 'An https URL of an image Checkout shows.';
COMMENT ON COLUMN @extschema@.config.brand_slogan IS 'A description Checkout shows under the name.';
COMMENT ON COLUMN @extschema@.config.success_url IS 'Where Checkout sends the buyer after paying.';
COMMENT ON COLUMN @extschema@.config.cancel_url IS 'Where Checkout sends a buyer who goes back.';
COMMENT ON COLUMN @extschema@.config.payment_flow IS 'checkout or payment_intent.';
COMMENT ON COLUMN @extschema@.config.updated_at IS 'When configure() last changed a setting.';
COMMENT ON COLUMN @extschema@.config.flow_role IS 'The role your triggers on the flows run as; NULL: the calling role.';
COMMENT ON COLUMN @extschema@.config.event_retention IS 'prune_events()''s default window.';
COMMENT ON COLUMN @extschema@.config.secret_key_file IS 'stripepay.secret_key_file: the file the key is read from, when set.';
COMMENT ON COLUMN @extschema@.config.webhook_secrets_file IS 'stripepay.webhook_secrets_file: the file more signing secrets are read from, when set.';

COMMENT ON COLUMN @extschema@.payment_record.id IS 'The payment''s id: stripe_refund and refresh_payment take it.';
COMMENT ON COLUMN @extschema@.payment_record.checkout_session_id IS 'Stripe''s Checkout Session (cs_...), for the checkout flow.';
COMMENT ON COLUMN @extschema@.payment_record.expires_at IS 'When the Checkout Session expires.';
COMMENT ON COLUMN @extschema@.payment_record.payment_intent_id IS 'Stripe''s PaymentIntent (pi_...), once known.';
COMMENT ON COLUMN @extschema@.payment_record.invoice_id IS 'The Stripe invoice (in_...) a renewal paid.';
COMMENT ON COLUMN @extschema@.payment_record.charge_id IS 'Stripe''s charge (ch_...), once known: refunds name it.';
COMMENT ON COLUMN @extschema@.payment_record.livemode IS 'True for live mode, false for test mode, as Stripe says.';
COMMENT ON COLUMN @extschema@.payment_record.failure_message IS 'Stripe''s message for the failure, for people.';
COMMENT ON COLUMN @extschema@.payment_record.created_at IS 'When the row was made.';
COMMENT ON COLUMN @extschema@.payment_record.updated_at IS 'When the row last changed.';

COMMENT ON COLUMN @extschema@.refund.id IS 'The refund''s id.';
COMMENT ON COLUMN @extschema@.refund.order_id IS 'The order of the payment refunded.';
COMMENT ON COLUMN @extschema@.refund.currency IS 'Lower-case ISO 4217 code.';
COMMENT ON COLUMN @extschema@.refund.stripe_refund_id IS 'Stripe''s refund (re_...).';
COMMENT ON COLUMN @extschema@.refund.reason IS 'Stripe''s reason: duplicate, fraudulent, requested_by_customer, expired_uncaptured_charge; NULL when none was given.';
COMMENT ON COLUMN @extschema@.refund.failure_reason IS 'Why Stripe could not refund, when it FAILED.';
COMMENT ON COLUMN @extschema@.refund.event_created IS 'created of the newest Stripe event applied: the never-regress rule.';
COMMENT ON COLUMN @extschema@.refund.created_at IS 'When the row was made.';
COMMENT ON COLUMN @extschema@.refund.updated_at IS 'When the row last changed.';

COMMENT ON COLUMN @extschema@.recurring_payment.id IS 'The subscription''s id: stripe_cancel_subscription and stripe_resume_subscription take it.';
COMMENT ON COLUMN @extschema@.recurring_payment.order_id IS 'Your order that subscribed.';
COMMENT ON COLUMN @extschema@.recurring_payment.price_id IS 'The recurring Stripe Price (price_...).';
COMMENT ON COLUMN @extschema@.recurring_payment.checkout_session_id IS 'The Checkout Session in subscription mode (cs_...).';
COMMENT ON COLUMN @extschema@.recurring_payment.checkout_url IS 'Where to send the buyer to subscribe.';
COMMENT ON COLUMN @extschema@.recurring_payment.expires_at IS 'When the Checkout Session expires.';
COMMENT ON COLUMN @extschema@.recurring_payment.subscription_id IS 'Stripe''s subscription (sub_...), once the buyer completed Checkout.';
COMMENT ON COLUMN @extschema@.recurring_payment.customer_id IS 'Stripe''s customer (cus_...).';
COMMENT ON COLUMN @extschema@.recurring_payment.current_period_start IS 'Start of the current billing period.';
COMMENT ON COLUMN @extschema@.recurring_payment.current_period_end IS 'End of the current billing period: the next renewal.';
COMMENT ON COLUMN @extschema@.recurring_payment.livemode IS 'True for live mode, false for test mode, as Stripe says.';
COMMENT ON COLUMN @extschema@.recurring_payment.created_by IS 'The role that called stripe_subscribe, or stripe for a subscription learnt from Stripe.';
COMMENT ON COLUMN @extschema@.recurring_payment.created_at IS 'When the row was made.';
COMMENT ON COLUMN @extschema@.recurring_payment.updated_at IS 'When the row last changed.';

COMMENT ON COLUMN @extschema@.webhook_event.type IS 'Stripe''s event type, such as checkout.session.completed.';
COMMENT ON COLUMN @extschema@.webhook_event.api_version IS 'The API version the event is in: it says which shapes are read.';
COMMENT ON COLUMN @extschema@.webhook_event.livemode IS 'True for a live-mode event.';
COMMENT ON COLUMN @extschema@.webhook_event.received_at IS 'When the event was recorded here.';

COMMENT ON COLUMN @extschema@.waiting_event.stripe_id IS 'The Stripe id the event waits for a payment to learn (pi_..., ch_..., in_...).';
COMMENT ON COLUMN @extschema@.waiting_event.event_id IS 'The waiting event, in webhook_event.';
COMMENT ON COLUMN @extschema@.waiting_event.waiting_since IS 'When it began to wait; it waits at most 30 days.';

COMMENT ON COLUMN @extschema@.payment_flow.id IS 'The order the rows were added in.';
COMMENT ON COLUMN @extschema@.payment_flow.event_id IS 'The Stripe event (evt_...), or refresh_payment.';
COMMENT ON COLUMN @extschema@.payment_flow.event_type IS 'The event''s type; after refresh_payment, the type of the event its outcome stands for.';
COMMENT ON COLUMN @extschema@.payment_flow.order_id IS 'Your order.';
COMMENT ON COLUMN @extschema@.payment_flow.payment_id IS 'The payment_record.';
COMMENT ON COLUMN @extschema@.payment_flow.created_at IS 'When the flow fired (the transaction''s start).';

COMMENT ON COLUMN @extschema@.refund_flow.id IS 'The order the rows were added in.';
COMMENT ON COLUMN @extschema@.refund_flow.event_id IS 'The Stripe event (evt_...).';
COMMENT ON COLUMN @extschema@.refund_flow.event_type IS 'The event''s type.';
COMMENT ON COLUMN @extschema@.refund_flow.order_id IS 'The order of the payment refunded.';
COMMENT ON COLUMN @extschema@.refund_flow.payment_id IS 'The payment_record refunded.';
COMMENT ON COLUMN @extschema@.refund_flow.refund_id IS 'The refund row.';
COMMENT ON COLUMN @extschema@.refund_flow.created_at IS 'When the flow fired (the transaction''s start).';

COMMENT ON COLUMN @extschema@.subscription_flow.id IS 'The order the rows were added in.';
COMMENT ON COLUMN @extschema@.subscription_flow.event_id IS 'The Stripe event (evt_...), or the function that made the change.';
COMMENT ON COLUMN @extschema@.subscription_flow.event_type IS 'The event''s type, or stripe_cancel_subscription or stripe_resume_subscription.';
COMMENT ON COLUMN @extschema@.subscription_flow.order_id IS 'Your order that subscribed.';
COMMENT ON COLUMN @extschema@.subscription_flow.recurring_payment_id IS 'The recurring_payment.';
COMMENT ON COLUMN @extschema@.subscription_flow.status IS 'The subscription''s status after the event.';
COMMENT ON COLUMN @extschema@.subscription_flow.cancel_at_period_end IS 'Stripe''s flag after the event.';
COMMENT ON COLUMN @extschema@.subscription_flow.created_at IS 'When the flow fired (the transaction''s start).';

COMMENT ON COLUMN @extschema@.deduction_flow.id IS 'The order the rows were added in.';
COMMENT ON COLUMN @extschema@.deduction_flow.event_id IS 'The invoice.paid event (evt_...).';
COMMENT ON COLUMN @extschema@.deduction_flow.event_type IS 'invoice.paid.';
COMMENT ON COLUMN @extschema@.deduction_flow.recurring_payment_id IS 'The recurring_payment renewed.';
COMMENT ON COLUMN @extschema@.deduction_flow.payment_id IS 'The RENEWAL payment_record made for the invoice.';
COMMENT ON COLUMN @extschema@.deduction_flow.invoice_id IS 'The Stripe invoice (in_...).';
COMMENT ON COLUMN @extschema@.deduction_flow.currency IS 'The currency of amount.';
COMMENT ON COLUMN @extschema@.deduction_flow.already_processed IS 'Always false: a renewal fires once per invoice.';
COMMENT ON COLUMN @extschema@.deduction_flow.created_at IS 'When the flow fired (the transaction''s start).';

COMMENT ON COLUMN @extschema@.notify_outbox.id IS 'The order the notifications are sent in.';
COMMENT ON COLUMN @extschema@.notify_outbox.channel IS 'stripepay_payment, stripepay_refund or stripepay_recurring_payment.';
COMMENT ON COLUMN @extschema@.notify_outbox.payload IS 'The notification''s JSON: ids and a status.';

COMMENT ON COLUMN @extschema@.webhook_secret.id IS 'The secret''s id.';
COMMENT ON COLUMN @extschema@.webhook_secret.endpoint IS 'The endpoint name whose deliveries it signs (1 to 64 of A-Z a-z 0-9 _ . -).';
COMMENT ON COLUMN @extschema@.webhook_secret.secret IS 'The signing secret (whsec_...); superusers only.';
COMMENT ON COLUMN @extschema@.webhook_secret.expires_at IS 'When it stops being accepted; NULL: never.';
COMMENT ON COLUMN @extschema@.webhook_secret.created_at IS 'When it was stored.';

COMMENT ON COLUMN @extschema@.webhook_secrets.id IS 'The secret''s id.';
COMMENT ON COLUMN @extschema@.webhook_secrets.endpoint IS 'The endpoint name whose deliveries it signs.';
COMMENT ON COLUMN @extschema@.webhook_secrets.secret IS 'The signing secret, masked.';
COMMENT ON COLUMN @extschema@.webhook_secrets.expires_at IS 'When it stops being accepted; NULL: never.';
COMMENT ON COLUMN @extschema@.webhook_secrets.live IS 'True while it is accepted.';
COMMENT ON COLUMN @extschema@.webhook_secrets.created_at IS 'When it was stored.';

COMMENT ON COLUMN @extschema@.webhook_endpoint.name IS 'payment, refund, subscription or deduction: the flow whose events it receives.';
COMMENT ON COLUMN @extschema@.webhook_endpoint.stripe_id IS 'Stripe''s webhook endpoint (we_...).';
COMMENT ON COLUMN @extschema@.webhook_endpoint.url IS 'Where Stripe delivers: the base URL and /stripe/<name>.';
COMMENT ON COLUMN @extschema@.webhook_endpoint.enabled_events IS 'The event types Stripe sends there.';
COMMENT ON COLUMN @extschema@.webhook_endpoint.api_version IS 'The API version its events are in.';
COMMENT ON COLUMN @extschema@.webhook_endpoint.livemode IS 'True for a live-mode endpoint.';
COMMENT ON COLUMN @extschema@.webhook_endpoint.created_at IS 'When setup_webhooks() made it.';

COMMENT ON COLUMN @extschema@.user_trigger.table_name IS 'The stripepay table the trigger is on.';
COMMENT ON COLUMN @extschema@.user_trigger.trigger_name IS 'The trigger''s name.';
COMMENT ON COLUMN @extschema@.user_trigger.recorded_at IS 'When the trigger was recorded, or last changed.';
