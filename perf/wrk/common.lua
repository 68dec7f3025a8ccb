-- Shared by every wrk scenario: the run's data (env vars and files written by the runner), one builder
-- per request kind, and done(), which prints the figures the runner reads as one JSON line.
local M = {}

local function env(name, default)
  local value = os.getenv(name)
  if value == nil or value == "" then return default end
  return value
end

M.posts = tonumber(env("PERF_POSTS", "1"))      -- post ids 1..posts were seeded
M.users = tonumber(env("PERF_USERS", "1"))      -- user ids 1..users, emails user<id>@example.com
M.pages = tonumber(env("PERF_PAGES", "1"))      -- deepest page of 20 that ?page= may ask for
M.seed = tonumber(env("PERF_SEED", "1"))
M.nonce = env("PERF_NONCE", "w")                -- makes sign-up emails unique across runs
M.password = env("PERF_PASSWORD", "perf-password")
local data_dir = env("PERF_DATA", ".")

local function lines(name)
  local out = {}
  local file = io.open(data_dir .. "/" .. name, "r")
  if file then
    for line in file:lines() do
      if line ~= "" then out[#out + 1] = line end
    end
    file:close()
  end
  return out
end

local tags, tokens, cursors = {}, {}, {}
local counter, thread_number = 0, 0

-- setup() runs in the main Lua state once per thread; init() in each thread's own state.
function M.setup(thread)
  counter = counter + 1
  thread:set("perf_thread", counter)
end

function M.init(args)
  thread_number = perf_thread or 0
  math.randomseed(M.seed * 1000 + thread_number)
  tags, tokens, cursors = lines("tags.txt"), lines("tokens.txt"), lines("cursors.txt")
end

local WORDS = {"lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
  "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "minim"}

local function text(length)
  local out, size = {}, 0
  while size < length do
    local word = WORDS[math.random(#WORDS)]
    out[#out + 1] = word
    size = size + #word + 1
  end
  return table.concat(out, " ")
end

local JSON = {["Content-Type"] = "application/json"}

local function authed()
  return {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]}
end

local function pick(list) return list[math.random(#list)] end

M.req = {}
function M.req.health() return wrk.format("GET", "/healthz") end
function M.req.user() return wrk.format("GET", "/api/users/" .. math.random(M.users)) end
function M.req.post() return wrk.format("GET", "/api/posts/" .. math.random(M.posts)) end
function M.req.list() return wrk.format("GET", "/api/posts") end
function M.req.list_page() return wrk.format("GET", "/api/posts?page=" .. math.random(M.pages)) end
function M.req.list_cursor() return wrk.format("GET", "/api/posts?cursor=" .. pick(cursors)) end
function M.req.list_tag() return wrk.format("GET", "/api/posts?tag=" .. pick(tags)) end
function M.req.user_posts() return wrk.format("GET", "/api/users/" .. math.random(M.users) .. "/posts") end
function M.req.tags() return wrk.format("GET", "/api/tags") end

function M.req.login()
  local body = string.format('{"email":"user%d@example.com","password":"%s"}', math.random(M.users), M.password)
  return wrk.format("POST", "/api/auth/login", JSON, body)
end

local signups = 0
function M.req.signup()
  signups = signups + 1
  local name = string.format("w%s_%d_%d", M.nonce, thread_number, signups)
  local body = string.format('{"email":"%s@example.com","username":"%s","password":"%s"}', name, name, M.password)
  return wrk.format("POST", "/api/users", JSON, body)
end

function M.req.comment()
  local body = '{"body":"' .. text(200) .. '"}'
  return wrk.format("POST", "/api/posts/" .. math.random(M.posts) .. "/comments", authed(), body)
end

function M.req.create_post()
  local chosen, names = {}, {}
  for _ = 1, math.random(3) do chosen[pick(tags)] = true end
  for name in pairs(chosen) do names[#names + 1] = '"' .. name .. '"' end
  local body = string.format('{"title":"%s","body":"%s","tags":[%s]}', text(60), text(1500), table.concat(names, ","))
  return wrk.format("POST", "/api/posts", authed(), body)
end

-- The mixed workload: 90 % reads of every kind, 10 % authenticated writes (comments and posts).
M.MIX = {
  {30, M.req.post}, {15, M.req.list}, {10, M.req.list_page}, {10, M.req.list_cursor}, {10, M.req.list_tag},
  {10, M.req.user_posts}, {5, M.req.tags}, {8, M.req.comment}, {2, M.req.create_post},
}

function M.req.mixed()
  local roll = math.random(100)
  for _, entry in ipairs(M.MIX) do
    roll = roll - entry[1]
    if roll <= 0 then return entry[2]() end
  end
  return M.MIX[1][2]()
end

-- Runs in the main state after the run: every figure the report needs, as one JSON line.
function M.done(summary, latency, requests)
  local points = {}
  for _, p in ipairs({50, 75, 90, 95, 99, 99.9, 99.99}) do
    points[#points + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format('PERF_RESULT {"tool":"wrk","requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"percentiles":{%s}}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(points, ",")))
end

-- Wires a scenario file: `return require("common").scenario("post")` style, see post.lua.
function M.scenario(kind)
  setup = M.setup
  init = M.init
  done = M.done
  request = M.req[kind]
  return M
end

return M
