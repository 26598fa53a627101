-- POSTs of one pre-built body read from a file (JSON, or a V2 binary-tensor body).
-- Usage: wrk ... -s body.lua URL -- BODY_FILE PATH [HEADER_LENGTH]
-- With HEADER_LENGTH the body is the Open Inference Protocol's binary form: that many bytes
-- of JSON header, then the tensors' raw bytes (Inference-Header-Content-Length).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  local headers = { ["Content-Type"] = "application/json" }
  if args[3] then
    headers["Content-Type"] = "application/octet-stream"
    headers["Inference-Header-Content-Length"] = args[3]
  end
  request = common.cycler({ wrk.format("POST", args[2], headers, body) })
end

done = common.done
