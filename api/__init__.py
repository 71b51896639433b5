"""The FastAPI app: routers, dependencies, settings and streaming."""
