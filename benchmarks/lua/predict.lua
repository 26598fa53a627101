-- Single-row POSTs: {"features": [f1, f2, f3, f4]}, one distinct row per request.
-- Usage: wrk ... -s predict.lua URL -- ROWS_CSV PATH   (PATH e.g. /predict?model=logreg)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

function init(args)
  local rows = common.read_rows(args[1])
  local bodies = {}
  for k = 1, #rows do
    bodies[k] = '{"features": [' .. rows[k] .. ']}'
  end
  request = common.cycler(common.post_requests(args[2], bodies))
end

done = common.done
