-- Open Inference Protocol (V2) single-row POSTs, as MLServer expects them, asking for the
-- class probabilities (the same work as modelserve's /predict).
-- Usage: wrk ... -s v2_infer.lua URL -- ROWS_CSV PATH   (PATH e.g. /v2/models/forest/infer)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

function init(args)
  local rows = common.read_rows(args[1])
  local bodies = {}
  for k = 1, #rows do
    bodies[k] = '{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", '
      .. '"data": [' .. rows[k] .. ']}], "outputs": [{"name": "predict_proba"}]}'
  end
  request = common.cycler(common.post_requests(args[2], bodies))
end

done = common.done
