"""Node functions, one module per role. Nodes read state, ask a backend, and return state updates."""
