-- Plain GETs of the URL's path (used for /health while /predict is saturated).
-- Usage: wrk ... -s get.lua http://127.0.0.1:PORT/health
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

done = common.done
