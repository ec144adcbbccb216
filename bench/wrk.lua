-- The request of one bench/api.py scenario, for wrk, and its results as one JSON line.
--
-- bench/api.py sets, in wrk's environment:
--   BENCH_METHOD   GET, POST, ...
--   BENCH_BODY     the request body (may be empty)
--   BENCH_HEADERS  "Name: value" lines
--   BENCH_FRESH    when set, the name of a query parameter added to every request with a
--                  value new to it (BENCH_RUN, new to each run of wrk, and a count): a new
--                  CallSid for every hook, say. Otherwise the request is built once and
--                  sent as is.

local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY") or ""
local headers = os.getenv("BENCH_HEADERS") or ""

wrk.method = method
if body ~= "" then
   wrk.body = body
end
for line in headers:gmatch("[^\n]+") do
   local name, value = line:match("^([^:]+):%s*(.*)$")
   if name then
      wrk.headers[name] = value
   end
end

local fresh = os.getenv("BENCH_FRESH")
if fresh then
   local counter = 0
   local prefix = "&" .. fresh .. "=" .. (os.getenv("BENCH_RUN") or "run") .. "-"
   function request()
      counter = counter + 1
      local path = wrk.path
      if not path:find("?", 1, true) then
         path = path .. "?"
      end
      return wrk.format(nil, path .. prefix .. counter)
   end
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      '\nBENCH-RESULT {"requests":%d,"duration_us":%d,"connect_errors":%d,' ..
      '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
      '"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, errors.connect, errors.read, errors.write,
      errors.status, errors.timeout, latency:percentile(50), latency:percentile(99),
      latency.mean))
end
