"""The OpenAPI document tells the truth: schemathesis, driven by /openapi.json, runs every check over every
operation of a real server (bounded examples, derandomized) and any finding fails the test."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from adapterserve.main import create_app
from adapterserve.settings import Settings

from .conftest import TOKEN

pytestmark = pytest.mark.slow


# The document the server serves at /openapi.json (building the app builds no state: the lifespan does that).
schema = schemathesis.openapi.from_dict(create_app(Settings(warmup=False)).openapi())


def _all_checks():
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    return CHECKS.get_all()


# Operations where schema-valid is not valid, and JSON Schema cannot say so; every other check still runs on them.
NO_SCHEMA_FOR_VALIDITY = {
    # Which files make a valid adapter folder: random bytes are rightly refused (422 invalid_adapter).
    # tests/api/test_admin*.py cover uploads of real and broken folders.
    ("PUT", "/admin/adapters/{name}"),
    # A tensor's data must hold as many elements as its shape says, as JSON data or as binary_data_size bytes.
    # tests/api/test_clients_kserve.py covers both encodings with the real tritonclient.
    ("POST", "/v2/models/{name}/infer"),
    ("POST", "/v2/models/{name}/versions/{version}/infer"),
}


@schema.parametrize()
@settings(
    max_examples=8,
    derandomize=True,  # a fixed seed: the same cases on every run
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms(case, live_server):
    headers = {"Authorization": f"Bearer {TOKEN}"} if case.path.startswith("/admin/") else None
    excluded = [positive_data_acceptance] if (case.method, case.path) in NO_SCHEMA_FOR_VALIDITY else []
    case.call_and_validate(base_url=live_server.url, headers=headers, checks=_all_checks(), excluded_checks=excluded)
