-- wrk script for clerk-gateway's benchmark.
--
-- Every request is a small GraphQL POST carrying the bearer token of one of N distinct users
-- (one token per line in the file named by BENCH_TOKENS). Each wrk thread walks the list from its
-- own starting point, so consecutive requests come from different users, as with real traffic.
-- The requests are pre-formatted in init(): request() then costs a table lookup, which keeps the
-- load generator's own CPU use (it shares the machine with the targets) as low as wrk allows.
--
-- done() prints one line "BENCH_JSON {...}" that bench.py parses: request count, duration,
-- error counts and latency percentiles in microseconds.
--
--   BENCH_TOKENS=tokens.txt wrk -t2 -c64 -d15s --latency -s tokens.lua http://127.0.0.1:8080/v1/graphql

local tokens_file = os.getenv("BENCH_TOKENS")
local body = os.getenv("BENCH_BODY") or '{"query":"query { viewer { id } }"}'

local prepared = {}
local count = 0
local position = 0

local next_thread_id = 0

function setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

function init(args)
  if tokens_file == nil then
    error("BENCH_TOKENS must name the token file")
  end
  for line in io.lines(tokens_file) do
    if #line > 0 then
      count = count + 1
      prepared[count] = wrk.format("POST", wrk.path, {
        ["Authorization"] = "Bearer " .. line,
        ["Content-Type"] = "application/json",
      }, body)
    end
  end
  if count == 0 then
    error("no tokens in " .. tokens_file)
  end
  -- Spread the threads over the list (thread_id is set by setup(); 0 when absent).
  position = ((thread_id or 0) * 499) % count
end

function request()
  position = position % count + 1
  return prepared[position]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p99_9":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
