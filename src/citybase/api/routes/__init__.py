"""One module of routes per concept; each exposes `router`."""
