-- wrk script for bench/run.py: requests spread over a list of targets.
--
-- BENCH_TARGETS names a file with one target per line: host, bearer token and path,
-- separated by tabs. BENCH_PICK is "random" (each request picks a target uniformly at
-- random) or "roundrobin" (each thread walks the list from its own offset, so that a
-- run of at least #targets requests touches every target). done() prints one line
-- "BENCH_JSON {...}" with the counts and wrk's latency percentiles in microseconds.
--
-- BENCH_METHOD is GET (default) or POST. A POST sends BENCH_BODY as JSON with every "%s"
-- in it replaced by a key unique to the request (BENCH_RUN, the thread and a counter), so
-- that no two requests write the same row; BENCH_IDEMPOTENCY=1 also sends that key as
-- the Idempotency-Key header. Each POST is formatted when sent: a request made once and
-- repeated would be one write replayed.

local pick = os.getenv("BENCH_PICK") or "random"
local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY") or ""
local idempotency = os.getenv("BENCH_IDEMPOTENCY") == "1"
local run_id = os.getenv("BENCH_RUN") or "run"
local sent = 0
local targets = {}
local requests = {}
local counter = 0

local thread_count = 0
function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local function load(path)
  local list = {}
  for line in io.lines(path) do
    local host, token, target_path = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
    if host then
      list[#list + 1] = { host = host, token = token, path = target_path }
    end
  end
  return list
end

function init(args)
  local path = os.getenv("BENCH_TARGETS")
  if not path then
    error("BENCH_TARGETS is not set")
  end
  targets = load(path)
  if #targets == 0 then
    error("no targets in " .. path)
  end
  if method == "GET" then
    for i, t in ipairs(targets) do
      requests[i] = wrk.format("GET", t.path, { ["Host"] = t.host, ["Authorization"] = "Bearer " .. t.token })
    end
  end
  local index = tonumber(thread_index) or 0
  local total = tonumber(os.getenv("BENCH_THREADS") or "1")
  math.randomseed(os.time() * 7919 + index * 104729)
  counter = math.floor(#targets * index / total)
end

local function post(t)
  sent = sent + 1
  local key = run_id .. "-" .. tostring(thread_index or 0) .. "-" .. sent
  local headers = {
    ["Host"] = t.host,
    ["Authorization"] = "Bearer " .. t.token,
    ["Content-Type"] = "application/json",
  }
  if idempotency then
    headers["Idempotency-Key"] = key
  end
  return wrk.format("POST", t.path, headers, (body:gsub("%%s", key)))
end

function request()
  local i
  if pick == "roundrobin" then
    counter = counter % #targets + 1
    i = counter
  else
    i = math.random(#targets)
  end
  if method == "POST" then
    return post(targets[i])
  end
  return requests[i]
end

function done(summary, latency, _requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "errors": {"connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout
  ))
end
