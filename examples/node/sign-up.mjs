// Enqueue one sign_up job for cognito-worker and wait for its result.
//
//   JOBS_QUEUE_URL=... RESULTS_QUEUE_URL=... SIGN_UP_PASSWORD=... node sign-up.mjs USERNAME [EMAIL]
//
// RESULTS_QUEUE_URL is an SQS queue subscribed to the results topic (raw delivery or not).
// The password comes from the environment, never the command line (where `ps` would show it).
// The AWS SDK reads the region, credentials and AWS_ENDPOINT_URL from the environment as usual.
import { randomUUID } from "node:crypto";
import {
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SQSClient,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";

const [username, email = `${process.argv[2]}@example.com`] = process.argv.slice(2);
const { JOBS_QUEUE_URL, RESULTS_QUEUE_URL, SIGN_UP_PASSWORD } = process.env;
if (!username || !JOBS_QUEUE_URL || !RESULTS_QUEUE_URL || !SIGN_UP_PASSWORD) {
  console.error("usage: JOBS_QUEUE_URL=... RESULTS_QUEUE_URL=... SIGN_UP_PASSWORD=... node sign-up.mjs USERNAME [EMAIL]");
  process.exit(2);
}
const timeoutMs = Number(process.env.RESULT_TIMEOUT_S ?? 60) * 1000;
const sqs = new SQSClient({});

// The job: one flat JSON object (docs/contract.md). A job id of our own lets us find its result.
const job = {
  version: 1,
  type: "sign_up",
  job_id: randomUUID(),
  username,
  password: SIGN_UP_PASSWORD,
  user_attributes: { email },
};
const send = { QueueUrl: JOBS_QUEUE_URL, MessageBody: JSON.stringify(job) };
if (JOBS_QUEUE_URL.endsWith(".fifo")) {
  // A user's jobs stay in order; a resend of the same job is dropped by SQS. SQS accepts only
  // ASCII letters, digits and punctuation in these ids: hash anything else.
  send.MessageGroupId = /^[\x21-\x7e]{1,128}$/.test(username)
    ? username
    : (await import("node:crypto")).createHash("sha256").update(username).digest("hex");
  send.MessageDeduplicationId = job.job_id;
}
await sqs.send(new SendMessageCommand(send));
console.error(`sent job ${job.job_id}`);

// A result arrives raw, or inside SNS's envelope when the subscription is not raw.
function resultOf(body) {
  const document = JSON.parse(body);
  return document.Type === "Notification" ? JSON.parse(document.Message) : document;
}

const deadline = Date.now() + timeoutMs;
while (Date.now() < deadline) {
  const waitSeconds = Math.max(0, Math.min(20, Math.floor((deadline - Date.now()) / 1000)));
  const { Messages = [] } = await sqs.send(
    new ReceiveMessageCommand({ QueueUrl: RESULTS_QUEUE_URL, MaxNumberOfMessages: 10, WaitTimeSeconds: waitSeconds }),
  );
  for (const message of Messages) {
    let result;
    try {
      result = resultOf(message.Body);
    } catch {
      continue; // not a result: leave it for its owner
    }
    if (result.job_id !== job.job_id) continue; // another job's result: leave it
    await sqs.send(new DeleteMessageCommand({ QueueUrl: RESULTS_QUEUE_URL, ReceiptHandle: message.ReceiptHandle }));
    console.log(JSON.stringify(result));
    process.exit(result.status === "succeeded" ? 0 : 1);
  }
}
console.error(`no result for job ${job.job_id} within ${timeoutMs / 1000} s`);
process.exit(3);
