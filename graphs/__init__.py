"""Graph wiring, one module per graph, and the command line (`python -m graphs.run`)."""
