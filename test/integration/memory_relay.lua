-- wrk script for test/integration/memory.py: a mix of requests to
-- stripepay-relay, stopping each thread once it has its share of answers.
--
--   wrk -t THREADS ... -s memory_relay.lua URL -- TOTAL DIR FIRSTS THREADS
--
-- DIR holds the raw requests memory.py wrote, NUL-separated: FIRSTS (first
-- deliveries, each sent once, split between the threads), memory-dup.req,
-- memory-badsig.req, memory-404.req and memory-healthz.req.  Every hundred
-- requests a thread sends 1 first delivery (a duplicate once its share is
-- sent), 30 duplicates, 20 bad signatures, 39 wrong paths and 10 /healthz.
-- Requests sent after a thread's share of answers is in (the connections
-- still in flight when it stops) are wrong paths, which change nothing.
-- wrk itself runs for its whole -d duration whatever its threads do: a
-- thread that stops writes DIR/memory-wrk-<thread>.done, and memory.py
-- interrupts wrk once every thread has.  done() then prints one line:
-- "memory-relay: requests=N first=N ... s200=N ...".

local threads = {}

function setup(thread)
	thread:set("tid", #threads)
	table.insert(threads, thread)
end

local function load(path)
	local f = assert(io.open(path, "rb"))
	local data = f:read("*a")
	f:close()
	local list, pos = {}, 1
	while pos <= #data do
		local nul = string.find(data, "\0", pos, true)
		table.insert(list, string.sub(data, pos, (nul or #data + 1) - 1))
		pos = (nul or #data) + 1
	end
	return list
end

local quota, answered, issued, donefile, primed = 0, 0, 0, nil, true
local firsts, next_first = {}, 1
local kinds = {}
local counts = {}
local cycle = {}

function init(args)
	local total, dir, nthreads = tonumber(args[1]), args[2], tonumber(args[4])
	donefile = dir .. "/memory-wrk-" .. tid .. ".done"
	-- wrk calls the first thread's request() once to check the script, and
	-- never sends what it returns
	primed = tid ~= 0
	quota = math.floor(total / nthreads)
	if tid == 0 then
		quota = quota + total - quota * nthreads
	end
	-- this thread's slice of the first deliveries: every nthreads-th one
	for i, r in ipairs(load(dir .. "/" .. args[3])) do
		if (i - 1) % nthreads == tid then
			table.insert(firsts, r)
		end
	end
	kinds.duplicate = load(dir .. "/memory-dup.req")
	kinds.badsig = load(dir .. "/memory-badsig.req")
	kinds.notfound = load(dir .. "/memory-404.req")
	kinds.healthz = load(dir .. "/memory-healthz.req")
	for s = 0, 99 do
		local d = s % 10
		if s == 0 then
			cycle[s] = "first"
		elseif d == 5 then
			cycle[s] = "healthz"
		elseif d == 1 or d == 3 or d == 7 then
			cycle[s] = "duplicate"
		elseif d == 2 or d == 8 then
			cycle[s] = "badsig"
		else
			cycle[s] = "notfound"
		end
	end
end

local function pick(kind)
	local list = kinds[kind]
	counts[kind] = (counts[kind] or 0) + 1
	return list[1 + counts[kind] % #list]
end

function request()
	if not primed then
		primed = true
		return kinds.notfound[1]
	end
	local slot = issued % 100
	issued = issued + 1
	if issued > quota then
		return kinds.notfound[1]
	end
	local kind = cycle[slot]
	if kind == "first" then
		if next_first <= #firsts then
			counts.first = (counts.first or 0) + 1
			next_first = next_first + 1
			return firsts[next_first - 1]
		end
		kind = "duplicate"
	end
	return pick(kind)
end

function response(status, headers, body)
	if answered >= quota then
		return
	end
	answered = answered + 1
	local key = "s" .. status
	counts[key] = (counts[key] or 0) + 1
	if answered == quota then
		local out = {"requests=" .. answered}
		for k, v in pairs(counts) do
			table.insert(out, k .. "=" .. v)
		end
		report = table.concat(out, " ")
		wrk.thread:stop()
		local f = assert(io.open(donefile, "w"))
		f:write(report)
		f:close()
	end
end

function done(summary, latency, requests)
	local total = {}
	for _, thread in ipairs(threads) do
		local line = thread:get("report")
		for k, v in string.gmatch(line or "", "(%w+)=(%d+)") do
			total[k] = (total[k] or 0) + tonumber(v)
		end
	end
	local keys = {}
	for k in pairs(total) do
		table.insert(keys, k)
	end
	table.sort(keys)
	local out = {}
	for _, k in ipairs(keys) do
		table.insert(out, k .. "=" .. total[k])
	end
	io.write("memory-relay: " .. table.concat(out, " ") .. "\n")
end
