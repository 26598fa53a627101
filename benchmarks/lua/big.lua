-- The largest body the limits accept: one {"batch": [[...], ...]} of about SIZE bytes.
-- Usage: wrk ... -s big.lua URL -- SIZE PATH   (PATH e.g. /predict-batch)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

function init(args)
  local size = tonumber(args[1])
  local row = "[5.1, 3.5, 1.4, 0.2]"
  local count = math.floor((size - 16) / (#row + 2))
  local rows = {}
  for k = 1, count do
    rows[k] = row
  end
  local body = '{"batch": [' .. table.concat(rows, ", ") .. "]}"
  request = common.cycler(common.post_requests(args[2], { body }))
end

done = common.done
