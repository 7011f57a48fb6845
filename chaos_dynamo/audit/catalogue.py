"""Which AWS operations are control plane, and how a host name tells service and region.

Control-plane operations create, describe and reconfigure resources; they are served by
fewer, slower and often regional-singleton systems (Route 53's and IAM's live in us-east-1),
and they are the first to be throttled or down in an event. A service that calls them on
its request path (``DescribeTable`` before every ``PutItem``, ``GetQueueUrl`` before every
``SendMessage``, ``AssumeRole`` per request) inherits their availability.

The catalogue is a table, not an inference: a service listed with ``ALL`` is control plane
as a whole (Route 53's API, STS, IAM, EC2's API, CloudFormation...); otherwise its listed
operations and operation-name prefixes are.
"""

from __future__ import annotations

import re

__all__ = ["is_control_plane", "service_and_region", "canonical_service"]

ALL = "*"

_CONTROL_PLANE: dict[str, tuple[str, ...]] = {
    "dynamodb": (
        "CreateTable", "UpdateTable", "DeleteTable", "DescribeTable", "ListTables",
        "DescribeEndpoints", "DescribeLimits", "DescribeTimeToLive", "UpdateTimeToLive",
        "DescribeContinuousBackups", "UpdateContinuousBackups", "CreateBackup", "DeleteBackup",
        "DescribeBackup", "ListBackups", "CreateGlobalTable", "UpdateGlobalTable",
        "DescribeGlobalTable", "ListGlobalTables", "DescribeTableReplicaAutoScaling",
        "UpdateTableReplicaAutoScaling", "TagResource", "UntagResource", "ListTagsOfResource",
    ),
    "route53": (ALL,),
    "sts": (ALL,),
    "iam": (ALL,),
    "ec2": (ALL,),
    "autoscaling": (ALL,),
    "cloudformation": (ALL,),
    "elb": (ALL,),
    "elbv2": (ALL,),
    "organizations": (ALL,),
    "sqs": ("CreateQueue", "DeleteQueue", "ListQueues", "GetQueueUrl", "GetQueueAttributes",
            "SetQueueAttributes"),
    "sns": ("CreateTopic", "DeleteTopic", "ListTopics", "GetTopicAttributes", "SetTopicAttributes",
            "ListSubscriptions"),
    "s3": ("CreateBucket", "DeleteBucket", "ListBuckets", "GetBucket", "PutBucket"),
    "lambda": ("Create", "Delete", "Update", "List", "GetFunction", "GetFunctionConfiguration",
               "PublishVersion", "PutFunction"),
    "kms": ("CreateKey", "DescribeKey", "ListKeys", "ListAliases", "CreateAlias", "ScheduleKeyDeletion",
            "EnableKey", "DisableKey", "PutKeyPolicy", "GetKeyPolicy"),
}
"""Service (botocore's service name) -> control-plane operations or prefixes (``ALL``: every one)."""

_ALIASES = {"route-53": "route53", "elastic-load-balancing": "elb",
            "elastic-load-balancing-v2": "elbv2", "auto-scaling": "autoscaling"}
"""botocore's event names for services (hyphenated service ids) -> service names."""


def canonical_service(name: str) -> str:
    """A service as botocore names it (``route53``) from either of its spellings (``route-53``)."""
    lowered = name.lower()
    return _ALIASES.get(lowered, lowered)


def is_control_plane(service: str, operation: str) -> bool:
    """Whether ``operation`` of ``service`` is in the control-plane catalogue."""
    listed = _CONTROL_PLANE.get(canonical_service(service), ())
    return ALL in listed or any(operation == entry or operation.startswith(entry) for entry in listed)


_HOST = re.compile(
    r"^(?P<service>[a-z0-9-]+?)(?:-fips)?\.(?:(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d+)\.)?"
    r"(?:amazonaws\.com(?:\.cn)?|api\.aws)\.?$")


def service_and_region(host: str) -> tuple[str, str]:
    """``("dynamodb", "us-east-1")`` from ``dynamodb.us-east-1.amazonaws.com`` (also
    ``-fips`` and dual-stack ``api.aws`` names); a global name (``sts.amazonaws.com``) has
    region ``us-east-1``, where global endpoints are served; ``("", "")`` for other names."""
    match = _HOST.match(host.lower())
    if match is None:
        return "", ""
    return match.group("service"), match.group("region") or "us-east-1"
