-- wrk script for bench/run.py: GET requests spread over a list of targets.
--
-- BENCH_TARGETS names a file with one target per line: host, bearer token and path,
-- separated by tabs. BENCH_PICK is "random" (each request picks a target uniformly at
-- random) or "roundrobin" (each thread walks the list from its own offset, so that a
-- run of at least #targets requests touches every target). done() prints one line
-- "BENCH_JSON {...}" with the counts and wrk's latency percentiles in microseconds.

local pick = os.getenv("BENCH_PICK") or "random"
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
  for i, t in ipairs(targets) do
    requests[i] = wrk.format("GET", t.path, { ["Host"] = t.host, ["Authorization"] = "Bearer " .. t.token })
  end
  local index = tonumber(thread_index) or 0
  local total = tonumber(os.getenv("BENCH_THREADS") or "1")
  math.randomseed(os.time() * 7919 + index * 104729)
  counter = math.floor(#targets * index / total)
end

function request()
  if pick == "roundrobin" then
    counter = counter % #targets + 1
    return requests[counter]
  end
  return requests[math.random(#targets)]
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
