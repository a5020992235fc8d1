-- what-if: the ingest's UPDATE of the payment as a HOT update.  It sets
-- charge_id, which an index covers, so the charge_id index goes; and HOT
-- needs room on the row's own page, which the bench's payments, made in one
-- INSERT, do not leave: the table is rewritten with 15% free.
DROP INDEX stripepay.payment_record_charge_id_idx;
ALTER TABLE stripepay.payment_record SET (fillfactor = 85);
VACUUM FULL stripepay.payment_record;
