"""metalr: learn learning-rate schedules from training trajectories."""

__version__ = "0.1.0"
