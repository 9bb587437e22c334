"""eiperf: load tests and tuning for WSO2 Enterprise Integrator clusters behind NGINX."""

__version__ = "0.1.0"
