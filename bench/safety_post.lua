-- wrk script for bench/safety_bench.py: a ~1 KB user prompt, different on every request (a counter in
-- the text) so the safety filters scan new text each time instead of answering from their cache.
-- Headers, key, model and the JSON summary line come from bench/post.lua; only the body changes here.
dofile(os.getenv("BENCH_LUA_DIR") .. "/post.lua")
local model = os.getenv("BENCH_MODEL") or "bench-upstream"
local fixed = os.getenv("BENCH_FIXED") == "1"
local prose = "Please summarise the following update for the leadership team and suggest two next steps. "
  .. "The migration of the billing service to the new region finished on schedule, with one incident during "
  .. "the cut-over when a batch job retried twice and produced duplicate invoices for a handful of customers. "
  .. "Finance has already reversed them and the support team contacted every affected account. Customer "
  .. "satisfaction for the quarter held steady, although response times in the second week rose because two "
  .. "agents were out. The roadmap for next quarter keeps the reporting revamp and the self-service refunds "
  .. "feature, and pushes the mobile redesign by a month so the team can finish the accessibility audit. "
  .. "Budget is on track; cloud spend fell after we right-sized the analytics cluster. Questions can go to "
  .. "jordan.reyes@northwind-corp.com before Friday. Risks: the vendor contract renewal and hiring for the "
  .. "data platform team, where two offers are still open and one candidate asked for more time. "

-- BENCH_RUN: unique per wrk run, so a later run does not find the earlier run's prompts in the cache.
local run = os.getenv("BENCH_RUN") or "0"
local counter = 0

request = function()
  counter = counter + 1
  local tag = fixed and "" or (" Reference " .. run .. "-" .. counter .. ".")
  local body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are terse."},'
    .. '{"role":"user","content":"' .. prose .. tag .. '"}],"max_tokens":32}'
  return wrk.format(nil, nil, nil, body)
end
