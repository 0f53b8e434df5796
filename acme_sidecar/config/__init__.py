"""Configuration: ``Settings`` read from the environment once at start, and the small frozen
policies cut from them at the edge (the cycle and the daemon never see ``Settings``)."""
