"""Collectors: node and host metrics sampled while a load test runs."""
