"""Reading trajectories back: a terminal transcript and a self-contained HTML page."""
