-- wrk script for bench/relay: sends every pre-signed event of a phase exactly
-- once, then stops wrk and prints the phase's figures.
--
-- Environment: BENCH_SIGNED  the signed bodies (signed.py's format)
--              BENCH_COUNT   how many there are
-- Run with one wrk thread (-t1): the connections share one list, so each
-- body goes out once whatever the number of connections.
local ffi = require("ffi")
ffi.cdef [[
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct bench_timespec *ts);
int kill(int pid, int sig);
int getpid(void);
]]

local function now_us()
	local ts = ffi.new("struct bench_timespec")
	ffi.C.clock_gettime(1, ts)	-- CLOCK_MONOTONIC
	return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local threads = {}
function setup(thread)
	table.insert(threads, thread)
end

local reqs, total, sent
-- globals: done() reads them with thread:get
answered, not_ok, first_us, last_us = 0, 0, 0, 0
local checked = false
local path = wrk.path

function init(args)
	local file = assert(os.getenv("BENCH_SIGNED"), "BENCH_SIGNED is not set")
	local f = assert(io.open(file, "rb"))
	reqs = {}
	while true do
		local line = f:read("*l")
		if not line then break end
		local sig, len = line:match("^(%S+)\t(%d+)$")
		local body = f:read(tonumber(len))
		reqs[#reqs + 1] = wrk.format("POST", path, {
			["Content-Type"] = "application/json; charset=utf-8",
			["Stripe-Signature"] = sig,
		}, body)
	end
	f:close()
	total = #reqs
	assert(total == tonumber(os.getenv("BENCH_COUNT")), "signed bodies: " .. total)
	sent = 0
	first_us, last_us = 0, 0
end

function request()
	-- wrk calls request() once before the run, to check what it returns:
	-- that call must not use up an event
	if not checked then
		checked = true
		return reqs[1]
	end
	sent = sent + 1
	if sent == 1 then first_us = now_us() end
	return reqs[sent]
end

-- every body is out: a connection that asks for more waits past the end of
-- the run (a request to answer would take CPU from the server under test)
function delay()
	if sent >= total then return 3600000 end
	return 0
end

function response(status, headers, body)
	answered = answered + 1
	if status ~= 200 then not_ok = not_ok + 1 end
	if answered == total then
		last_us = now_us()
		-- wrk would sleep out its whole -d: SIGINT ends the run now
		ffi.C.kill(ffi.C.getpid(), 2)
		wrk.thread:stop()
	end
end

function done(summary, latency, requests)
	local t = threads[1]
	local n = t:get("answered")
	local secs = (t:get("last_us") - t:get("first_us")) / 1e6
	local e = summary.errors
	io.write(string.format(
		"BENCH answered=%d not_ok=%d requests=%d seconds=%.3f rate=%.1f p50_ms=%.3f p99_ms=%.3f "
		.. "max_ms=%.3f errors=%d\n",
		n, t:get("not_ok"), summary.requests, secs, secs > 0 and n / secs or 0,
		latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
		e.connect + e.read + e.write + e.timeout))
end
