"""Calls DynamoDB's FIPS endpoint with plain HTTP, no botocore: a client the shim cannot hook
(as a program in another language would be). Only the lab's DNS and LB logs see it."""

import json
import os
import urllib.error
import urllib.request
from urllib.parse import urlparse


def main() -> None:
    port = urlparse(os.environ["AWS_ENDPOINT_URL_DYNAMODB"]).port
    request = urllib.request.Request(
        f"http://dynamodb-fips.us-east-1.amazonaws.com:{port}/", data=json.dumps({}).encode(),
        headers={"X-Amz-Target": "DynamoDB_20120810.ListTables",
                 "Content-Type": "application/x-amz-json-1.0"})
    try:
        urllib.request.urlopen(request, timeout=5).read()
    except urllib.error.HTTPError as exc:  # unsigned: the emulator may refuse it; the LB logged it
        print(f"answered {exc.code}")


if __name__ == "__main__":
    main()
