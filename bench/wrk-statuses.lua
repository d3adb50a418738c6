-- wrk script for bench/run.sh (s3 suite): count the responses by status code, so that
-- the script can check that every blob GET was a 200 (redirect = false) or a 307
-- (redirect = true). wrk itself only counts statuses above 399 ("Non-2xx or 3xx"), so
-- a 200 where a 307 was expected (or the reverse) would pass unnoticed.
-- Prints one line per status code after the run: "status CODE COUNT".
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    statuses = {}
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        for code, n in pairs(t:get("statuses")) do
            total[code] = (total[code] or 0) + n
        end
    end
    for code, n in pairs(total) do
        io.write(string.format("status %d %d\n", code, n))
    end
end
