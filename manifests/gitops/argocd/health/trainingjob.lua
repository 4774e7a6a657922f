-- Argo CD health of a kubeforge.dev TrainingJob, read from its kstatus conditions.
-- Like a batch Job in Argo CD: Progressing while it waits, starts, runs or restarts; Healthy once
-- it has succeeded; Degraded when it failed or is stalled (e.g. ImagePullBackOff, Unschedulable);
-- Suspended while suspended. Conditions the operator wrote for an older generation say nothing
-- about the current spec: then it is Progressing until the operator catches up.
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
if obj.status.progress ~= nil and obj.status.progress.step ~= nil then
  summary = summary .. "; step " .. obj.status.progress.step
end

if holds("Failed") or holds("Stalled") then
  hs.status = "Degraded"
elseif holds("Suspended") then
  hs.status = "Suspended"
elseif holds("Succeeded") then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
hs.message = summary
return hs
