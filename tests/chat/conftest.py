"""The chat pipeline's tests use the model fixtures of tests/llm (mock providers, services over them)."""

from tests.llm.conftest import mock_models, model_services  # noqa: F401 - shared fixtures
