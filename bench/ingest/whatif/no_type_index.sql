-- what-if: webhook_event without its (type, created) index
DROP INDEX stripepay.webhook_event_type_created_idx;
