"""Traffic-monitoring data platform: street-camera images in, traffic counts out."""

__version__ = "0.1.0"
