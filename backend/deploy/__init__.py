"""`atrium deploy`: the manifests (Kustomize base + one overlay per deployment group) and the nginx routing of the
local topology, both rendered from one routing table computed from tenants.yaml (table.py)."""
