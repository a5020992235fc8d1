/*-------------------------------------------------------------------------
 *
 * stripepay.h
 *		Settings and SQLSTATEs shared by the extension's Postgres-side files.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STRIPEPAY_H
#define STRIPEPAY_H

#include "postgres.h"

#include "sp_compat.h"

/* The Stripe API version every request pins with Stripe-Version. */
#define SP_DEFAULT_API_VERSION "2026-10-28.endive"
#define SP_DEFAULT_API_BASE "https://api.stripe.com"

/* GUCs (stripepay.c) */
extern char *sp_api_base;
extern char *sp_api_version;
extern int	sp_timeout_ms;
extern int	sp_connect_timeout_ms;
extern int	sp_max_retries;
extern int	sp_webhook_tolerance;
extern bool sp_notify;
extern bool sp_notify_worker;

/*
 * SQLSTATEs of class SP, one per kind of Stripe failure, so that callers can
 * tell a declined card from an outage without parsing messages.
 */
#define ERRCODE_SP_CARD_ERROR			MAKE_SQLSTATE('S','P','0','0','1')
#define ERRCODE_SP_INVALID_REQUEST		MAKE_SQLSTATE('S','P','0','0','2')
#define ERRCODE_SP_AUTHENTICATION		MAKE_SQLSTATE('S','P','0','0','3')
#define ERRCODE_SP_RATE_LIMIT			MAKE_SQLSTATE('S','P','0','0','4')
#define ERRCODE_SP_API_ERROR			MAKE_SQLSTATE('S','P','0','0','5')
#define ERRCODE_SP_IDEMPOTENCY			MAKE_SQLSTATE('S','P','0','0','6')
#define ERRCODE_SP_NETWORK				MAKE_SQLSTATE('S','P','0','0','7')
#define ERRCODE_SP_VERSION_MISMATCH		MAKE_SQLSTATE('S','P','0','0','9')
#define ERRCODE_SP_NOT_CONFIGURED		MAKE_SQLSTATE('S','P','0','1','0')
#define ERRCODE_SP_ALREADY_PAID			MAKE_SQLSTATE('S','P','0','1','1')
#define ERRCODE_SP_NO_SUCH_PAYMENT		MAKE_SQLSTATE('S','P','0','1','2')
#define ERRCODE_SP_NOT_REFUNDABLE		MAKE_SQLSTATE('S','P','0','1','3')
#define ERRCODE_SP_REFUND_TOO_LARGE		MAKE_SQLSTATE('S','P','0','1','4')
#define ERRCODE_SP_ALREADY_SUBSCRIBED	MAKE_SQLSTATE('S','P','0','1','5')
#define ERRCODE_SP_NO_SUCH_SUBSCRIPTION	MAKE_SQLSTATE('S','P','0','1','6')
#define ERRCODE_SP_NOT_RESUMABLE		MAKE_SQLSTATE('S','P','0','1','7')
#define ERRCODE_SP_NOT_AT_STRIPE		MAKE_SQLSTATE('S','P','0','1','8')
#define ERRCODE_SP_TOO_MANY_ENDPOINTS	MAKE_SQLSTATE('S','P','0','3','0')
#define ERRCODE_SP_WINDOW_TOO_SHORT		MAKE_SQLSTATE('S','P','0','3','1')
#define ERRCODE_SP_INVALID_FLOW_ROLE	MAKE_SQLSTATE('S','P','0','3','2')
#define ERRCODE_SP_KEY_FROM_FILE		MAKE_SQLSTATE('S','P','0','3','3')
#define ERRCODE_SP_BAD_USER_TRIGGER		MAKE_SQLSTATE('S','P','0','3','4')
#define ERRCODE_SP_TRIGGERS_NOT_RESTORED	MAKE_SQLSTATE('S','P','0','3','5')

/* webhooks: each way an incoming event can be refused */
#define ERRCODE_SP_NO_SIGNATURE			MAKE_SQLSTATE('S','P','0','2','0')
#define ERRCODE_SP_MALFORMED_SIGNATURE	MAKE_SQLSTATE('S','P','0','2','1')
#define ERRCODE_SP_NO_V1_SIGNATURE		MAKE_SQLSTATE('S','P','0','2','2')
#define ERRCODE_SP_STALE_SIGNATURE		MAKE_SQLSTATE('S','P','0','2','3')
#define ERRCODE_SP_FUTURE_SIGNATURE		MAKE_SQLSTATE('S','P','0','2','4')
#define ERRCODE_SP_NO_WEBHOOK_SECRET	MAKE_SQLSTATE('S','P','0','2','5')
#define ERRCODE_SP_BAD_SIGNATURE		MAKE_SQLSTATE('S','P','0','2','6')
#define ERRCODE_SP_PAYLOAD_NOT_JSON		MAKE_SQLSTATE('S','P','0','2','7')
#define ERRCODE_SP_NOT_AN_EVENT			MAKE_SQLSTATE('S','P','0','2','8')
#define ERRCODE_SP_LIVEMODE_MISMATCH	MAKE_SQLSTATE('S','P','0','2','9')
#define ERRCODE_SP_INVALID_ENDPOINT		MAKE_SQLSTATE('S','P','0','2','A')
#define ERRCODE_SP_PAYLOAD_TOO_LARGE	MAKE_SQLSTATE('S','P','0','2','B')

#endif							/* STRIPEPAY_H */
