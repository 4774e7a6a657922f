-- Argo CD health of a kubeforge.dev DataIngest, read from its kstatus conditions.
-- Progressing while it provisions storage, crawls, deduplicates and publishes; Healthy once its
-- dataset is published (Ready); Degraded when it failed or is stalled (e.g. its storage
-- credentials are missing). Conditions written for an older generation say nothing about the
-- current spec: then it is Progressing until the operator catches up.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function holds(kind)
  local c = condition(kind)
  return c ~= nil and c.status == "True"
end

local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local summary = (obj.status.phase or "Unknown") .. " (" .. (ready.reason or "") .. ")"
if ready.message ~= nil and ready.message ~= "" then
  summary = summary .. ": " .. ready.message
end

if holds("Failed") or holds("Stalled") then
  hs.status = "Degraded"
elseif ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
hs.message = summary
return hs
