-- The largest body the limits accept: ROWS rows in {"batch": [...]}, padded with spaces
-- (valid JSON whitespace) to SIZE bytes.
-- Usage: wrk ... -s big.lua URL -- SIZE PATH ROWS   (PATH e.g. /predict-batch)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

function init(args)
  local size = tonumber(args[1])
  local count = tonumber(args[3])
  local rows = {}
  for k = 1, count do
    rows[k] = "[5.1, 3.5, 1.4, 0.2]"
  end
  local body = '{"batch": [' .. table.concat(rows, ", ") .. "]"
  body = body .. string.rep(" ", math.max(0, size - #body - 1)) .. "}"
  request = common.cycler(common.post_requests(args[2], { body }))
end

done = common.done
