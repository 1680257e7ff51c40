-- Argo CD health of the exomatrix.dev kinds (SpaceRoomLink, MatrixUser,
-- ExoSource, MatrixSpace). The operator writes kstatus conditions, read here
-- as Flux and kpt read them:
--   Stalled=True      a person must act (conflict, guard, refused credentials)  -> Degraded
--   Reconciling=True  work under way, or waiting for a Secret GitOps may create -> Progressing
--   Ready=True        converged, or suspended as told                          -> Healthy
-- Argo CD opens no string library for health scripts: plain comparisons only.
local hs = {}
if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "being deleted"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "the operator has not seen the latest spec yet"
  return hs
end
local ready = nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Stalled" and c.status == "True" then
    hs.status = "Degraded"
    hs.message = c.message
    return hs
  end
  if c.type == "Reconciling" and c.status == "True" then
    hs.status = "Progressing"
    hs.message = c.message
    return hs
  end
  if c.type == "Ready" then
    ready = c
  end
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = ready.message
else
  hs.message = "waiting for the operator"
end
return hs
