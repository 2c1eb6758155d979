"""`tripletlab serve`: a run's model and index behind an HTTP API (FastAPI + uvicorn), with
dynamic batching of concurrent requests and ONNX Runtime inference."""

from tripletlab.serve.app import create_app
from tripletlab.serve.batching import DynamicBatcher, QueueFullError
from tripletlab.serve.inputs import ApiError, Limits
from tripletlab.serve.model import ServiceModel, hold_threads, load_service_model, share_cores
from tripletlab.serve.state import ServeSettings, State

__all__ = [
    "ApiError",
    "DynamicBatcher",
    "Limits",
    "QueueFullError",
    "ServeSettings",
    "ServiceModel",
    "State",
    "create_app",
    "hold_threads",
    "load_service_model",
    "share_cores",
]
