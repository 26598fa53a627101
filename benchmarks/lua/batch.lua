-- Batch POSTs: {"batch": [[...], ...]} with N rows each (consecutive slices of the rows file).
-- Usage: wrk ... -s batch.lua URL -- ROWS_CSV PATH N   (PATH e.g. /predict-batch?model=logreg)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

function init(args)
  local rows = common.read_rows(args[1])
  local n = tonumber(args[3])
  local bodies = {}
  for start = 1, #rows - n + 1, n do
    local parts = {}
    for k = start, start + n - 1 do
      parts[#parts + 1] = "[" .. rows[k] .. "]"
    end
    bodies[#bodies + 1] = '{"batch": [' .. table.concat(parts, ", ") .. "]}"
  end
  request = common.cycler(common.post_requests(args[2], bodies))
end

done = common.done
