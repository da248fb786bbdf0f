"""The REST API (FastAPI routers)."""
