"""The shell: one cycle as gather -> decide -> act, the daemon loop, and the wiring of the real
adapters. It holds the order of steps, not decisions."""
