"""fraudops: reproducible card-fraud detection, retraining and alerting."""

__version__ = "0.1.0"
