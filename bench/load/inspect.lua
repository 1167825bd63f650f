-- wrk script: every request uploads one image to POST /v1/inspections?wait=true (multipart), so a
-- request's latency is the whole inspection as a line client sees it.
-- Environment: ZEROQC_KEY (write scope), ZEROQC_IMAGE (the file), ZEROQC_PRODUCT.
local f = assert(io.open(os.getenv("ZEROQC_IMAGE"), "rb"))
local image = f:read("*a")
f:close()
local boundary = "zeroqc-load-boundary-7d1c"
wrk.method = "POST"
wrk.path = "/v1/inspections?wait=true"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("ZEROQC_KEY")
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n" ..
  'Content-Disposition: form-data; name="product"\r\n\r\n' .. os.getenv("ZEROQC_PRODUCT") .. "\r\n" ..
  "--" .. boundary .. "\r\n" ..
  'Content-Disposition: form-data; name="image"; filename="part.png"\r\nContent-Type: image/png\r\n\r\n' ..
  image .. "\r\n--" .. boundary .. "--\r\n"

local codes = {}
function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  io.write(string.format("requests %d in %.1f s: %.2f req/s; latency p50 %.0f ms, p90 %.0f ms, p99 %.0f ms; errors %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
