#!/usr/bin/env bash
# Check the deployment files without a Docker engine (none runs on CI):
# the alert rules with promtool (syntax, then their unit tests), and the
# compose stack's structure (every service it depends on exists, every
# rushhour role runs, Prometheus scrapes each of them and loads the rules).
#
#   scripts/check-deploy.sh        # run by .ci/run
set -euo pipefail
cd "$(dirname "$0")/.."

promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/tests/alerts_test.yml

python3 - <<'PY'
import sys, yaml

def fail(msg):
    print(f"deploy check: {msg}", file=sys.stderr)
    sys.exit(1)

compose = yaml.safe_load(open("deploy/docker-compose.yml"))
services = compose.get("services") or fail("no services in deploy/docker-compose.yml")
for name, svc in services.items():
    deps = svc.get("depends_on") or {}
    for dep in deps:
        if dep not in services:
            fail(f"service {name} depends on {dep}, which is not defined")
roles = {"migrate", "api", "worker", "scheduler"}
commands = {name: (svc.get("command") or [None])[0] for name, svc in services.items()}
for role in roles:
    if role not in services or commands[role] != role:
        fail(f"the stack must run `rushhour {role}` as service {role}")
env = services["api"].get("environment") or {}
for secret in ("RUSHHOUR__WEBHOOKS__SECRET", "RUSHHOUR__AUTH__SESSION_KEY"):
    value = str(env.get(secret, ""))
    if ":?" not in value:
        fail(f"{secret} must be required (no default) in the compose stack")
for role in roles:
    if services[role].get("environment") != env:
        fail(f"service {role} must share the rushhour environment")

prom = yaml.safe_load(open("deploy/prometheus/prometheus.yml"))
jobs = {c["job_name"] for c in prom["scrape_configs"]}
for role in ("api", "worker", "scheduler"):
    if role not in jobs:
        fail(f"prometheus does not scrape {role}")
if "/etc/prometheus/alerts.yml" not in prom.get("rule_files", []):
    fail("prometheus does not load the alert rules")
mounts = services["prometheus"].get("volumes", [])
if not any(m.startswith("./prometheus/alerts.yml:/etc/prometheus/alerts.yml") for m in mounts):
    fail("the prometheus service does not mount alerts.yml")
print(f"deploy check: compose stack ok ({len(services)} services), prometheus scrapes {sorted(jobs)}")
PY
