"""The pure core: every rule that decides or guards a restart, as functions of state,
input and `now`. No I/O, no clock, no threads."""
