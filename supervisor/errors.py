"""The project's exceptions: everything the supervisor raises on purpose derives from one root."""


class SupervisorError(Exception):
    """Root of every error the supervisor raises deliberately."""


class PolicyError(SupervisorError):
    """A policy file is unreadable or invalid; `problems` lists one message per fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class TraceError(SupervisorError):
    """A replay trace is malformed; the message names the file and line."""


class ProbeError(SupervisorError):
    """Redis could not be sampled."""


class ActuatorError(SupervisorError):
    """Docker could not carry out a restart; the message says which call and why."""


class TargetError(ActuatorError):
    """The policy's target cannot be acted on: missing, ambiguous, or the supervisor itself."""


class StateError(SupervisorError):
    """A persisted state file exists but does not parse; the message names it. It may be moved
    aside: nothing in it can be read."""


class StateRefusedError(StateError):
    """A state file this version must neither use nor move aside: written by a newer (or an
    unknown) version, or unreadable for now (permissions, an I/O error). The message names the
    file and what to do; nothing starts, and a reload is refused."""


class AlreadyRunningError(SupervisorError):
    """Another supervisor holds the state directory."""


class UsageError(SupervisorError):
    """A setting from the command line or the environment is wrong; the message names it."""
