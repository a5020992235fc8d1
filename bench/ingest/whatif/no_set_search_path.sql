-- what-if: inline_helpers.sql, and no SET search_path on the internal plpgsql
-- functions either (their only caller, stripe_ingest_webhook, pins it already)
ALTER FUNCTION stripepay._rank(text, text) RESET search_path;
ALTER FUNCTION stripepay._terminal(text, text) RESET search_path;
ALTER FUNCTION stripepay._advances(text, text, timestamptz, text, timestamptz) RESET search_path;
ALTER FUNCTION stripepay._id(text) RESET search_path;
ALTER FUNCTION stripepay._ingest(jsonb, text, text, text) RESET search_path;
ALTER FUNCTION stripepay._apply_payment(jsonb, timestamptz) RESET search_path;
ALTER FUNCTION stripepay._notify(text, jsonb) RESET search_path;
