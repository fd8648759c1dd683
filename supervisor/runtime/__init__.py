"""The imperative shell: the loop that wires probes, core, executor and sinks, and the files
it shares with the other commands (state, heartbeat, lock, trigger requests)."""
