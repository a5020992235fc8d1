-- bench/ingest set-up: the extension, a signing secret, a shop's orders
-- table with the README's flow role and mark_order_paid trigger on the
-- payment actionflow, one PENDING payment (and order) per event, and the
-- benchmark's own tables.
-- psql variables: total (payments to create), secret (whsec_...).
\set ON_ERROR_STOP on
CREATE EXTENSION stripepay;
SELECT endpoint, secret FROM stripepay.add_webhook_secret(:'secret');

CREATE TABLE public.orders (
    id          bigint PRIMARY KEY,
    amount      bigint NOT NULL,
    currency    text NOT NULL,
    status      text NOT NULL DEFAULT 'new',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- as the README sets it up: the user's triggers run as a flow role that may
-- touch the orders and nothing else, never as the extension's owner
-- (roles are the cluster's: a second database finds it there)
DO $$ BEGIN CREATE ROLE shop_flows; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT SELECT, INSERT, UPDATE ON public.orders TO shop_flows;
GRANT USAGE ON SCHEMA stripepay TO shop_flows;
SELECT flow_role FROM stripepay.configure(flow_role => 'shop_flows');

-- the README's mark_order_paid: what a real user attaches to the payment flow
CREATE FUNCTION public.mark_order_paid() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
    IF NEW.already_processed THEN
        RETURN NEW;
    END IF;
    IF NEW.payment_status = 'SUCCESSFUL' THEN
        -- a payment opened for another amount or currency pays nothing
        UPDATE orders SET status = 'paid'
         WHERE id = NEW.order_id AND amount = NEW.amount AND currency = NEW.currency;
        IF NOT FOUND THEN
            RAISE WARNING 'payment % does not pay order %', NEW.payment_id, NEW.order_id;
        END IF;
    ELSE
        UPDATE orders SET status = lower(NEW.payment_status)
         WHERE id = NEW.order_id AND status <> 'paid';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER mark_order_paid AFTER INSERT ON stripepay.payment_flow
    FOR EACH ROW EXECUTE FUNCTION public.mark_order_paid();

INSERT INTO public.orders (id, amount, currency)
SELECT 100000 + g, 500 + (g * 7919) % 20000, (ARRAY['usd', 'eur', 'gbp'])[1 + g % 3]
  FROM generate_series(1, :total) g;

-- what stripe_pay(..., payment_flow => 'payment_intent') would have left
-- behind, without the call to Stripe: a PENDING row knowing its PaymentIntent
INSERT INTO stripepay.payment_record (order_id, currency, amount, flow, payment_intent_id, created_by)
SELECT o.id, o.currency, o.amount, 'payment_intent',
       'pi_3Q' || substr(md5('bench' || o.id), 1, 22), current_user
  FROM public.orders o
 ORDER BY o.id;

-- event n: its exact body (bytes as Stripe sent them) and event id ...
CREATE TABLE public.bench_event (
    n       int PRIMARY KEY,
    evt_id  text NOT NULL UNIQUE,
    body    bytea NOT NULL
);
-- ... and its Stripe-Signature, made just before each phase
CREATE TABLE public.bench_sig (
    n       int PRIMARY KEY,
    sig     text NOT NULL
);
-- baselines: a bare jsonb table (no index), one per baseline
CREATE TABLE public.bench_sink_a (payload jsonb NOT NULL);
CREATE TABLE public.bench_sink_b (payload jsonb NOT NULL);
-- (BENCH_VARIANTS=1) a copy of webhook_event for baseline_we.sql
CREATE TABLE public.bench_sink_we (LIKE stripepay.webhook_event INCLUDING ALL);
