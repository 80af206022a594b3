"""docker/docker-compose.yml, the Prometheus config and the Grafana provisioning.

The compose file is validated against the Compose Specification JSON schema
(vendored in tests/deploy/schemas, Apache-2.0); a real `docker compose config`
also runs when a compose binary is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml
from deploy_helpers import DOCKER, HERE, REPO

COMPOSE_FILE = DOCKER / "docker-compose.yml"
LONG_RUNNING = ("adapterserve", "minio", "prometheus", "grafana")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def prometheus_config() -> dict:
    return yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())


def seconds(duration: str) -> float:
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration):
        total += float(value) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    assert total > 0, duration
    return total


def test_compose_matches_compose_spec_schema(compose):
    schema = json.loads((HERE / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_compose_file(compose):
    schema = json.loads((HERE / "schemas" / "compose-spec.json").read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["adapterserve"]["depends_on"]["minio"]["condition"] = "service_up"
    broken["services"]["grafana"]["helthcheck"] = {}
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) >= 2


def test_real_compose_config_when_available():
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        if subprocess.run(command + ["version"], capture_output=True).returncode != 0:
            continue
        result = subprocess.run(
            command + ["-f", str(COMPOSE_FILE), "config", "--quiet"], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return
    pytest.skip("no docker compose binary")


def test_services_and_dependencies(compose):
    services = compose["services"]
    assert set(services) == {"adapterserve", "minio", "minio-init", "prometheus", "grafana"}
    for name in LONG_RUNNING:
        assert "healthcheck" in services[name], name
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
            if spec["condition"] == "service_completed_successfully":
                assert services[dependency].get("restart") in (None, "no"), dependency
    app = services["adapterserve"]["depends_on"]
    assert app["minio"]["condition"] == "service_healthy"
    assert app["minio-init"]["condition"] == "service_completed_successfully"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_adapterserve_service(compose):
    app = compose["services"]["adapterserve"]
    build = app["build"]
    assert (COMPOSE_FILE.parent / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]).resolve() == (DOCKER / "Dockerfile").resolve()
    env = app["environment"]
    assert env["ADAPTERSERVE_STORE"] == "s3://adapters/store"
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "ADAPTERSERVE_ADMIN_TOKEN"):
        assert env.get(key), key
    assert "8080:8080" in app["ports"]
    assert "/health/ready" in " ".join(app["healthcheck"]["test"])
    # docker stop must outlast the graceful drain
    assert seconds(app["stop_grace_period"]) >= float(env["ADAPTERSERVE_DRAIN_TIMEOUT_S"]) + 10
    # same hardening as on Kubernetes: read-only root with writable /tmp and HOME
    assert app["read_only"] is True
    assert {"/tmp", "/home/app"} <= set(app["tmpfs"])
    # the onnx runtime's graphs on a named volume (kept across restarts, not in RAM), which the image creates
    # owned by the app user, so a new volume there is writable by it
    cache = env["ADAPTERSERVE_RUNTIME_CACHE"]
    assert f"graph-cache:{cache}" in app["volumes"] and "graph-cache" in compose["volumes"]
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert f"install -d -o 10001 -g 10001 {cache}" in dockerfile
    assert app["cap_drop"] == ["ALL"]


def test_compose_settings_are_service_settings(compose):
    from adapterserve import settings

    fields = {name.upper() for name in settings.Settings.model_fields}
    env = compose["services"]["adapterserve"]["environment"]
    keys = {k.removeprefix("ADAPTERSERVE_") for k in env if k.startswith("ADAPTERSERVE_")}
    assert keys <= fields, keys - fields


def test_minio_bucket_matches_store(compose):
    store = compose["services"]["adapterserve"]["environment"]["ADAPTERSERVE_STORE"]
    bucket, _, prefix = store.removeprefix("s3://").partition("/")
    script = "\n".join(compose["services"]["minio-init"]["command"])
    assert f"mc mb --ignore-existing local/{bucket}" in script
    assert f"local/{bucket}/{prefix}" in script
    minio = compose["services"]["minio"]
    assert "9000:9000" in minio["ports"]
    assert minio["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]


def test_bind_mounts_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / source).exists(), (name, source)
            else:
                assert source in compose["volumes"], (name, source)


def test_prometheus_scrapes_adapterserve(compose, prometheus_config):
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    job = jobs["adapterserve"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == ["adapterserve:8080"]
    host, port = targets[0].split(":")
    assert host in compose["services"]
    # the port the container listens on (ports: "HOST:CONTAINER")
    container_ports = {p.split(":")[-1] for p in compose["services"][host]["ports"]}
    assert port in container_ports
    seconds(prometheus_config["global"]["scrape_interval"])
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "--config.file=/etc/prometheus/prometheus.yml" in compose["services"]["prometheus"]["command"]


def test_grafana_provisioning(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    provisioning = DOCKER / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
    providers = yaml.safe_load((provisioning / "dashboards" / "adapterserve.yml").read_text())
    (provider,) = providers["providers"]
    dashboards_dir = provider["options"]["path"]
    assert mounts["./grafana/dashboards"] == dashboards_dir
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(dashboards_dir + "/")
    assert (DOCKER / "grafana" / "dashboards" / home.rsplit("/", 1)[1]).is_file()
    # the dashboard's default data source is the provisioned one
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "adapterserve.json").read_text())
    ds_var = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert ds_var["query"] == source["type"]
    assert ds_var["current"]["value"] == source["uid"]
