"""The HTTP API (`ragqa serve`): OpenAI-compatible chat over the library, native JSON endpoints for
search, answers and documents, Prometheus metrics and OpenTelemetry traces. Every /v1 request
carries an API key (rag/keys.py) and acts as that key's account: the same collection permissions
inside retrieval, the same roles for writes, the same audit log as the UI and the CLI."""
