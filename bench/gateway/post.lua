-- wrk script: POST a chat completion, stop each thread after its share of REQUESTS, print percentiles.
-- env: BODY_FILE (JSON body), AUTH (bearer token, optional), TENANT (X-Tenant-ID, optional),
--      REQUESTS (total, split evenly over threads), THREADS, DONE_FILE (a line per finished thread)
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local auth = os.getenv("AUTH")
  if auth and auth ~= "" then wrk.headers["Authorization"] = "Bearer " .. auth end
  local tenant = os.getenv("TENANT")
  if tenant and tenant ~= "" then wrk.headers["X-Tenant-ID"] = tenant end
  limit = math.floor(tonumber(os.getenv("REQUESTS")) / tonumber(os.getenv("THREADS")))
  done_count = 0
  bad = 0
end

function response(status, headers, body)
  done_count = done_count + 1
  if status ~= 200 then bad = bad + 1 end
  if done_count == limit then
    -- wrk itself runs for its -d duration; tell the runner this thread is done so it can SIGINT wrk
    local f = io.open(os.getenv("DONE_FILE"), "a")
    f:write("done\n")
    f:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local bad_total = 0
  for _, t in ipairs(threads) do bad_total = bad_total + (t:get("bad") or 0) end
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p95_us=%d p99_us=%d non200=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    bad_total, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
    + summary.errors.timeout))
end
