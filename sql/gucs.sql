-- GUCs: defaults, checks, and who may change them
\set VERBOSITY default
-- the GUCs exist once the library is loaded (any stripepay function loads it)
LOAD 'stripepay';
SELECT name, setting, context FROM pg_settings WHERE name LIKE 'stripepay.%' AND name <> 'stripepay.api_base' ORDER BY name;
SELECT boot_val, context FROM pg_settings WHERE name = 'stripepay.api_base';

-- malformed values are refused
SET stripepay.api_base = 'ftp://api.stripe.com';
SET stripepay.api_base = 'https://api.stripe.com/';
SET stripepay.api_base = 'https://api.stripe.com/?x=1';
SET stripepay.api_version = 'latest';
SET stripepay.api_version = '2026-10-28.endive';
SET stripepay.api_version = '2026-10-28.endive\r\nX-Evil: 1';
-- its message gives the range with units from 17 on, without before
\set VERBOSITY sqlstate
SET stripepay.timeout_ms = 10;
\set VERBOSITY default
SET stripepay.max_retries = 11;

-- a plain role cannot send the key elsewhere, nor change the pinned version
DROP ROLE IF EXISTS regress_sp_plain;
CREATE ROLE regress_sp_plain;
SET ROLE regress_sp_plain;
SET stripepay.api_base = 'https://attacker.example';
\echo :LAST_ERROR_SQLSTATE
SET stripepay.api_version = '2020-08-27';
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE regress_sp_plain SET stripepay.api_base = 'https://attacker.example';
\echo :LAST_ERROR_SQLSTATE
-- nor widen the window for replayed webhooks, nor silence notifications
SET stripepay.webhook_tolerance = '1d';
\echo :LAST_ERROR_SQLSTATE
SET stripepay.notify = off;
\echo :LAST_ERROR_SQLSTATE
-- but may tune its own timeouts and retries
SET stripepay.timeout_ms = '5s';
SHOW stripepay.timeout_ms;
SET stripepay.max_retries = 0;
RESET ROLE;
DROP ROLE regress_sp_plain;

-- the prefix is reserved: a typo is an error, not a silent placeholder
SET stripepay.api_bsae = 'x';
