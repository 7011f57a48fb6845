"""The exceptions chaos-dynamo raises.

Chaos Toolkit turns any exception into ``ActivityFailed("Type: message")`` and drops
the cause, so every message carries the field, the value and what to do about it.

::

    ChaosDynamoError
     ├── ConfigError          bad topology file, argument or activity input (names the field)
     ├── SafetyError          refused: a destructive call aimed outside the lab
     ├── LabError             the lab is not running, not reachable, or failed to start
     └── AwsError             an AWS (or emulator) API error, keeping its error code
          └── InvalidChangeBatch   Route 53 rejected a change batch (messages as AWS words them)
"""

from __future__ import annotations


class ChaosDynamoError(Exception):
    """Base class of every error chaos-dynamo raises on purpose."""


class ConfigError(ChaosDynamoError, ValueError):
    """Input that cannot be used; the message names the field and the fix.

    Args:
        field: dotted path of the offending field, e.g. ``load_balancers[2].weight``.
        problem: what is wrong with it, including the value seen.
        fix: what to do instead.
    """

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


class SafetyError(ChaosDynamoError):
    """A destructive activity refused to act on a target outside the lab."""


class LabError(ChaosDynamoError):
    """The lab is not running, cannot be reached, or could not start."""


class AwsError(ChaosDynamoError):
    """An error answered by an AWS API (or the emulator), with its error code kept.

    Args:
        code: the AWS error code, e.g. ``NoSuchHostedZone``.
        message: the service's message.
        operation: the API operation that failed, when known.
    """

    def __init__(self, code: str, message: str, operation: str = "") -> None:
        self.code = code
        self.aws_message = message
        self.operation = operation
        where = f" in {operation}" if operation else ""
        super().__init__(f"{code}{where}: {message}")

    @classmethod
    def from_client_error(cls, error: Exception, operation: str = "") -> AwsError:
        """Translate a botocore ``ClientError`` once, keeping the AWS error code."""
        response = getattr(error, "response", {}) or {}
        err = response.get("Error", {})
        code = str(err.get("Code", type(error).__name__))
        message = str(err.get("Message", str(error)))
        op = operation or str(getattr(error, "operation_name", ""))
        if code == "InvalidChangeBatch":
            return InvalidChangeBatch([message], operation=op)
        return cls(code, message, op)


class InvalidChangeBatch(AwsError):
    """Route 53 rejected a change batch as a whole; nothing in it was applied.

    Args:
        messages: one message per failing change, worded as AWS words them.
    """

    def __init__(self, messages: list[str], operation: str = "ChangeResourceRecordSets") -> None:
        self.messages = list(messages)
        super().__init__("InvalidChangeBatch", "; ".join(self.messages), operation)
