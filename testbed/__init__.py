"""The testbed: an EI-shaped cluster on loopback -- real nginx and real JVM nodes."""
