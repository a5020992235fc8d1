-- what-if: payment_record without its charge_id index, so that the ingest's
-- UPDATE of the payment (which sets charge_id) can be HOT
DROP INDEX stripepay.payment_record_charge_id_idx;
