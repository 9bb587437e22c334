"""Tuning: editors for integrator.sh, nginx and pass-through settings; node control; sweeps."""
