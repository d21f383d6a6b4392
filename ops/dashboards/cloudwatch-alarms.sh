#!/usr/bin/env bash
# The CloudWatch alarms matching alerts.yaml, as `aws cloudwatch put-metric-alarm` commands.
#
#   just cloudwatch-alarms            print the commands
#   just cloudwatch-alarms --apply    run them (needs the aws CLI and cloudwatch:PutMetricAlarm)
#
# Queue names come from the same settings as the workers (VIDEO_SQS_QUEUE_NAME, ...).
# ALARM_SNS_TOPIC_ARN, when set, is notified on ALARM and OK.
# CloudWatch has no job table: the failure-rate alarm counts messages sent to each DLQ.
set -euo pipefail
cd "$(dirname "$0")/../.."

APPLY=0
for arg in "$@"; do
  case "$arg" in
    --apply) APPLY=1 ;;
    *) echo "usage: just cloudwatch-alarms [--apply]" >&2; exit 2 ;;
  esac
done

REGION="${AWS_REGION:-ap-northeast-2}"
ACTIONS=()
if [ -n "${ALARM_SNS_TOPIC_ARN:-}" ]; then
  ACTIONS=(--alarm-actions "$ALARM_SNS_TOPIC_ARN" --ok-actions "$ALARM_SNS_TOPIC_ARN")
fi

mapfile -t QUEUES < <(python -c 'from ops.settings import get_settings
for tier, name in get_settings().queues.items(): print(tier, name)')

alarm() {  # alarm NAME QUEUE METRIC STAT THRESHOLD PERIODS DESCRIPTION
  local cmd=(aws cloudwatch put-metric-alarm --region "$REGION"
    --alarm-name "$1" --alarm-description "$7"
    --namespace AWS/SQS --metric-name "$3" --dimensions "Name=QueueName,Value=$2"
    --statistic "$4" --period 300 --evaluation-periods "$6"
    --threshold "$5" --comparison-operator GreaterThanThreshold
    --treat-missing-data notBreaching "${ACTIONS[@]}")
  printf '%q ' "${cmd[@]}"; echo
  if [ "$APPLY" = 1 ]; then "${cmd[@]}"; fi
}

for entry in "${QUEUES[@]}"; do
  tier="${entry%% *}"; queue="${entry#* }"; dlq="$queue-dlq"
  alarm "$dlq-not-empty" "$dlq" ApproximateNumberOfMessagesVisible Maximum 0 1 \
    "Dead letters in $dlq: just dlq-list $tier"
  alarm "$dlq-high" "$dlq" ApproximateNumberOfMessagesVisible Maximum 10 1 \
    "More than 10 dead letters in $dlq (seed threshold)"
  alarm "$queue-backlog" "$queue" ApproximateNumberOfMessagesVisible Maximum 1000 2 \
    "More than 1000 messages waiting in $queue"
  alarm "$queue-oldest-age" "$queue" ApproximateAgeOfOldestMessage Maximum 900 1 \
    "The oldest message in $queue is older than 15 minutes"
  alarm "$queue-failures" "$dlq" NumberOfMessagesSent Sum 5 3 \
    "More than 5 jobs of tier $tier failed for good in 5 minutes, 15 minutes running"
done
