#!/usr/bin/env bash
# chaos-dynamo's ready.d hook for LocalStack (and MiniStack, which reads the same folders).
#
# Creates what the lab expects to find on its backend: the region's two hosted zones and the
# DNS Planner's plan table. `chaos-dynamo lab up --backend http://127.0.0.1:4566` then reuses
# them, writes plan 1 into the table and the plan's records into the zones itself.
#
# Idempotent: it creates only what is missing, so a restart with persistence (or running it
# again by hand) makes no duplicate zones. Uses awslocal where the image has it (LocalStack),
# else the aws CLI, which reads AWS_ENDPOINT_URL (MiniStack sets it for its init scripts).
#
# Settings (optional): CHAOS_DYNAMO_REGION (default $AWS_DEFAULT_REGION, else us-east-1),
# CHAOS_DYNAMO_PLAN_TABLE (default chaos-dynamo-plans; must match the lab's lab.plan_table).
set -euo pipefail

region="${CHAOS_DYNAMO_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
table="${CHAOS_DYNAMO_PLAN_TABLE:-chaos-dynamo-plans}"
zones=("${region}.amazonaws.com" "${region}.api.aws")

if command -v awslocal >/dev/null 2>&1; then
    cli=(awslocal --region "$region")
else
    cli=(aws --region "$region")
fi

for zone in "${zones[@]}"; do
    existing="$("${cli[@]}" route53 list-hosted-zones \
        --query "HostedZones[?Name=='${zone}.'].Id" --output text)"
    if [[ -n "$existing" && "$existing" != "None" ]]; then
        echo "chaos-dynamo: hosted zone ${zone} exists (${existing})"
    else
        # The same caller reference as the lab's own bootstrap, so the two never race into twins.
        created="$("${cli[@]}" route53 create-hosted-zone --name "$zone" \
            --caller-reference "chaos-dynamo-${zone}" --query 'HostedZone.Id' --output text)"
        echo "chaos-dynamo: created hosted zone ${zone} (${created})"
    fi
done

if "${cli[@]}" dynamodb describe-table --table-name "$table" >/dev/null 2>&1; then
    echo "chaos-dynamo: plan table ${table} exists"
else
    "${cli[@]}" dynamodb create-table --table-name "$table" \
        --attribute-definitions AttributeName=generation,AttributeType=N \
        --key-schema AttributeName=generation,KeyType=HASH \
        --billing-mode PAY_PER_REQUEST >/dev/null
    "${cli[@]}" dynamodb wait table-exists --table-name "$table"
    echo "chaos-dynamo: created plan table ${table}"
fi
echo "chaos-dynamo: ready; start the lab with: chaos-dynamo lab up --backend http://127.0.0.1:4566"
