// stripe-sync-engine's webhook endpoint, as its own server image serves it:
// POST /webhooks with the raw body and the Stripe-Signature header handed to
// StripeSync.processWebhook(), 200 {"received":true} once it has returned.
// Benchmark-only (bench/relay/run.sh); no part of stripepay.
//
// Environment: SSE_DATABASE_URL, SSE_WEBHOOK_SECRET, SSE_PORT, SSE_POOL_MAX.
import http from 'node:http'
import { createRequire } from 'node:module'
import Stripe from 'stripe'

// its CommonJS build: the ES module build's runMigrations uses __dirname,
// which ES modules do not have, and fails
const { StripeSync, runMigrations } = createRequire(import.meta.url)('@supabase/stripe-sync-engine')

const databaseUrl = process.env.SSE_DATABASE_URL
const schema = 'stripe'

// runMigrations logs its failure and returns: make it fatal
let migrationError = null
const logger = {
  info() {}, warn() {}, debug() {},
  error(obj, msg) { migrationError = msg || String(obj); console.error(msg || '', obj) },
}
await runMigrations({ databaseUrl, schema, logger })
if (migrationError) process.exit(1)

const sync = new StripeSync({
  poolConfig: { connectionString: databaseUrl, max: Number(process.env.SSE_POOL_MAX || 10) },
  schema,
  stripeSecretKey: 'sk_test_bench_never_used',
  stripeWebhookSecret: process.env.SSE_WEBHOOK_SECRET,
  stripeApiVersion: '2020-08-27',
})
// The events of the bench are final (payment_intent.succeeded), which
// processWebhook stores without asking Stripe.  Should it ask all the same,
// the call goes to a closed local port and fails the request: never out.
sync.stripe = new Stripe('sk_test_bench_never_used', {
  host: '127.0.0.1', port: 9, protocol: 'http', maxNetworkRetries: 0,
})

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/webhooks') {
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end('{"error":"not found"}')
    return
  }
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', async () => {
    try {
      await sync.processWebhook(Buffer.concat(chunks), req.headers['stripe-signature'])
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"received":true}')
    } catch (err) {
      const status = err?.type === 'StripeSignatureVerificationError' ? 400 : 500
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: String(err?.message || err).slice(0, 200) }))
      if (status === 500) console.error(`webhook failed: ${err?.message || err}`)
    }
  })
})
server.keepAliveTimeout = 30000
server.listen(Number(process.env.SSE_PORT), '127.0.0.1', () => {
  console.error(`stripe-sync-engine listening on 127.0.0.1:${server.address().port}`)
})
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => sync.postgresClient.pool.end().then(() => process.exit(0))))
}
