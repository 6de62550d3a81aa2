-- wrk script: POST an OpenAI chat request, then print one JSON summary line.
-- The key and model come from the environment so the harness never writes secrets to disk
-- and the same script drives nginx, the passthrough and the gateway.
local key = os.getenv("BENCH_KEY") or "sk-bench"
local model = os.getenv("BENCH_MODEL") or "bench-upstream"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are terse."},'
  .. '{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":32,"temperature":0}'

-- One machine-readable line (prefixed so the harness can find it among wrk's own output);
-- times from wrk are microseconds, converted to milliseconds here.
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_s":%.6f,"rps":%.2f,"p50_ms":%.4f,"p90_ms":%.4f,'
      .. '"p99_ms":%.4f,"mean_ms":%.4f,"max_ms":%.4f,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, latency.max / 1000, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
end
