"""The work behind each `eiperf` subcommand (the parser itself is declared in eiperf.cli)."""
