-- Shared by the benchmark scripts: read request rows, cycle pre-built requests, and print
-- wrk's summary and latency percentiles as one JSON line (prefixed WRK_JSON) for the harness.
local M = {}

-- Rows are "f1,f2,f3,f4" lines written by benchmarks/models.py.
function M.read_rows(path)
  local rows = {}
  for line in io.lines(path) do
    if #line > 0 then
      rows[#rows + 1] = line
    end
  end
  assert(#rows > 0, "no rows in " .. path)
  return rows
end

-- Pre-format every request once in init(); request() then only hands out strings, so the
-- load generator spends its CPU on sockets, not on building bodies.
function M.post_requests(path, bodies)
  local headers = { ["Content-Type"] = "application/json" }
  local requests = {}
  for k = 1, #bodies do
    requests[k] = wrk.format("POST", path, headers, bodies[k])
  end
  return requests
end

function M.cycler(requests)
  local i = 0
  return function()
    i = i % #requests + 1
    return requests[i]
  end
end

function M.done(summary, latency, requests)
  local e = summary.errors
  local pct = {}
  for _, q in ipairs({ 50, 75, 90, 95, 99, 99.9 }) do
    pct[#pct + 1] = string.format('"%s": %d', tostring(q), latency:percentile(q))
  end
  io.write(string.format(
    '\nWRK_JSON {"duration_us": %d, "requests": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, '
      .. '"percentiles": {%s}}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(pct, ", ")
  ))
end

return M
